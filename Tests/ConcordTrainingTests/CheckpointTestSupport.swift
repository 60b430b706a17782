import ConcordTensors
import Foundation
import Testing

/// Flags of a quick `concord train` run on a subset of Fashion-MNIST, writing to `out`.
func quickRun(out: String, steps: Int, extra: [String] = []) -> [String] {
  [
    "train", "--out", out, "--steps", String(steps), "--train-limit", "1024", "--test-limit",
    "400", "--batch-size", "64", "--hidden", "128,64", "--log-every", "10",
    "--checkpoint-every", "2",
  ] + extra
}

/// Returns the path of the checkpoint of `step` in the run folder `out`.
func checkpointPath(_ out: String, step: Int) -> String {
  String(format: "%@/checkpoints/step-%07d.safetensors", out, step)
}

/// Returns the lines of `text` that Concord printed (its messages start with `concord`), leaving out
/// the banners that mpirun adds.
func concordLines(_ text: String) -> [Substring] {
  text.split(separator: "\n").filter { $0.hasPrefix("concord") }
}

/// Returns the names of the temporary files of interrupted writes in `directory`.
func temporaryFiles(in directory: String) -> [String] {
  let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
  return names.filter { $0.hasPrefix(".") && $0.contains(".tmp-") }.sorted()
}

/// Reads every file under `directory` with its contents, to check that a command changed nothing.
func snapshot(of directory: String) throws -> [String: Data] {
  var files: [String: Data] = [:]
  let enumerator = FileManager.default.enumerator(atPath: directory)
  while let name = enumerator?.nextObject() as? String {
    var isDirectory: ObjCBool = false
    let path = directory + "/" + name
    _ = FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory)
    files[name] = isDirectory.boolValue ? Data() : try Data(contentsOf: URL(fileURLWithPath: path))
  }
  return files
}

/// Returns the norm of `x - y` relative to the norm of `x`, in double precision.
func relativeDifference(_ x: [Float], _ y: [Float]) -> Double {
  let difference = zip(x, y).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +)
  let norm = x.map { Double($0) * Double($0) }.reduce(0, +)
  return (difference / max(norm, 1e-30)).squareRoot()
}
