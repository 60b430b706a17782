import CZlib
import Foundation

/// An array read from an IDX file: its dimensions and its unsigned-byte elements.
public struct IDXArray: Sendable, Equatable {
  /// The size of each dimension, outermost first (for MNIST images `[count, height, width]`).
  public let dimensions: [Int]
  /// The elements in row-major order; `bytes.count` is the product of `dimensions`.
  public let bytes: [UInt8]

  /// Creates an array; `bytes.count` must equal the product of `dimensions`.
  public init(dimensions: [Int], bytes: [UInt8]) {
    precondition(
      dimensions.reduce(1, *) == bytes.count,
      "IDXArray dimensions \(dimensions) need \(dimensions.reduce(1, *)) bytes, got \(bytes.count)")
    self.dimensions = dimensions
    self.bytes = bytes
  }
}

/// A reader for the IDX format of the MNIST family of datasets, plain or gzip-compressed.
///
/// An IDX file starts with a magic number: two zero bytes, an element type code
/// and the number of dimensions (1 to 4 here). Each dimension follows as a
/// big-endian 32-bit unsigned integer, and then the elements in row-major
/// order. Only unsigned bytes (type code 0x08) are accepted, which is what the
/// MNIST and Fashion-MNIST images and labels use.
///
/// Files go through zlib's `gzread`, which decompresses gzip and passes other
/// files through unchanged, so `.gz` and plain files both work.
///
/// ### References
/// - Y. LeCun, C. Cortes, C. J. C. Burges, "The MNIST database of handwritten digits",
///   http://yann.lecun.com/exdb/mnist/ (the IDX format is defined there).
public enum IDX {
  /// The element type code of unsigned bytes.
  static let unsignedByteCode: UInt8 = 0x08
  /// The largest dimension count accepted.
  static let maximumDimensionCount = 4
  /// The bytes read from the stream per `gzread` call.
  static let chunkSize = 1 << 20
  /// The maximum number of bytes reserved before any payload is read, so that a
  /// damaged header of a compressed file cannot reserve memory its stream lacks.
  static let maximumInitialReservation = 64 << 20

  /// Reads and validates the IDX file at `path`.
  ///
  /// - Parameter path: A plain or gzip-compressed IDX file.
  /// - Returns: The dimensions and elements.
  /// - Throws: ``DataError`` naming `path` when the file cannot be opened or the
  ///   gzip stream is truncated or corrupt. It is also thrown when the header is
  ///   invalid, the element type is not unsigned byte, or the payload is shorter
  ///   or longer than the product of the dimensions.
  public static func read(path: String) throws -> IDXArray {
    guard let file = gzopen(path, "rb") else {
      throw DataError.unreadable(path: path, reason: String(cString: strerror(errno)))
    }
    defer { gzclose(file) }
    var stream = GzipInput(file: file, path: path)

    let dimensions = try readHeader(from: &stream)
    let headerSize = 4 + 4 * dimensions.count
    let expected = try payloadSize(of: dimensions, path: path)

    // A plain file's payload length is known from its size, so a header that
    // promises more than the file contains is rejected before anything is reserved.
    if stream.isPlain, let fileSize = fileSize(atPath: path), fileSize - headerSize != expected {
      throw DataError.payloadLengthMismatch(
        path: path, found: fileSize - headerSize, expected: expected, dimensions: dimensions)
    }

    let bytes = try stream.readPayload(count: expected)
    if bytes.count < expected {
      try stream.checkStatus()
      throw DataError.payloadLengthMismatch(
        path: path, found: bytes.count, expected: expected, dimensions: dimensions)
    }
    let trailing = try stream.countRemainingBytes()
    try stream.checkStatus()
    if trailing > 0 {
      throw DataError.payloadLengthMismatch(
        path: path, found: expected + trailing, expected: expected, dimensions: dimensions)
    }
    return IDXArray(dimensions: dimensions, bytes: bytes)
  }

  /// Reads the magic number and the dimensions.
  private static func readHeader(from stream: inout GzipInput) throws -> [Int] {
    let path = stream.path
    var magic: (UInt8, UInt8, UInt8, UInt8) = (0, 0, 0, 0)
    let magicCount = try withUnsafeMutableBytes(of: &magic) { try stream.read(into: $0) }
    if magicCount < 4 {
      try stream.checkStatus()
      throw DataError.invalidHeader(
        path: path, found: "a file of \(magicCount) bytes", expected: "a 4-byte magic number")
    }
    if magic.0 != 0 || magic.1 != 0 {
      let found = [magic.0, magic.1, magic.2, magic.3].map { hexDigits($0) }.joined(separator: " ")
      throw DataError.invalidHeader(
        path: path, found: "magic bytes \(found)",
        expected: "00 00 followed by the type code and the dimension count")
    }
    if magic.2 != unsignedByteCode {
      throw DataError.unsupportedElementType(path: path, code: magic.2)
    }
    let dimensionCount = Int(magic.3)
    guard (1...maximumDimensionCount).contains(dimensionCount) else {
      throw DataError.invalidHeader(
        path: path, found: "\(dimensionCount) dimensions",
        expected: "1...\(maximumDimensionCount) dimensions")
    }

    var sizes = [UInt8](repeating: 0, count: 4 * dimensionCount)
    let sizesCount = try sizes.withUnsafeMutableBytes { try stream.read(into: $0) }
    if sizesCount < sizes.count {
      try stream.checkStatus()
      throw DataError.invalidHeader(
        path: path, found: "\(sizesCount) bytes of dimension sizes",
        expected: "\(sizes.count) bytes for \(dimensionCount) dimensions")
    }
    return (0..<dimensionCount).map { index in
      sizes[(4 * index)..<(4 * index + 4)].reduce(0) { ($0 << 8) | Int($1) }
    }
  }

  /// Returns the product of `dimensions`, rejecting a product that overflows `Int`.
  private static func payloadSize(of dimensions: [Int], path: String) throws -> Int {
    var product = 1
    for size in dimensions {
      let (next, overflow) = product.multipliedReportingOverflow(by: size)
      if overflow {
        throw DataError.invalidHeader(
          path: path, found: "dimensions \(dimensions) describing over \(Int.max) bytes",
          expected: "dimensions that match the file")
      }
      product = next
    }
    return product
  }

  /// Returns the size in bytes of the file at `path`, or nil when it cannot be found.
  private static func fileSize(atPath path: String) -> Int? {
    let attributes = try? FileManager.default.attributesOfItem(atPath: path)
    return (attributes?[.size] as? NSNumber)?.intValue
  }
}

/// A zlib input stream that turns zlib failures into ``DataError`` values naming the file.
private struct GzipInput {
  let file: gzFile
  let path: String

  /// Whether zlib reads the file unchanged because it is not gzip-compressed.
  ///
  /// zlib decides this on the first read, so it is only meaningful after one.
  var isPlain: Bool { gzdirect(file) == 1 }

  /// Reads until `buffer` is full or the stream ends, and returns the bytes read.
  func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
    var total = 0
    while total < buffer.count {
      let request = UInt32(min(buffer.count - total, IDX.chunkSize))
      let count = gzread(file, buffer.baseAddress! + total, request)
      if count < 0 {
        throw statusError() ?? DataError.corruptCompressedStream(path: path, reason: "read failed")
      }
      if count == 0 { break }
      total += Int(count)
    }
    return total
  }

  /// Reads up to `count` bytes, growing the array as data arrives.
  ///
  /// Growing instead of reserving `count` up front bounds the memory by what
  /// the stream contains, whatever the header claims.
  func readPayload(count: Int) throws -> [UInt8] {
    var bytes = [UInt8]()
    bytes.reserveCapacity(min(count, IDX.maximumInitialReservation))
    var chunk = [UInt8](repeating: 0, count: min(max(count, 1), IDX.chunkSize))
    while bytes.count < count {
      let request = min(count - bytes.count, chunk.count)
      let received = try chunk.withUnsafeMutableBytes {
        try read(into: UnsafeMutableRawBufferPointer(rebasing: $0[0..<request]))
      }
      bytes.append(contentsOf: chunk[0..<received])
      if received < request { break }
    }
    return bytes
  }

  /// Reads the rest of the stream and returns how many bytes it held.
  func countRemainingBytes() throws -> Int {
    var chunk = [UInt8](repeating: 0, count: 4096)
    var total = 0
    while true {
      let received = try chunk.withUnsafeMutableBytes { try read(into: $0) }
      total += received
      if received < chunk.count { return total }
    }
  }

  /// Throws when zlib recorded an error, such as a stream that ended early.
  ///
  /// `gzread` returns the bytes it could decompress from a truncated stream
  /// and records `Z_BUF_ERROR`, so a short read must be followed by this check.
  func checkStatus() throws {
    if let error = statusError() { throw error }
  }

  /// Returns the error zlib recorded for this stream, or nil.
  private func statusError() -> DataError? {
    var code: Int32 = Z_OK
    let message = gzerror(file, &code).map { String(cString: $0) } ?? ""
    switch code {
    case Z_OK, Z_STREAM_END:
      return nil
    case Z_ERRNO:
      return .unreadable(path: path, reason: String(cString: strerror(errno)))
    default:
      return .corruptCompressedStream(
        path: path, reason: message.isEmpty ? "code \(code)" : message)
    }
  }
}
