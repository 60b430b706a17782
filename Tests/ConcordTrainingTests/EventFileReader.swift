import Foundation

@testable import ConcordTraining

/// A reader of TensorBoard event files written independently of ``TensorBoardWriter``, for
/// tests: TFRecord framing with both checksums verified, and the protocol-buffer fields of
/// `Event`, `Summary` and `Summary.Value`.
enum EventFileReader {
  /// One decoded `Event`.
  struct Event: Equatable {
    var wallTime: Double?
    var step: Int64 = 0
    var fileVersion: String?
    var scalars: [String: Float] = [:]
  }

  /// A record whose length or data checksum does not match.
  struct CorruptRecord: Error, CustomStringConvertible {
    var offset: Int
    var what: String
    var description: String { "record at byte \(offset): \(what)" }
  }

  /// Splits a TFRecord stream into its records, verifying every checksum.
  static func records(_ bytes: [UInt8]) throws -> [[UInt8]] {
    var records: [[UInt8]] = []
    var offset = 0
    while offset < bytes.count {
      guard offset + 12 <= bytes.count else {
        throw CorruptRecord(offset: offset, what: "truncated header")
      }
      let lengthBytes = Array(bytes[offset..<(offset + 8)])
      let length = Int(littleEndian(lengthBytes))
      let lengthCRC = UInt32(littleEndian(Array(bytes[(offset + 8)..<(offset + 12)])))
      guard CRC32C.masked(CRC32C.checksum(lengthBytes)) == lengthCRC else {
        throw CorruptRecord(offset: offset, what: "length checksum mismatch")
      }
      let start = offset + 12
      guard start + length + 4 <= bytes.count else {
        throw CorruptRecord(offset: offset, what: "truncated data")
      }
      let data = Array(bytes[start..<(start + length)])
      let dataCRC = UInt32(littleEndian(Array(bytes[(start + length)..<(start + length + 4)])))
      guard CRC32C.masked(CRC32C.checksum(data)) == dataCRC else {
        throw CorruptRecord(offset: offset, what: "data checksum mismatch")
      }
      records.append(data)
      offset = start + length + 4
    }
    return records
  }

  /// Decodes an `Event` message.
  static func event(_ bytes: [UInt8]) throws -> Event {
    var event = Event()
    for field in try fields(bytes) {
      switch (field.number, field.value) {
      case (1, .fixed64(let bits)): event.wallTime = Double(bitPattern: bits)
      case (2, .varint(let value)): event.step = Int64(bitPattern: value)
      case (3, .bytes(let text)): event.fileVersion = String(decoding: text, as: UTF8.self)
      case (5, .bytes(let summary)):
        for value in try fields(summary) where value.number == 1 {
          guard case .bytes(let entry) = value.value else { continue }
          var tag = ""
          var number: Float?
          for part in try fields(entry) {
            switch (part.number, part.value) {
            case (1, .bytes(let text)): tag = String(decoding: text, as: UTF8.self)
            case (2, .fixed32(let bits)): number = Float(bitPattern: bits)
            default: break
            }
          }
          if let number { event.scalars[tag] = number }
        }
      default: break
      }
    }
    return event
  }

  enum FieldValue: Equatable {
    case varint(UInt64)
    case fixed64(UInt64)
    case bytes([UInt8])
    case fixed32(UInt32)
  }

  struct MalformedMessage: Error {}

  /// Decodes the fields of a protocol-buffer message, in order.
  static func fields(_ bytes: [UInt8]) throws -> [(number: Int, value: FieldValue)] {
    var result: [(Int, FieldValue)] = []
    var index = 0
    while index < bytes.count {
      let key = try varint(bytes, &index)
      let number = Int(key >> 3)
      switch key & 7 {
      case 0: result.append((number, .varint(try varint(bytes, &index))))
      case 1:
        guard index + 8 <= bytes.count else { throw MalformedMessage() }
        result.append((number, .fixed64(littleEndian(Array(bytes[index..<(index + 8)])))))
        index += 8
      case 2:
        let length = Int(try varint(bytes, &index))
        guard index + length <= bytes.count else { throw MalformedMessage() }
        result.append((number, .bytes(Array(bytes[index..<(index + length)]))))
        index += length
      case 5:
        guard index + 4 <= bytes.count else { throw MalformedMessage() }
        result.append((number, .fixed32(UInt32(littleEndian(Array(bytes[index..<(index + 4)]))))))
        index += 4
      default: throw MalformedMessage()
      }
    }
    return result
  }

  /// Decodes a varint at `index` and moves `index` past it.
  static func varint(_ bytes: [UInt8], _ index: inout Int) throws -> UInt64 {
    var value: UInt64 = 0
    var shift: UInt64 = 0
    while true {
      guard index < bytes.count, shift < 64 else { throw MalformedMessage() }
      let byte = bytes[index]
      index += 1
      value |= UInt64(byte & 0x7F) << shift
      if byte & 0x80 == 0 { return value }
      shift += 7
    }
  }

  private static func littleEndian(_ bytes: [UInt8]) -> UInt64 {
    bytes.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
  }
}
