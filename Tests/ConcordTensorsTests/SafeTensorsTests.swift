import Foundation
import Testing

@testable import ConcordTensors

/// Returns a file of `header` (unpadded) and `data`, with a correct header length.
private func safetensorsFile(header: String, data: [UInt8] = []) -> [UInt8] {
  let json = Array(header.utf8)
  return withUnsafeBytes(of: UInt64(json.count).littleEndian) { Array($0) } + json + data
}

/// Returns the kind of error that parsing `bytes` raises, or `nil` when it parses.
private func parseErrorKind(_ bytes: [UInt8]) throws -> SafeTensorsError.Kind? {
  do {
    _ = try SafeTensors(bytes: bytes)
    return nil
  } catch let error as SafeTensorsError {
    return error.kind
  }
}

private func sampleTensors() -> SafeTensors {
  SafeTensors(
    tensors: [
      .init(name: "encoder.layer0.weight", shape: [2, 3], floats: [1, -2, 3.5, 0, -0, 1e-30]),
      .init(name: "encoder.layer0.bias", shape: [3], floats: [0.25, .infinity, -7]),
      .init(name: "step", shape: [], int64s: [1234]),
      .init(name: "counters", shape: [2], int64s: [Int64.min, Int64.max]),
      .init(name: "empty", shape: [0, 4], floats: []),
      .init(name: "mask", dtype: .u8, shape: [3], bytes: [1, 0, 255]),
    ],
    metadata: [
      "format_version": "1",
      "configuration": "{\"tasks\": [\"supervised\"],\n\t\"tau\": 0.5}",
      "name with \"quotes\" and \\": "caf\u{E9} \u{1F600} \u{1}",
    ])
}

@Test func roundTripKeepsTensorsAndMetadata() throws {
  let original = sampleTensors()
  let parsed = try SafeTensors(bytes: original.serialized())
  #expect(parsed == original)
  #expect(parsed.tensors.map(\.name) == original.tensors.map(\.name))
  #expect(parsed.metadata == original.metadata)
  #expect(try parsed.floats("encoder.layer0.weight", shape: [2, 3]) == [1, -2, 3.5, 0, -0, 1e-30])
  #expect(try parsed.floats("encoder.layer0.bias") == [0.25, .infinity, -7])
  #expect(try parsed.int64s("step", shape: []) == [1234])
  #expect(try parsed.int64s("counters") == [Int64.min, Int64.max])
  #expect(try parsed.floats("empty", shape: [0, 4]) == [])
  #expect(parsed.tensor(named: "mask")?.bytes == [1, 0, 255])
  #expect(parsed.tensor(named: "mask")?.dtype == .u8)
  #expect(parsed.tensor(named: "absent") == nil)
}

@Test func doublesRoundTripExactly() throws {
  let values = [0.1, -2.5e-300, .infinity, 1.0 / 3.0]
  let original = SafeTensors(tensors: [.init(name: "weights", shape: [4], doubles: values)])
  let parsed = try SafeTensors(bytes: original.serialized())
  #expect(parsed.tensor(named: "weights")?.dtype == .f64)
  #expect(try parsed.doubles("weights", shape: [4]) == values)
  #expect(throws: SafeTensorsError.self) { try parsed.floats("weights") }
  #expect(throws: SafeTensorsError.self) { try parsed.doubles("weights", shape: [2, 2]) }
}

@Test func copyFloatsFillsDestination() throws {
  let tensors = SafeTensors(tensors: [.init(name: "w", shape: [2, 2], floats: [1, 2, 3, 4])])
  let buffer = FloatBuffer(count: 4)
  try tensors.copyFloats("w", into: buffer.elements, shape: [2, 2])
  #expect(buffer.array == [1, 2, 3, 4])

  let wrongSize = FloatBuffer(count: 3)
  #expect(throws: SafeTensorsError.self) {
    try tensors.copyFloats("w", into: wrongSize.elements)
  }
}

@Test func reserializationIsByteIdentical() throws {
  let first = sampleTensors().serialized()
  let second = try SafeTensors(bytes: first).serialized()
  #expect(first == second)

  // The metadata dictionary's iteration order must not leak into the bytes.
  var forward = SafeTensors()
  var backward = SafeTensors()
  let keys = (0..<50).map { "key\($0)" }
  for key in keys { forward.metadata[key] = key }
  for key in keys.reversed() { backward.metadata[key] = key }
  #expect(forward.serialized() == backward.serialized())
}

@Test func dataSectionStartsAtMultipleOfEight() throws {
  for nameLength in 1...16 {
    let name = String(repeating: "x", count: nameLength)
    let bytes = SafeTensors(tensors: [.init(name: name, shape: [1], floats: [1])]).serialized()
    let headerLength = bytes.prefix(8).reversed().reduce(0) { $0 << 8 | Int($1) }
    #expect(headerLength % 8 == 0)
    #expect(bytes.count == 8 + headerLength + 4)
    #expect(try SafeTensors(bytes: bytes).floats(name) == [1])
  }
}

@Test func headerMatchesSafetensorsLayout() throws {
  let json = #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
  #expect(json.utf8.count == 54)
  var expected: [UInt8] = [56, 0, 0, 0, 0, 0, 0, 0]  // 54 bytes of JSON + 2 spaces of padding
  expected += Array(json.utf8) + [0x20, 0x20]
  expected += [0x00, 0x00, 0x80, 0x3F, 0x00, 0x00, 0x00, 0x40]  // 1.0 and 2.0, little-endian
  let tensors = SafeTensors(tensors: [.init(name: "a", shape: [2], floats: [1, 2])])
  #expect(tensors.serialized() == expected)
}

@Test func outputMatchesPythonPackageBytes() throws {
  // Written by the `safetensors` Python package 0.8.0:
  // save({"weight": float32 [[1, 2], [3, -0.5]], "step": int64 [7]},
  //      metadata={"format": "concord"}), which puts "step" first.
  let hex =
    "a0000000000000007b225f5f6d657461646174615f5f223a7b22666f726d6174223a22636f6e636f7264227d"
    + "2c2273746570223a7b226474797065223a22493634222c227368617065223a5b315d2c22646174615f6f66"
    + "6673657473223a5b302c385d7d2c22776569676874223a7b226474797065223a22463332222c2273686170"
    + "65223a5b322c325d2c22646174615f6f666673657473223a5b382c32345d7d7d2020202020200700000000"
    + "0000000000803f0000004000004040000000bf"
  let pythonBytes = stride(from: 0, to: hex.count, by: 2).map { offset -> UInt8 in
    let start = hex.index(hex.startIndex, offsetBy: offset)
    return UInt8(hex[start..<hex.index(start, offsetBy: 2)], radix: 16) ?? 0
  }
  let parsed = try SafeTensors(bytes: pythonBytes)
  #expect(parsed.metadata == ["format": "concord"])
  #expect(try parsed.int64s("step", shape: [1]) == [7])
  #expect(try parsed.floats("weight", shape: [2, 2]) == [1, 2, 3, -0.5])

  let written = SafeTensors(
    tensors: [
      .init(name: "step", shape: [1], int64s: [7]),
      .init(name: "weight", shape: [2, 2], floats: [1, 2, 3, -0.5]),
    ],
    metadata: ["format": "concord"])
  #expect(written.serialized() == pythonBytes)
}

@Test func headerEntriesMayComeInAnyOrder() throws {
  let header =
    #"{"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]},"#
    + #""a":{"shape":[1],"data_offsets":[0,4],"dtype":"F32"}}"#
  let parsed = try SafeTensors(
    bytes: safetensorsFile(header: header, data: [0, 0, 128, 63, 0, 0, 0, 64]))
  #expect(parsed.tensors.map(\.name) == ["a", "b"])
  #expect(try parsed.floats("a") == [1])
  #expect(try parsed.floats("b") == [2])
}

@Test func unknownEntryFieldIsIgnored() throws {
  let header = #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4],"x":{"y":[null,true]}}}"#
  let parsed = try SafeTensors(bytes: safetensorsFile(header: header, data: [0, 0, 128, 63]))
  #expect(try parsed.floats("a", shape: [1]) == [1])
}

@Test func headerStringEscapesDecode() throws {
  let header = #"{"__metadata__":{"k\u00e9\ud83d\ude00":"a\"b\\c\/d\n"}}"#
  let parsed = try SafeTensors(bytes: safetensorsFile(header: header))
  #expect(parsed.metadata == ["k\u{E9}\u{1F600}": "a\"b\\c/d\n"])
  #expect(parsed.tensors.isEmpty)
}

@Test(
  arguments: [
    (
      "shorter than 8 bytes", [1, 2, 3], SafeTensorsError.Kind.truncated, "shorter than the 8-byte"
    ),
    ("empty input", [], .truncated, "0 bytes long"),
    (
      "header length beyond the file",
      [232, 3, 0, 0, 0, 0, 0, 0] + Array("{}".utf8), .headerLengthOutOfRange, "only 2 bytes follow"
    ),
    (
      "header length of 2^64 - 1", [UInt8](repeating: 255, count: 16), .headerLengthOutOfRange,
      "18446744073709551615"
    ),
    ("invalid JSON", safetensorsFile(header: #"{"a":"#), .invalidJSON, "not valid JSON"),
    (
      "JSON with trailing text", safetensorsFile(header: "{} x"), .invalidJSON,
      "after the JSON value"
    ),
    ("array header", safetensorsFile(header: "[1, 2]"), .invalidHeader, "not an object"),
    ("string header", safetensorsFile(header: #""abc""#), .invalidHeader, "not an object"),
    ("entry not an object", safetensorsFile(header: #"{"a":3}"#), .invalidHeader, "tensor 'a'"),
    (
      "unknown dtype",
      safetensorsFile(
        header: #"{"a":{"dtype":"F99","shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]),
      .unknownDType, "'F99'"
    ),
    (
      "shape and offsets disagree",
      safetensorsFile(
        header: #"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
        data: [UInt8](repeating: 0, count: 8)),
      .sizeMismatch, "needs 12 bytes"
    ),
    (
      "shape overflowing Int",
      safetensorsFile(
        header: #"{"a":{"dtype":"F32","shape":[4611686018427387904,4],"data_offsets":[0,8]}}"#,
        data: [UInt8](repeating: 0, count: 8)),
      .sizeMismatch, "too large"
    ),
    (
      "negative dimension",
      safetensorsFile(header: #"{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}"#),
      .invalidHeader, "non-negative integer"
    ),
    (
      "fractional dimension",
      safetensorsFile(header: #"{"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,0]}}"#),
      .invalidHeader, "1.5"
    ),
    (
      "offset beyond Int",
      safetensorsFile(
        header: #"{"a":{"dtype":"F32","shape":[0],"data_offsets":[0,99999999999999999999]}}"#),
      .invalidHeader, "99999999999999999999"
    ),
    (
      "offsets past the data",
      safetensorsFile(
        header: #"{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}"#,
        data: [UInt8](repeating: 0, count: 8)),
      .invalidOffsets, "data section has 8 bytes"
    ),
    (
      "reversed offsets",
      safetensorsFile(
        header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}}"#,
        data: [UInt8](repeating: 0, count: 8)),
      .invalidOffsets, "begin > end"
    ),
    (
      "three offsets",
      safetensorsFile(
        header: #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8,9]}}"#,
        data: [UInt8](repeating: 0, count: 8)),
      .invalidHeader, "expected [begin, end]"
    ),
    (
      "overlapping tensors",
      safetensorsFile(
        header:
          #"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#
          + #","b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
        data: [UInt8](repeating: 0, count: 12)),
      .invalidOffsets, "overlaps"
    ),
    (
      "gap between tensors",
      safetensorsFile(
        header:
          #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#
          + #","b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}"#,
        data: [UInt8](repeating: 0, count: 12)),
      .invalidOffsets, "gap"
    ),
    (
      "first tensor not at 0",
      safetensorsFile(
        header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
        data: [UInt8](repeating: 0, count: 8)),
      .invalidOffsets, "bytes 0..<4"
    ),
    (
      "trailing garbage",
      safetensorsFile(
        header: #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}"#,
        data: [UInt8](repeating: 7, count: 9)),
      .trailingBytes, "5 bytes follow"
    ),
    (
      "duplicate tensor names",
      safetensorsFile(
        header:
          #"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}"#
          + #","a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
        data: [UInt8](repeating: 0, count: 8)),
      .duplicateName, "two entries for tensor 'a'"
    ),
    (
      "duplicate metadata key",
      safetensorsFile(header: #"{"__metadata__":{"k":"1","k":"2"}}"#), .duplicateName,
      "'k' appears twice"
    ),
    (
      "metadata value not a string",
      safetensorsFile(header: #"{"__metadata__":{"step":3}}"#), .invalidHeader, "not a string"
    ),
    (
      "missing dtype",
      safetensorsFile(header: #"{"a":{"shape":[1],"data_offsets":[0,4]}}"#, data: [0, 0, 0, 0]),
      .invalidHeader, "lacks the field(s) dtype"
    ),
    (
      "repeated field",
      safetensorsFile(
        header: #"{"a":{"dtype":"F32","shape":[1],"shape":[1],"data_offsets":[0,4]}}"#,
        data: [0, 0, 0, 0]),
      .invalidHeader, "two 'shape' fields"
    ),
    (
      "nesting too deep",
      safetensorsFile(header: #"{"a":"# + String(repeating: "[", count: 1000)),
      .invalidJSON, "nesting deeper"
    ),
    (
      "lone surrogate escape",
      safetensorsFile(header: #"{"\ud800":{}}"#), .invalidJSON, "surrogate"
    ),
  ] as [(String, [UInt8], SafeTensorsError.Kind, String)])
func malformedFileRaisesClearError(
  label: String, bytes: [UInt8], kind: SafeTensorsError.Kind, fragment: String
) throws {
  let error = try #require(throws: SafeTensorsError.self, "\(label)") {
    try SafeTensors(bytes: bytes)
  }
  #expect(error.kind == kind, "\(label): \(error)")
  #expect(error.description.contains(fragment), "\(label): \(error)")
  #expect(!error.description.contains("\n"), "\(label): \(error)")
  #expect(error.description.hasPrefix("safetensors data: "), "\(label): \(error)")
}

@Test func invalidUTF8HeaderIsRejected() throws {
  var bytes = safetensorsFile(header: #"{"__metadata__":{"k":"xy"}}"#)
  let position = try #require(bytes.firstIndex(of: UInt8(ascii: "x")))
  bytes[position] = 0xFF
  let error = try #require(throws: SafeTensorsError.self) { try SafeTensors(bytes: bytes) }
  #expect(error.kind == .invalidJSON)
  #expect(error.description.contains("UTF-8"))
}

@Test func readNamesThePath() throws {
  let directory = FileManager.default.temporaryDirectory
    .appendingPathComponent("concord-safetensors-\(getpid())").path
  try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
  defer { try? FileManager.default.removeItem(atPath: directory) }

  let good = "\(directory)/good.safetensors"
  try sampleTensors().write(to: good)
  let read = try SafeTensors.read(path: good)
  #expect(read == sampleTensors())
  #expect(read.sourcePath == good)
  let missingTensor = try #require(throws: SafeTensorsError.self) { try read.floats("absent") }
  #expect(missingTensor.kind == .missingTensor)
  #expect(missingTensor.description.contains(good))

  let bad = "\(directory)/bad.safetensors"
  try AtomicFile.write(safetensorsFile(header: "[]"), to: bad)
  let malformed = try #require(throws: SafeTensorsError.self) { try SafeTensors.read(path: bad) }
  #expect(malformed.kind == .invalidHeader)
  #expect(malformed.description.hasPrefix("safetensors file '\(bad)': "))

  let absent = "\(directory)/absent.safetensors"
  let unreadable = try #require(throws: SafeTensorsError.self) {
    try SafeTensors.read(path: absent)
  }
  #expect(unreadable.kind == .unreadableFile)
  #expect(unreadable.description.contains(absent))
  #expect(unreadable.description.contains("No such file or directory"))

  let notFile = try #require(throws: SafeTensorsError.self) {
    try SafeTensors.read(path: directory)
  }
  #expect(notFile.kind == .unreadableFile)
}

@Test func typedAccessChecksDtypeAndShape() throws {
  let tensors = sampleTensors()
  let dtype = try #require(throws: SafeTensorsError.self) { try tensors.floats("step") }
  #expect(dtype.kind == .dtypeMismatch)
  #expect(dtype.description.contains("dtype I64, expected F32"))

  let shape = try #require(throws: SafeTensorsError.self) {
    try tensors.floats("encoder.layer0.weight", shape: [3, 2])
  }
  #expect(shape.kind == .shapeMismatch)
  #expect(shape.description.contains("[2, 3], expected [3, 2]"))

  let missing = try #require(throws: SafeTensorsError.self) { try tensors.int64s("epoch") }
  #expect(missing.kind == .missingTensor)
  #expect(missing.description.contains("'epoch'"))
}

@Test func everyTruncationIsRejected() throws {
  let small = SafeTensors(
    tensors: [
      .init(name: "w", shape: [3, 4], floats: (0..<12).map(Float.init)),
      .init(name: "step", shape: [], int64s: [9]),
    ],
    metadata: ["version": "1"])
  let bytes = small.serialized()
  #expect(bytes.count <= 300)
  for length in 0..<bytes.count {
    #expect(try parseErrorKind(Array(bytes.prefix(length))) != nil, "prefix of \(length) bytes")
  }
  #expect(try parseErrorKind(bytes) == nil)
}

@Test func corruptedBytesNeverCrash() throws {
  let bytes = SafeTensors(
    tensors: [
      .init(name: "w", shape: [2, 3], floats: [1, 2, 3, 4, 5, 6]),
      .init(name: "n", shape: [1], int64s: [3]),
    ],
    metadata: ["a": "b"]
  ).serialized()

  // Every single-byte change to a few characteristic values, at every position.
  for position in bytes.indices {
    for replacement: UInt8 in [0x00, 0xFF, 0x22, 0x7B, 0x5B, 0x31, 0x2D, 0x20] {
      var corrupted = bytes
      corrupted[position] = replacement
      try checkParsesOrRejects(corrupted, "byte \(position) = \(replacement)")
    }
  }
  // Random bit flips, several at once, from a fixed stream.
  var stream = RandomStream(seed: 11, purpose: .test)
  for trial in 0..<3000 {
    var corrupted = bytes
    for _ in 0...stream.integer(below: 3) {
      corrupted[stream.integer(below: corrupted.count)] ^= UInt8(1 << stream.integer(below: 8))
    }
    try checkParsesOrRejects(corrupted, "trial \(trial)")
  }
}

/// Checks that `bytes` either parses into a value that survives a round trip, or raises a
/// one-line ``SafeTensorsError``.
private func checkParsesOrRejects(_ bytes: [UInt8], _ label: String) throws {
  do {
    let parsed = try SafeTensors(bytes: bytes)
    #expect(try SafeTensors(bytes: parsed.serialized()) == parsed, "\(label)")
  } catch let error as SafeTensorsError {
    #expect(!error.description.contains("\n"), "\(label): \(error)")
  }
}
