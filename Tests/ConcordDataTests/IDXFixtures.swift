import CZlib
import Foundation

/// A temporary directory for test files, removed when the value is released.
final class TemporaryDirectory {
  let path: String

  init() throws {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent(
      "concord-data-tests-\(UUID().uuidString)", isDirectory: true)
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    path = url.path
  }

  deinit {
    try? FileManager.default.removeItem(atPath: path)
  }

  /// Returns the path of `name` inside the directory.
  func file(_ name: String) -> String {
    URL(fileURLWithPath: path).appendingPathComponent(name).path
  }
}

/// Returns the bytes of an unsigned-byte IDX file with `dimensions` and `payload`.
func idxBytes(dimensions: [Int], payload: [UInt8], typeCode: UInt8 = 0x08) -> [UInt8] {
  var bytes: [UInt8] = [0, 0, typeCode, UInt8(dimensions.count)]
  for size in dimensions {
    bytes += [24, 16, 8, 0].map { UInt8(truncatingIfNeeded: size >> $0) }
  }
  return bytes + payload
}

/// Writes `bytes` to `path` unchanged.
func writePlain(_ bytes: [UInt8], to path: String) throws {
  try Data(bytes).write(to: URL(fileURLWithPath: path))
}

/// Writes `bytes` to `path` as a gzip stream through zlib.
func writeGzip(_ bytes: [UInt8], to path: String) throws {
  guard let file = gzopen(path, "wb") else {
    throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
  }
  let written = bytes.withUnsafeBytes { gzwrite(file, $0.baseAddress, UInt32($0.count)) }
  let closed = gzclose(file)
  guard written == bytes.count, closed == Z_OK else {
    throw CocoaError(.fileWriteUnknown, userInfo: [NSFilePathErrorKey: path])
  }
}

/// Writes a dataset split as gzip IDX files: `images` is `[count, height, width]` flattened.
func writeSplit(
  stems: (images: String, labels: String), in directory: TemporaryDirectory,
  images: [UInt8], imageDimensions: [Int], labels: [UInt8]
) throws {
  try writeGzip(
    idxBytes(dimensions: imageDimensions, payload: images),
    to: directory.file(stems.images + ".gz"))
  try writeGzip(
    idxBytes(dimensions: [labels.count], payload: labels),
    to: directory.file(stems.labels + ".gz"))
}
