import Foundation
import Testing

@testable import ConcordTraining

/// Parses a hexadecimal string such as `"0a0b"` into bytes.
private func hexBytes(_ text: String) -> [UInt8] {
  let characters = Array(text)
  return stride(from: 0, to: characters.count, by: 2).map {
    UInt8(String(characters[$0...($0 + 1)]), radix: 16)!
  }
}

struct CRC32CTests {
  @Test func checkValueOfDigits() {
    #expect(CRC32C.checksum(Array("123456789".utf8)) == 0xE306_9283)
  }

  @Test func emptyInputIsZero() {
    #expect(CRC32C.checksum([UInt8]()) == 0)
  }

  /// The test vectors of RFC 3720, appendix B.4 (iSCSI), read as little-endian numbers.
  @Test func iSCSITestVectors() {
    #expect(CRC32C.checksum([UInt8](repeating: 0, count: 32)) == 0x8A91_36AA)
    #expect(CRC32C.checksum([UInt8](repeating: 0xFF, count: 32)) == 0x62A8_AB43)
    #expect(CRC32C.checksum((0..<32).map { UInt8($0) }) == 0x46DD_794E)
  }

  @Test func maskRotatesAndAddsConstant() {
    #expect(CRC32C.masked(0) == 0xA282_EAD8)
    #expect(CRC32C.masked(0xE306_9283) == 0xC78A_B0E5)
  }
}

struct ProtobufEncoderTests {
  @Test(
    arguments: [
      (0, [0x00]),
      (1, [0x01]),
      (127, [0x7F]),
      (128, [0x80, 0x01]),
      (300, [0xAC, 0x02]),
      (16_384, [0x80, 0x80, 0x01]),
      (UInt64.max, [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01]),
    ] as [(UInt64, [UInt8])])
  func varintEncoding(value: UInt64, expected: [UInt8]) throws {
    var encoder = ProtobufEncoder()
    encoder.appendVarint(value)
    #expect(encoder.bytes == expected)
    var index = 0
    #expect(try EventFileReader.varint(encoder.bytes, &index) == value)
    #expect(index == expected.count)
  }

  @Test func negativeInt64TakesTenBytes() {
    var encoder = ProtobufEncoder()
    encoder.append(field: 2, int64: -1)
    #expect(encoder.bytes == [0x10] + [UInt8](repeating: 0xFF, count: 9) + [0x01])
  }

  /// Bytes that TensorBoard's Python protocol buffers (tensorboard 2.21) produce for the
  /// same events.
  @Test func eventsMatchReferenceEncoding() {
    let scalar = TensorBoardWriter.encodeEvent(
      wallTime: 1.5, step: 300, fileVersion: nil, scalars: [("loss/supervised", 0.25)])
    #expect(
      scalar
        == hexBytes(
          "09000000000000f83f10ac022a180a160a0f6c6f73732f73757065727669736564150000803e"))
    let version = TensorBoardWriter.encodeEvent(
      wallTime: 1.5, step: 0, fileVersion: "brain.Event:2", scalars: [])
    #expect(version == hexBytes("09000000000000f83f1a0d627261696e2e4576656e743a32"))
  }
}

struct TFRecordTests {
  /// The framing of `hello` by TensorBoard's `RecordWriter` (tensorboard 2.21).
  @Test func frameMatchesReference() {
    #expect(
      TFRecord.frame(Array("hello".utf8))
        == hexBytes("0500000000000000eab2043e68656c6c6fbb1f1c19"))
  }

  @Test func recordRoundTrip() throws {
    let event = TensorBoardWriter.encodeEvent(
      wallTime: 1_700_000_000.25, step: 1234, fileVersion: nil,
      scalars: [("loss/simclr", 4.5), ("cosine/supervised-simclr", -0.125)])
    let stream = TFRecord.frame(event) + TFRecord.frame([])
    let records = try EventFileReader.records(stream)
    #expect(records.count == 2)
    #expect(records.first == event)
    #expect(records.last == [])
    let decoded = try EventFileReader.event(records[0])
    #expect(decoded.wallTime == 1_700_000_000.25)
    #expect(decoded.step == 1234)
    #expect(decoded.fileVersion == nil)
    #expect(decoded.scalars == ["loss/simclr": 4.5, "cosine/supervised-simclr": -0.125])
  }

  @Test func flippedBitFailsChecksum() throws {
    var stream = TFRecord.frame(Array("hello".utf8))
    stream[13] ^= 0x01
    #expect(throws: EventFileReader.CorruptRecord.self) {
      try EventFileReader.records(stream)
    }
  }
}

struct TensorBoardWriterFileTests {
  @Test func writesVersionThenScalars() throws {
    let directory = try makeTemporaryDirectory() + "/tb"
    let writer = try TensorBoardWriter(directory: directory, wallTime: 1_700_000_000)
    #expect(writer.path.hasPrefix(directory + "/events.out.tfevents.1700000000."))
    try writer.add(step: 5, scalars: [("loss/byol", 0.5), ("weight/byol", .nan)], wallTime: 1)
    try writer.add(step: 10, scalars: [("lr", 0.001)], wallTime: 2)

    let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: writer.path)))
    let events = try EventFileReader.records(bytes).map(EventFileReader.event)
    #expect(events.count == 3)
    #expect(events[0].fileVersion == "brain.Event:2")
    #expect(events[0].wallTime == 1_700_000_000)
    #expect(events[1].step == 5)
    // NaN is left out, as metrics.jsonl writes null.
    #expect(events[1].scalars == ["loss/byol": 0.5])
    #expect(events[2].step == 10)
    #expect(events[2].scalars == ["lr": Float(0.001)])
  }

  @Test func unwritableFolderThrows() throws {
    let file = try makeTemporaryDirectory() + "/file"
    _ = FileManager.default.createFile(atPath: file, contents: Data())
    #expect(throws: TrainingError.self) {
      try TensorBoardWriter(directory: file + "/tb")
    }
  }
}
