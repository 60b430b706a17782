import Foundation

/// The output of a finished process.
struct ProcessResult {
  var status: Int32
  var standardOutput: String
  var standardError: String
}

/// Returns the `concord` binary under test: `CONCORD_BINARY` (set by launch/test to the release
/// build), else the debug build next to the tests.
func concordBinary() -> String {
  if let path = ProcessInfo.processInfo.environment["CONCORD_BINARY"], !path.isEmpty {
    return path
  }
  let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()
  return root.appendingPathComponent(".build/debug/concord").path
}

/// The Fashion-MNIST folder of Debian's dataset-fashion-mnist package.
let fashionMNIST = "/usr/share/datasets/fashion-mnist"

/// Whether Fashion-MNIST is installed, so that end-to-end runs can use it.
var hasFashionMNIST: Bool {
  FileManager.default.fileExists(atPath: fashionMNIST + "/train-images-idx3-ubyte.gz")
}

/// Runs `executable` with `arguments`, waits at most `timeout` seconds, and returns what it
/// printed.
///
/// A process still running at the timeout is killed and reported with status -1.
func run(_ executable: String, _ arguments: [String], timeout: Double = 300) throws
  -> ProcessResult
{
  let process = Process()
  process.executableURL = URL(fileURLWithPath: executable)
  process.arguments = arguments

  // Files rather than pipes, because a pipe that is not read fills up and blocks the process.
  let directory = try makeTemporaryDirectory()
  let outputPath = directory + "/stdout"
  let errorPath = directory + "/stderr"
  _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
  _ = FileManager.default.createFile(atPath: errorPath, contents: nil)
  let output = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
  let error = try FileHandle(forWritingTo: URL(fileURLWithPath: errorPath))
  process.standardOutput = output
  process.standardError = error
  try process.run()

  let deadline = Date().addingTimeInterval(timeout)
  while process.isRunning && Date() < deadline { usleep(50_000) }
  var status = Int32(-1)
  if process.isRunning {
    process.terminate()
    process.waitUntilExit()
  } else {
    status = process.terminationStatus
  }
  try output.close()
  try error.close()
  let result = ProcessResult(
    status: status, standardOutput: try String(contentsOfFile: outputPath, encoding: .utf8),
    standardError: try String(contentsOfFile: errorPath, encoding: .utf8))
  try? FileManager.default.removeItem(atPath: directory)
  return result
}

/// Runs `concord` with `arguments` under `mpirun -np ranks`.
func mpirun(ranks: Int, _ arguments: [String], timeout: Double = 300) throws -> ProcessResult {
  var options = ["--allow-run-as-root", "-np", String(ranks)]
  if ranks > ProcessInfo.processInfo.activeProcessorCount { options.append("--oversubscribe") }
  return try run(
    "/usr/bin/mpirun", options + [concordBinary()] + arguments, timeout: timeout)
}

/// Creates a new empty folder under the system's temporary folder and returns its path.
func makeTemporaryDirectory() throws -> String {
  let path = FileManager.default.temporaryDirectory
    .appendingPathComponent("concord-test-\(UUID().uuidString)").path
  try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  return path
}
