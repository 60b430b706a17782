import ConcordTensors
import Foundation
import Testing

@testable import ConcordTraining

/// A damaged copy of a checkpoint: the name of the damage, how to make it from the good
/// bytes, and a word the error message must contain.
struct Damage: Sendable, CustomStringConvertible {
  let name: String
  let word: String
  let apply: @Sendable ([UInt8]) throws -> [UInt8]

  var description: String { name }
}

/// Splits a safetensors file into its header, parsed as JSON, and its data section.
private func splitFile(_ bytes: [UInt8]) throws -> (header: [String: Any], data: [UInt8]) {
  let length = bytes.withUnsafeBytes {
    Int(UInt64(littleEndian: $0.loadUnaligned(as: UInt64.self)))
  }
  let header = try #require(
    try JSONSerialization.jsonObject(with: Data(bytes[8..<(8 + length)])) as? [String: Any])
  return (header, Array(bytes[(8 + length)...]))
}

/// Reassembles a file from a header and a data section.
private func joinFile(_ header: [String: Any], _ data: [UInt8]) throws -> [UInt8] {
  let json = try JSONSerialization.data(withJSONObject: header)
  var bytes: [UInt8] = []
  withUnsafeBytes(of: UInt64(json.count).littleEndian) { bytes.append(contentsOf: $0) }
  return bytes + Array(json) + data
}

/// Changes the header entry of tensor `name` with `change`.
private func editEntry(_ bytes: [UInt8], _ name: String, _ change: (inout [String: Any]) -> Void)
  throws -> [UInt8]
{
  var (header, data) = try splitFile(bytes)
  var entry = try #require(header[name] as? [String: Any])
  change(&entry)
  header[name] = entry
  return try joinFile(header, data)
}

private let damages: [Damage] = [
  Damage(name: "truncated", word: "bytes") { Array($0.prefix($0.count / 2)) },
  Damage(name: "header length beyond the file", word: "header length") { bytes in
    var copy = bytes
    withUnsafeBytes(of: UInt64(bytes.count).littleEndian) { copy.replaceSubrange(0..<8, with: $0) }
    return copy
  },
  Damage(name: "overlapping data_offsets", word: "overlaps") { bytes in
    try editEntry(bytes, "encoder.0.bias") { entry in
      let offsets = entry["data_offsets"] as? [Int] ?? []
      entry["data_offsets"] = offsets.map { $0 - 4 }
    }
  },
  Damage(name: "data_offsets beyond the data", word: "ends at byte") { bytes in
    try editEntry(bytes, "consecutive_skips") { entry in
      let offsets = entry["data_offsets"] as? [Int] ?? []
      entry["data_offsets"] = offsets.map { $0 + 8 }
    }
  },
  Damage(name: "unknown dtype", word: "F33") { bytes in
    try editEntry(bytes, "encoder.1.bias") { $0["dtype"] = "F33" }
  },
  Damage(name: "shape and size mismatch", word: "needs") { bytes in
    try editEntry(bytes, "encoder.1.bias") { $0["shape"] = [65] }
  },
  Damage(name: "invalid JSON", word: "JSON") { bytes in
    var copy = bytes
    copy[8] = UInt8(ascii: "[")
    return copy
  },
  Damage(name: "NaN in a parameter under a matching CRC-32", word: "NaN") {
    try replacingFirstFloat(of: "encoder.0.weight", with: .nan, in: $0)
  },
  Damage(name: "negative Adam second moment under a matching CRC-32", word: "negative value") {
    try replacingFirstFloat(of: "adam.second_moment.encoder.0.weight", with: -1, in: $0)
  },
  Damage(name: "flipped bit in tensor data", word: "CRC-32") { bytes in
    var copy = bytes
    copy[copy.count - 100] ^= 0x10
    return copy
  },
]

/// Replaces the first value of tensor `name` with `value` and recomputes the CRC-32, so that
/// only a check of the values can catch it.
private func replacingFirstFloat(of name: String, with value: Float, in bytes: [UInt8]) throws
  -> [UInt8]
{
  var (header, data) = try splitFile(bytes)
  let entry = try #require(header[name] as? [String: Any])
  let start = try #require((entry["data_offsets"] as? [Int])?.first)
  withUnsafeBytes(of: value.bitPattern.littleEndian) {
    data.replaceSubrange(start..<(start + 4), with: $0)
  }
  let file = try SafeTensors(bytes: try joinFile(header, data))
  var metadata = try #require(header["__metadata__"] as? [String: String])
  metadata["data_crc32"] = CheckpointContents.crc32Text(CheckpointContents.dataCRC32(of: file))
  header["__metadata__"] = metadata
  return try joinFile(header, data)
}

/// A two-step run whose checkpoints the damage tests copy, made once.
private let sourceRun = Result { () throws -> String in
  let out = try makeTemporaryDirectory()
  let result = try mpirun(ranks: 2, quickRun(out: out, steps: 2))
  guard result.status == 0 else { throw CocoaError(.fileWriteUnknown) }
  return out
}

@Suite(.serialized, .enabled(if: hasFashionMNIST, "Fashion-MNIST is not installed"))
struct CheckpointFileTests {
  /// Each damaged file given to `--resume PATH` on two ranks and to `concord inspect`: one
  /// line naming the file and the problem, exit 1 and 2, every rank gone, nothing changed.
  @Test(arguments: damages)
  func damagedCheckpointIsRejected(damage: Damage) throws {
    let out = try makeTemporaryDirectory() + "/run"
    try FileManager.default.copyItem(atPath: try sourceRun.get(), toPath: out)
    let path = checkpointPath(out, step: 2)
    let good = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
    try Data(try damage.apply(good)).write(to: URL(fileURLWithPath: path))
    let before = try snapshot(of: out)

    let resumed = try mpirun(
      ranks: 2, quickRun(out: out, steps: 4, extra: ["--resume", path]), timeout: 60)
    #expect(resumed.status == 1, "\(resumed.standardError)")
    let lines = concordLines(resumed.standardError)
    #expect(lines.count == 1, "\(resumed.standardError)")
    #expect(lines.first?.contains(path) == true, "\(resumed.standardError)")
    #expect(lines.first?.contains(damage.word) == true, "\(resumed.standardError)")
    #expect(try snapshot(of: out) == before, "a file changed")

    let inspected = try run(concordBinary(), ["inspect", path], timeout: 60)
    #expect(inspected.status == 2, "\(inspected.standardError)")
    let inspectLines = inspected.standardError.split(separator: "\n")
    #expect(inspectLines.count == 1, "\(inspected.standardError)")
    #expect(inspectLines.first?.contains(path) == true)
    #expect(inspectLines.first?.contains(damage.word) == true, "\(inspected.standardError)")
    #expect(inspected.standardOutput.isEmpty)
    #expect(try snapshot(of: out) == before, "a file changed")
  }

  /// A checkpoint path taken by a folder makes the write fail: one line naming the path and
  /// the fix, exit 1 on every rank, the earlier checkpoint intact and no temporary file left.
  @Test func failedWriteKeepsOlderCheckpoints() throws {
    let out = try makeTemporaryDirectory()
    let blocked = checkpointPath(out, step: 4)
    try FileManager.default.createDirectory(
      atPath: blocked + "/occupied", withIntermediateDirectories: true)
    let result = try mpirun(ranks: 2, quickRun(out: out, steps: 6), timeout: 120)
    #expect(result.status == 1, "\(result.standardError)")
    let lines = concordLines(result.standardError)
    #expect(lines.count == 1, "\(result.standardError)")
    let line = String(lines.first ?? "")
    #expect(line.contains("cannot write checkpoint '\(blocked)'"), "\(line)")
    #expect(line.contains("remove the folder"), "\(line)")
    #expect(!result.standardError.contains("MPI_ABORT"), "\(result.standardError)")

    let inspected = try run(concordBinary(), ["inspect", checkpointPath(out, step: 2)])
    #expect(inspected.status == 0, "\(inspected.standardError)")
    #expect(temporaryFiles(in: out + "/checkpoints").isEmpty)
  }

  /// A full disk keeps the older checkpoints.
  ///
  /// The disk is a 6 MB tmpfs in a private mount namespace, which needs root, so the test is
  /// skipped elsewhere. The second checkpoint does not fit, so the run ends
  /// with one line naming the path and the fix, and the first checkpoint still loads.
  @Test func fullDiskKeepsOlderCheckpoints() throws {
    let out = try makeTemporaryDirectory()
    let path2 = checkpointPath(out, step: 2)
    let command =
      [
        "mpirun", "--allow-run-as-root", "-np", "2", concordBinary(),
      ] + quickRun(out: out, steps: 6)
    let script = """
      mount -t tmpfs -o size=6m concord-test "\(out)" || exit 97
      \(command.map { "'\($0)'" }.joined(separator: " "))
      echo "train exit $?"
      ls -a "\(out)/checkpoints"
      '\(concordBinary())' inspect "\(path2)" | tail -n 1
      echo "inspect exit $?"
      """
    let result = try run("/usr/bin/unshare", ["--mount", "sh", "-c", script], timeout: 120)
    if result.status == 97 || result.standardError.contains("unshare failed") {
      try Test.cancel("mounting a tmpfs needs root in a mount namespace: \(result.standardError)")
    }
    #expect(result.standardOutput.contains("train exit 1"), "\(result.standardOutput)")
    let lines = concordLines(result.standardError)
    #expect(lines.count == 1, "\(result.standardError)")
    let line = String(lines.first ?? "")
    #expect(line.contains("cannot write checkpoint '\(checkpointPath(out, step: 4))'"), "\(line)")
    #expect(line.contains("No space left on device"), "\(line)")
    #expect(line.contains("free disk space"), "\(line)")
    #expect(result.standardOutput.contains("complete Concord checkpoint at step 2"))
    #expect(result.standardOutput.contains("inspect exit 0"))
    #expect(!result.standardOutput.contains(".tmp-"), "\(result.standardOutput)")
  }
}
