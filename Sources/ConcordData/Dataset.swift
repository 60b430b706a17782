import ConcordTensors
import Foundation

/// A set of grayscale images with one class label each, held in memory as floats.
///
/// Pixel values are the IDX bytes divided by 255, so they lie in `[0, 1]`.
public struct Dataset: Sendable {
  /// One of the two parts of an MNIST-format dataset.
  public enum Split: String, CaseIterable, Sendable {
    /// The training part (60,000 samples in Fashion-MNIST).
    case train
    /// The test part (10,000 samples in Fashion-MNIST).
    case test

    /// The file name of the images without an extension.
    public var imagesStem: String {
      switch self {
      case .train: return "train-images-idx3-ubyte"
      case .test: return "t10k-images-idx3-ubyte"
      }
    }

    /// The file name of the labels without an extension.
    public var labelsStem: String {
      switch self {
      case .train: return "train-labels-idx1-ubyte"
      case .test: return "t10k-labels-idx1-ubyte"
      }
    }
  }

  /// The images, `[count, height * width]`, row-major, values in `[0, 1]`.
  public let images: FloatBuffer
  /// The class of each image, each in `0..<classCount`.
  public let labels: [Int32]
  /// The number of samples.
  public let count: Int
  /// The image height in pixels.
  public let height: Int
  /// The image width in pixels.
  public let width: Int
  /// The number of classes; every label is below it.
  public let classCount: Int

  /// The number of pixels of one image, `height * width`.
  public var pixelCount: Int { height * width }

  /// Creates a dataset from images already in memory.
  ///
  /// - Parameters:
  ///   - images: `[labels.count, height * width]`, row-major.
  ///   - labels: One class per image, each in `0..<classCount`.
  public init(images: FloatBuffer, labels: [Int32], height: Int, width: Int, classCount: Int) {
    precondition(height > 0 && width > 0, "image size must be positive, got \(height)x\(width)")
    precondition(
      images.count == labels.count * height * width,
      "images contain \(images.count) floats, expected \(labels.count) x \(height) x \(width)")
    precondition(classCount > 0, "class count must be positive, got \(classCount)")
    if let bad = labels.firstIndex(where: { $0 < 0 || Int($0) >= classCount }) {
      preconditionFailure("label \(labels[bad]) at index \(bad) is outside 0..<\(classCount)")
    }
    self.images = images
    self.labels = labels
    self.count = labels.count
    self.height = height
    self.width = width
    self.classCount = classCount
  }

  /// Returns the first pixel of image `index`; `pixelCount` pixels follow, row-major.
  public func image(_ index: Int) -> UnsafePointer<Float> {
    precondition(index >= 0 && index < count, "image index \(index) outside 0..<\(count)")
    return UnsafePointer(images.baseAddress + index * pixelCount)
  }

  /// Loads one split of an MNIST-format dataset, such as Fashion-MNIST, from IDX files.
  ///
  /// Each file is looked for as `STEM.gz` first and then as the plain `STEM`.
  ///
  /// - Parameters:
  ///   - directory: The folder holding the IDX files.
  ///   - split: Which part to load.
  ///   - limit: When given, keeps only the first `limit` samples (at least 1).
  ///   - classCount: The number of classes; every label must be below it.
  /// - Throws: ``DataError`` when the directory or a file is missing or a file is
  ///   not a valid IDX file. It is also thrown when the images are not 3-d, the
  ///   labels are not 1-d, the counts differ, or a label is out of range (the
  ///   error names its index and value).
  public static func load(
    directory: String, split: Split, limit: Int? = nil, classCount: Int = 10
  ) throws -> Dataset {
    precondition(limit.map { $0 >= 1 } ?? true, "limit must be at least 1, got \(limit ?? 0)")
    precondition(classCount > 0, "class count must be positive, got \(classCount)")
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) else {
      throw DataError.directoryNotFound(path: directory)
    }
    guard isDirectory.boolValue else { throw DataError.notADirectory(path: directory) }

    let imagesPath = try locate(stem: split.imagesStem, in: directory)
    let labelsPath = try locate(stem: split.labelsStem, in: directory)
    let images = try IDX.read(path: imagesPath)
    let labels = try IDX.read(path: labelsPath)

    guard images.dimensions.count == 3, images.dimensions[1] > 0, images.dimensions[2] > 0 else {
      throw DataError.unexpectedShape(
        path: imagesPath, found: images.dimensions, expected: "3 dimensions [count, height, width]")
    }
    guard labels.dimensions.count == 1 else {
      throw DataError.unexpectedShape(
        path: labelsPath, found: labels.dimensions, expected: "1 dimension [count]")
    }
    guard images.dimensions[0] == labels.dimensions[0] else {
      throw DataError.countMismatch(
        imagesPath: imagesPath, imageCount: images.dimensions[0], labelsPath: labelsPath,
        labelCount: labels.dimensions[0])
    }
    if let bad = labels.bytes.firstIndex(where: { Int($0) >= classCount }) {
      throw DataError.labelOutOfRange(
        path: labelsPath, index: bad, value: Int(labels.bytes[bad]), classCount: classCount)
    }

    let height = images.dimensions[1]
    let width = images.dimensions[2]
    let count = min(images.dimensions[0], limit ?? Int.max)
    return Dataset(
      images: floatImages(images.bytes, count: count * height * width),
      labels: labels.bytes[0..<count].map { Int32($0) }, height: height, width: width,
      classCount: classCount)
  }

  /// Returns the path of `STEM.gz` or, failing that, `STEM` in `directory`.
  private static func locate(stem: String, in directory: String) throws -> String {
    let candidates = [stem + ".gz", stem]
    let base = URL(fileURLWithPath: directory, isDirectory: true)
    for name in candidates {
      let path = base.appendingPathComponent(name).path
      if FileManager.default.fileExists(atPath: path) { return path }
    }
    throw DataError.fileNotFound(directory: directory, candidates: candidates)
  }

  /// Converts the first `count` bytes to floats in `[0, 1]`.
  private static func floatImages(_ bytes: [UInt8], count: Int) -> FloatBuffer {
    let buffer = FloatBuffer(count: count)
    bytes.withUnsafeBufferPointer { source in
      for index in 0..<count { buffer.baseAddress[index] = Float(source[index]) / 255 }
    }
    return buffer
  }
}
