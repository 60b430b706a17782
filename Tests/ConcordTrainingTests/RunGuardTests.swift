import Foundation
import Testing

/// Writes an uncompressed IDX file of unsigned bytes.
func writeIDX(_ path: String, dimensions: [Int], fill: (Int) -> UInt8) throws {
  var bytes: [UInt8] = [0, 0, 0x08, UInt8(dimensions.count)]
  for dimension in dimensions {
    bytes += [24, 16, 8, 0].map { UInt8((dimension >> $0) & 0xFF) }
  }
  let count = dimensions.reduce(1, *)
  bytes += (0..<count).map(fill)
  try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// Writes a tiny MNIST-format dataset whose test images are `testSide` pixels square.
func makeDataset(testSide: Int) throws -> String {
  let directory = try makeTemporaryDirectory()
  try writeIDX(directory + "/train-images-idx3-ubyte", dimensions: [64, 28, 28]) { UInt8($0 % 251) }
  try writeIDX(directory + "/train-labels-idx1-ubyte", dimensions: [64]) { UInt8($0 % 10) }
  try writeIDX(directory + "/t10k-images-idx3-ubyte", dimensions: [16, testSide, testSide]) {
    UInt8($0 % 241)
  }
  try writeIDX(directory + "/t10k-labels-idx1-ubyte", dimensions: [16]) { UInt8($0 % 10) }
  return directory
}

private func contents(of directory: String) throws -> [String: Data] {
  var result: [String: Data] = [:]
  let enumerator = FileManager.default.enumerator(atPath: directory)
  while let name = enumerator?.nextObject() as? String {
    var isDirectory: ObjCBool = false
    let path = directory + "/" + name
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory),
      !isDirectory.boolValue
    {
      result[name] = try Data(contentsOf: URL(fileURLWithPath: path))
    }
  }
  return result
}

@Suite(.serialized)
struct RunGuardTests {
  @Test func newRunRefusesFolderOfEarlierRun() throws {
    let data = try makeDataset(testSide: 28)
    let out = try makeTemporaryDirectory()
    let flags = [
      "train", "--data", data, "--out", out, "--steps", "2", "--batch-size", "16", "--hidden",
      "16,8",
    ]
    let first = try mpirun(ranks: 2, flags, timeout: 120)
    #expect(first.status == 0, "\(first.standardError)")
    let before = try contents(of: out)

    let second = try mpirun(ranks: 2, flags + ["--seed", "1"], timeout: 60)
    #expect(second.status == 2)
    let lines = second.standardError.split(separator: "\n").filter { $0.hasPrefix("concord") }
    #expect(lines.count == 1, "\(second.standardError)")
    #expect(second.standardError.contains("--resume latest"), "\(second.standardError)")
    #expect(try contents(of: out) == before)
  }

  /// A run stopped at step 0 leaves metrics but no checkpoint, so the message cannot send
  /// the user to --resume latest, which would find nothing.
  @Test func folderWithoutCheckpointNamesRemoval() throws {
    let data = try makeDataset(testSide: 28)
    let out = try makeTemporaryDirectory()
    let flags = [
      "train", "--data", data, "--out", out, "--steps", "2", "--batch-size", "16", "--hidden",
      "16,8",
    ]
    let stopped = try mpirun(ranks: 2, flags + ["--loss-bound", "1e-30"], timeout: 120)
    #expect(stopped.status == 1, "\(stopped.standardError)")
    let before = try contents(of: out)

    let second = try mpirun(ranks: 2, flags, timeout: 60)
    #expect(second.status == 2)
    let lines = second.standardError.split(separator: "\n").filter { $0.hasPrefix("concord") }
    #expect(lines.count == 1, "\(second.standardError)")
    #expect(second.standardError.contains("wrote no checkpoint"), "\(second.standardError)")
    #expect(!second.standardError.contains("--resume latest"), "\(second.standardError)")
    #expect(try contents(of: out) == before)
  }

  /// A run that logged past its newest checkpoint logs those steps again when resumed; the
  /// metrics file keeps each step once.
  @Test func resumeDropsMetricsPastCheckpoint() throws {
    let data = try makeDataset(testSide: 28)
    let out = try makeTemporaryDirectory()
    let flags = [
      "train", "--data", data, "--out", out, "--batch-size", "16", "--hidden", "16,8",
      "--log-every", "1", "--checkpoint-every", "3",
    ]
    #expect(try mpirun(ranks: 2, flags + ["--steps", "6"], timeout: 120).status == 0)
    // As if the run had died after logging step 6 but before its checkpoint.
    try FileManager.default.removeItem(atPath: out + "/checkpoints/step-0000006.safetensors")

    let tooShort = try mpirun(ranks: 2, flags + ["--steps", "2", "--resume", "latest"])
    #expect(tooShort.status == 2, "\(tooShort.standardError)")
    #expect(tooShort.standardError.contains("--steps 2"), "\(tooShort.standardError)")

    let resumed = try mpirun(ranks: 2, flags + ["--steps", "6", "--resume", "latest"])
    #expect(resumed.status == 0, "\(resumed.standardError)")
    let steps = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8)
      .split(separator: "\n").map { line -> Int in
        let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
        return object?["step"] as? Int ?? -1
      }
    #expect(steps == [1, 2, 3, 4, 5, 6])
  }

  @Test func testImagesOfAnotherSizeFailBeforeTraining() throws {
    let data = try makeDataset(testSide: 20)
    let out = try makeTemporaryDirectory() + "/run"
    let result = try mpirun(
      ranks: 2,
      [
        "train", "--data", data, "--out", out, "--steps", "2", "--batch-size", "16", "--hidden",
        "16,8",
      ],
      timeout: 60)
    #expect(result.status == 1, "\(result.standardError)")
    #expect(result.standardError.contains("20x20"), "\(result.standardError)")
    #expect(!FileManager.default.fileExists(atPath: out + "/checkpoints"))
  }

  @Test func hugeEncoderIsRejectedUpFront() throws {
    let data = try makeDataset(testSide: 28)
    let out = try makeTemporaryDirectory() + "/run"
    let result = try run(
      concordBinary(),
      ["train", "--data", data, "--out", out, "--steps", "2", "--hidden", "100000000"],
      timeout: 60)
    #expect(result.status == 2, "\(result.standardError)")
    #expect(result.standardError.contains("--hidden 100000000"), "\(result.standardError)")
    #expect(!FileManager.default.fileExists(atPath: out))
  }
}
