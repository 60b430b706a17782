import Foundation

/// Writes scalars to a TensorBoard event file, with no dependency beyond Foundation.
///
/// An event file is a TFRecord stream of `Event` protocol buffers (TensorFlow's
/// `tensorflow/core/util/event.proto`). The first event carries `file_version`
/// `brain.Event:2`. Each later event carries one step's scalars as `Summary.Value`s with a
/// `simple_value`, which TensorBoard's scalar dashboard and its `EventAccumulator` read.
///
/// Every call to ``add(step:scalars:wallTime:)`` frames one event and passes it to the
/// kernel in one `write`, without buffering in the process, so a crash of the process loses
/// no event that was added before it.
public final class TensorBoardWriter {
  /// The event file.
  public let path: String
  private let descriptor: Int32

  /// Creates `events.out.tfevents.<unix seconds>.<host name>` in `directory`, creating the
  /// folder if needed, and writes the file-version event.
  ///
  /// A file of that name is appended to, which TensorBoard reads as one stream.
  ///
  /// - Throws: ``TrainingError`` naming the folder or file that cannot be created or written.
  public init(directory: String, wallTime: Double = Date().timeIntervalSince1970) throws {
    do {
      try FileManager.default.createDirectory(
        atPath: directory, withIntermediateDirectories: true)
    } catch {
      throw TrainingError(
        "cannot create folder \(directory): \(systemErrorDescription(error)); pass another --out")
    }
    path = "\(directory)/events.out.tfevents.\(Int(wallTime)).\(Self.hostName())"
    descriptor = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    guard descriptor >= 0 else {
      throw TrainingError(
        "cannot open \(path) for writing: \(String(cString: strerror(errno))); "
          + "pass another --out")
    }
    try append(
      Self.encodeEvent(wallTime: wallTime, step: 0, fileVersion: "brain.Event:2", scalars: []))
  }

  deinit {
    close(descriptor)
  }

  /// Appends one event with `scalars` at `step`; non-finite values are left out, as
  /// `metrics.jsonl` writes them as `null`.
  ///
  /// - Parameters:
  ///   - step: The global step that TensorBoard plots the values against.
  ///   - scalars: Tags such as `loss/supervised`, with their values, stored as 32-bit floats.
  ///   - wallTime: Seconds since 1970.
  /// - Throws: ``TrainingError`` naming the file when the write fails.
  public func add(
    step: Int, scalars: [(tag: String, value: Double)],
    wallTime: Double = Date().timeIntervalSince1970
  ) throws {
    let finite = scalars.filter(\.value.isFinite).map { ($0.tag, Float($0.value)) }
    try append(
      Self.encodeEvent(wallTime: wallTime, step: Int64(step), fileVersion: nil, scalars: finite))
  }

  private func append(_ event: [UInt8]) throws {
    let record = TFRecord.frame(event)
    var written = 0
    while written < record.count {
      let result = record.withUnsafeBytes { raw in
        write(descriptor, raw.baseAddress! + written, raw.count - written)
      }
      if result < 0 && errno == EINTR { continue }
      guard result > 0 else {
        throw TrainingError(
          "cannot write \(path): \(String(cString: strerror(errno))); check the free space")
      }
      written += result
    }
  }

  /// Encodes an `Event`: `wall_time` (field 1, double), `step` (2, int64), `file_version`
  /// (3, string) and `summary` (5, a `Summary` of `Value`s with `tag` (1) and
  /// `simple_value` (2, float)).
  static func encodeEvent(
    wallTime: Double, step: Int64, fileVersion: String?, scalars: [(String, Float)]
  ) -> [UInt8] {
    var event = ProtobufEncoder()
    event.append(field: 1, double: wallTime)
    // Proto3 leaves fields at their default value out, as TensorFlow's own writer does.
    if step != 0 { event.append(field: 2, int64: step) }
    if let fileVersion { event.append(field: 3, string: fileVersion) }
    if !scalars.isEmpty {
      var summary = ProtobufEncoder()
      for (tag, value) in scalars {
        var entry = ProtobufEncoder()
        entry.append(field: 1, string: tag)
        entry.append(field: 2, float: value)
        summary.append(field: 1, message: entry.bytes)
      }
      event.append(field: 5, message: summary.bytes)
    }
    return event.bytes
  }

  private static func hostName() -> String {
    var buffer = [CChar](repeating: 0, count: 256)
    guard gethostname(&buffer, buffer.count - 1) == 0 else { return "localhost" }
    let name = String(
      decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return name.isEmpty ? "localhost" : name
  }
}

/// TFRecord framing: each record is its length as a little-endian `UInt64`, the masked
/// CRC-32C of those 8 bytes, the data, and the masked CRC-32C of the data (both checksums
/// little-endian `UInt32`).
enum TFRecord {
  /// Returns `data` framed as one record.
  static func frame(_ data: [UInt8]) -> [UInt8] {
    var record: [UInt8] = []
    record.reserveCapacity(data.count + 16)
    let length = littleEndianBytes(UInt64(data.count))
    record += length
    record += littleEndianBytes(CRC32C.masked(CRC32C.checksum(length)))
    record += data
    record += littleEndianBytes(CRC32C.masked(CRC32C.checksum(data)))
    return record
  }

  static func littleEndianBytes<T: FixedWidthInteger>(_ value: T) -> [UInt8] {
    (0..<(T.bitWidth / 8)).map { UInt8(truncatingIfNeeded: value >> ($0 * 8)) }
  }
}

/// The Protocol Buffers wire format, for the few field types of TensorBoard's events.
///
/// Each field is a key, `(field number << 3) | wire type`, as a varint, then the value:
/// a varint (type 0), 8 little-endian bytes (type 1), a varint length and that many bytes
/// (type 2), or 4 little-endian bytes (type 5).
struct ProtobufEncoder {
  /// The encoded message so far.
  private(set) var bytes: [UInt8] = []

  /// Appends `value` as a varint: 7 bits per byte, least significant first, with the high
  /// bit set on every byte but the last.
  mutating func appendVarint(_ value: UInt64) {
    var rest = value
    while rest >= 0x80 {
      bytes.append(UInt8(truncatingIfNeeded: rest) | 0x80)
      rest >>= 7
    }
    bytes.append(UInt8(rest))
  }

  private mutating func appendKey(field: Int, wireType: UInt64) {
    appendVarint(UInt64(field) << 3 | wireType)
  }

  /// Appends an `int64` field; negative values take ten bytes, as in two's complement.
  mutating func append(field: Int, int64 value: Int64) {
    appendKey(field: field, wireType: 0)
    appendVarint(UInt64(bitPattern: value))
  }

  /// Appends a `double` field.
  mutating func append(field: Int, double value: Double) {
    appendKey(field: field, wireType: 1)
    bytes += TFRecord.littleEndianBytes(value.bitPattern)
  }

  /// Appends a `float` field.
  mutating func append(field: Int, float value: Float) {
    appendKey(field: field, wireType: 5)
    bytes += TFRecord.littleEndianBytes(value.bitPattern)
  }

  /// Appends a `string` field as UTF-8.
  mutating func append(field: Int, string: String) {
    append(field: field, message: Array(string.utf8))
  }

  /// Appends an embedded message (or any length-delimited bytes).
  mutating func append(field: Int, message: [UInt8]) {
    appendKey(field: field, wireType: 2)
    appendVarint(UInt64(message.count))
    bytes += message
  }
}

extension Trainer {
  /// Adds `scalars` at `step` to rank 0's event file.
  ///
  /// A failed write is reported once as a warning and ends the event file, because losing the
  /// TensorBoard view should not stop a run whose `metrics.jsonl` contains the same values.
  func addTensorBoardScalars(step: Int, _ scalars: [(tag: String, value: Double)]) {
    guard let writer = tensorBoard else { return }
    do {
      try writer.add(step: step, scalars: scalars)
    } catch {
      warn(rank: communicator.rank, "\(error); no more TensorBoard events are written")
      tensorBoard = nil
    }
  }
}
