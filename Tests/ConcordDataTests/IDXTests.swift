import Foundation
import Testing

@testable import ConcordData

extension DataError {
  /// The name of the case, such as `invalidHeader`.
  var caseName: String { Mirror(reflecting: self).children.first?.label ?? "\(self)" }
}

/// Returns the error that `IDX.read` throws for `path`, or nil when it succeeds.
private func readError(_ path: String) -> DataError? {
  do {
    _ = try IDX.read(path: path)
    return nil
  } catch {
    return error as? DataError
  }
}

private let sampleDimensions = [3, 2, 4]
private let samplePayload = (0..<24).map { UInt8($0 * 10) }

@Test func plainRoundTrip() throws {
  let directory = try TemporaryDirectory()
  let path = directory.file("images-idx3-ubyte")
  try writePlain(idxBytes(dimensions: sampleDimensions, payload: samplePayload), to: path)
  let array = try IDX.read(path: path)
  #expect(array.dimensions == sampleDimensions)
  #expect(array.bytes == samplePayload)
}

@Test func gzipRoundTrip() throws {
  let directory = try TemporaryDirectory()
  let path = directory.file("images-idx3-ubyte.gz")
  try writeGzip(idxBytes(dimensions: sampleDimensions, payload: samplePayload), to: path)
  let array = try IDX.read(path: path)
  #expect(array.dimensions == sampleDimensions)
  #expect(array.bytes == samplePayload)
}

@Test func gzipRoundTripLargerThanOneChunk() throws {
  let directory = try TemporaryDirectory()
  let path = directory.file("large-idx1-ubyte.gz")
  let count = IDX.chunkSize + 12_345
  let payload = (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31) }
  try writeGzip(idxBytes(dimensions: [count], payload: payload), to: path)
  let array = try IDX.read(path: path)
  #expect(array.dimensions == [count])
  #expect(array.bytes == payload)
}

@Test func wrongMagicRejected() throws {
  let directory = try TemporaryDirectory()
  let path = directory.file("bad-magic")
  var bytes = idxBytes(dimensions: [4], payload: [1, 2, 3, 4])
  bytes[0] = 0x12
  try writePlain(bytes, to: path)
  let error = try #require(readError(path))
  #expect(error.caseName == "invalidHeader")
  #expect(error.description.contains(path))
  #expect(error.description.contains("12 00 08 01"))
}

@Test func wrongTypeCodeRejected() throws {
  let directory = try TemporaryDirectory()
  let path = directory.file("floats.gz")
  try writeGzip(idxBytes(dimensions: [1], payload: [0, 0, 0, 0], typeCode: 0x0D), to: path)
  let error = try #require(readError(path))
  #expect(error == .unsupportedElementType(path: path, code: 0x0D))
  #expect(error.description.contains(path))
  #expect(error.description.contains("0x0D"))
}

@Test func dimensionCountOutOfRangeRejected() throws {
  let directory = try TemporaryDirectory()
  let path = directory.file("five-dimensions")
  try writePlain(idxBytes(dimensions: [1, 1, 1, 1, 1], payload: [7]), to: path)
  let error = try #require(readError(path))
  #expect(error.caseName == "invalidHeader")
  #expect(error.description.contains(path))
  #expect(error.description.contains("5 dimensions"))
}

@Test(arguments: [false, true])
func payloadShorterThanDimensionsRejected(compressed: Bool) throws {
  let directory = try TemporaryDirectory()
  let path = directory.file(compressed ? "short.gz" : "short")
  let bytes = idxBytes(dimensions: [2, 5], payload: Array(repeating: 1, count: 7))
  try compressed ? writeGzip(bytes, to: path) : writePlain(bytes, to: path)
  let error = try #require(readError(path))
  #expect(error == .payloadLengthMismatch(path: path, found: 7, expected: 10, dimensions: [2, 5]))
  #expect(error.description.contains(path))
}

@Test(arguments: [false, true])
func payloadLongerThanDimensionsRejected(compressed: Bool) throws {
  let directory = try TemporaryDirectory()
  let path = directory.file(compressed ? "long.gz" : "long")
  let bytes = idxBytes(dimensions: [2, 5], payload: Array(repeating: 1, count: 13))
  try compressed ? writeGzip(bytes, to: path) : writePlain(bytes, to: path)
  let error = try #require(readError(path))
  #expect(error == .payloadLengthMismatch(path: path, found: 13, expected: 10, dimensions: [2, 5]))
  #expect(error.description.contains(path))
}

@Test func hugeDimensionsRejectedWithoutAllocating() throws {
  let directory = try TemporaryDirectory()
  for compressed in [false, true] {
    let path = directory.file(compressed ? "huge.gz" : "huge")
    let bytes = idxBytes(dimensions: [60_000, 65_535, 65_535], payload: [1, 2, 3])
    try compressed ? writeGzip(bytes, to: path) : writePlain(bytes, to: path)
    let error = try #require(readError(path))
    #expect(error.caseName == "payloadLengthMismatch")
    #expect(error.description.contains(path))
  }
}

@Test func truncatedGzipRejected() throws {
  let directory = try TemporaryDirectory()
  let complete = directory.file("complete.gz")
  let payload = (0..<4000).map { UInt8(truncatingIfNeeded: $0 &* 7919 >> 3) }
  try writeGzip(idxBytes(dimensions: [4000], payload: payload), to: complete)
  let compressed = try [UInt8](Data(contentsOf: URL(fileURLWithPath: complete)))

  // Cut inside the deflate data and, separately, only inside the 8-byte trailer.
  for keptCount in [compressed.count / 2, compressed.count - 4] {
    let path = directory.file("truncated-\(keptCount).gz")
    try writePlain(Array(compressed[0..<keptCount]), to: path)
    let error = try #require(readError(path))
    #expect(error.caseName == "corruptCompressedStream")
    #expect(error.description.contains(path))
  }
}

@Test func corruptGzipChecksumRejected() throws {
  let directory = try TemporaryDirectory()
  let path = directory.file("bad-crc.gz")
  try writeGzip(idxBytes(dimensions: [100], payload: Array(repeating: 9, count: 100)), to: path)
  var compressed = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
  compressed[compressed.count - 8] ^= 0xFF
  try writePlain(compressed, to: path)
  let error = try #require(readError(path))
  #expect(error.caseName == "corruptCompressedStream")
  #expect(error.description.contains(path))
}

@Test func garbageRejected() throws {
  let directory = try TemporaryDirectory()
  let text = directory.file("notes.txt")
  try writePlain(Array("this is not an IDX file\n".utf8), to: text)
  let textError = try #require(readError(text))
  #expect(textError.caseName == "invalidHeader")
  #expect(textError.description.contains(text))

  // A gzip signature followed by bytes that are not deflate data.
  let fake = directory.file("fake.gz")
  try writePlain([0x1F, 0x8B, 0x08, 0x00] + Array(repeating: 0xFF, count: 60), to: fake)
  let fakeError = try #require(readError(fake))
  #expect(fakeError.caseName == "corruptCompressedStream")
  #expect(fakeError.description.contains(fake))

  let empty = directory.file("empty")
  try writePlain([], to: empty)
  let emptyError = try #require(readError(empty))
  #expect(emptyError.caseName == "invalidHeader")
  #expect(emptyError.description.contains(empty))
}

@Test func missingFileRejected() throws {
  let directory = try TemporaryDirectory()
  let path = directory.file("absent.gz")
  let error = try #require(readError(path))
  #expect(error.caseName == "unreadable")
  #expect(error.description.contains(path))
}

@Test func errorDescriptionIsOneLine() throws {
  let directory = try TemporaryDirectory()
  let path = directory.file("short")
  try writePlain(idxBytes(dimensions: [3], payload: [1]), to: path)
  let error = try #require(readError(path))
  #expect(!error.description.contains("\n"))
  #expect(error.description.contains(DataError.datasetRemedy))
}
