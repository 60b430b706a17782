/// An error in the training data or in the batch configuration, described in one line.
///
/// Each description names the file or value, states what is wrong (found against
/// expected) and what to do about it.
public enum DataError: Error, CustomStringConvertible, Equatable, Sendable {
  /// The dataset directory does not exist.
  case directoryNotFound(path: String)
  /// The dataset path names a file, not a directory.
  case notADirectory(path: String)
  /// None of the candidate file names exists in the dataset directory.
  case fileNotFound(directory: String, candidates: [String])
  /// The file could not be opened or read; `reason` is the system's error message.
  case unreadable(path: String, reason: String)
  /// The gzip stream is truncated or corrupt; `reason` is zlib's error message.
  case corruptCompressedStream(path: String, reason: String)
  /// The first bytes are not a valid IDX header.
  case invalidHeader(path: String, found: String, expected: String)
  /// The IDX element type is not unsigned byte (code 0x08).
  case unsupportedElementType(path: String, code: UInt8)
  /// The payload length differs from the product of the dimensions.
  case payloadLengthMismatch(path: String, found: Int, expected: Int, dimensions: [Int])
  /// The IDX array has the wrong shape for its role (images are 3-d, labels 1-d).
  case unexpectedShape(path: String, found: [Int], expected: String)
  /// The images file and the labels file contain different numbers of samples.
  case countMismatch(imagesPath: String, imageCount: Int, labelsPath: String, labelCount: Int)
  /// A label is not below the class count.
  case labelOutOfRange(path: String, index: Int, value: Int, classCount: Int)
  /// The global batch size does not split into equal local batches.
  case batchSizeNotDivisible(globalBatchSize: Int, worldSize: Int)
  /// The global batch size is not positive or exceeds the number of samples.
  case invalidBatchSize(globalBatchSize: Int, datasetCount: Int)

  /// The advice for a missing or damaged dataset file.
  static let datasetRemedy =
    "reinstall dataset-fashion-mnist, or pass --data DIR with MNIST-format IDX files"

  /// One line: the file or value, what is wrong, and what to do.
  public var description: String {
    switch self {
    case .directoryNotFound(let path):
      return "\(path): dataset directory not found; \(Self.datasetRemedy)"
    case .notADirectory(let path):
      return "\(path) is a file, not a dataset directory; pass --data DIR, the folder of the "
        + "MNIST-format IDX files"
    case .fileNotFound(let directory, let candidates):
      let names = candidates.joined(separator: " or ")
      return "\(directory): dataset file not found (looked for \(names)); \(Self.datasetRemedy)"
    case .unreadable(let path, let reason):
      return "\(path): failed to open or read the file (\(reason)); check the path and its "
        + "permissions, \(Self.datasetRemedy)"
    case .corruptCompressedStream(let path, let reason):
      return "\(path): truncated or corrupt gzip stream (zlib: \(reason)); \(Self.datasetRemedy)"
    case .invalidHeader(let path, let found, let expected):
      return "\(path): invalid IDX header (found \(found), expected \(expected)); "
        + Self.datasetRemedy
    case .unsupportedElementType(let path, let code):
      return
        "\(path): unsupported IDX element type 0x\(hexDigits(code)) (\(elementTypeName(code))), "
        + "expected 0x08 (unsigned byte); \(Self.datasetRemedy)"
    case .payloadLengthMismatch(let path, let found, let expected, let dimensions):
      return "\(path): IDX payload has \(found) bytes, expected \(expected) for dimensions "
        + "\(dimensions), so the file is truncated or damaged; \(Self.datasetRemedy)"
    case .unexpectedShape(let path, let found, let expected):
      return "\(path): IDX array has dimensions \(found), expected \(expected); "
        + Self.datasetRemedy
    case .countMismatch(let imagesPath, let imageCount, let labelsPath, let labelCount):
      return "\(imagesPath): contains \(imageCount) images but \(labelsPath) contains "
        + "\(labelCount) labels, expected equal counts; \(Self.datasetRemedy)"
    case .labelOutOfRange(let path, let index, let value, let classCount):
      return "\(path): label \(value) at index \(index) is out of range, expected 0..<"
        + "\(classCount); raise the class count if the dataset has more classes, else "
        + Self.datasetRemedy
    case .batchSizeNotDivisible(let globalBatchSize, let worldSize):
      return "global batch size \(globalBatchSize) is not divisible by the world size "
        + "\(worldSize); choose a global batch size that is a multiple of \(worldSize)"
    case .invalidBatchSize(let globalBatchSize, let datasetCount):
      return "global batch size \(globalBatchSize) is invalid for a dataset of \(datasetCount) "
        + "samples, expected 1...\(datasetCount); choose a smaller batch or more samples"
    }
  }
}

/// Formats a byte as two uppercase hexadecimal digits.
func hexDigits(_ byte: UInt8) -> String {
  let digits = String(byte, radix: 16, uppercase: true)
  return digits.count < 2 ? "0" + digits : digits
}

/// Names the IDX element type codes from the format's definition.
private func elementTypeName(_ code: UInt8) -> String {
  switch code {
  case 0x08: return "unsigned byte"
  case 0x09: return "signed byte"
  case 0x0B: return "16-bit integer"
  case 0x0C: return "32-bit integer"
  case 0x0D: return "32-bit float"
  case 0x0E: return "64-bit float"
  default: return "unknown code"
  }
}
