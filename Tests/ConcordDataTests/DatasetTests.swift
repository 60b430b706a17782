import Foundation
import Testing

@testable import ConcordData

private let trainStems = (
  images: Dataset.Split.train.imagesStem, labels: Dataset.Split.train.labelsStem
)

/// Returns the error that `Dataset.load` throws, or nil when it succeeds.
private func loadError(_ directory: String, classCount: Int = 10) -> DataError? {
  do {
    _ = try Dataset.load(directory: directory, split: .train, classCount: classCount)
    return nil
  } catch {
    return error as? DataError
  }
}

@Test func datasetLoadsGzipFiles() throws {
  let directory = try TemporaryDirectory()
  let images = (0..<(4 * 2 * 3)).map { UInt8($0 * 10) }
  try writeSplit(
    stems: trainStems, in: directory, images: images, imageDimensions: [4, 2, 3],
    labels: [3, 0, 9, 1])
  let dataset = try Dataset.load(directory: directory.path, split: .train)
  #expect(dataset.count == 4)
  #expect(dataset.height == 2)
  #expect(dataset.width == 3)
  #expect(dataset.classCount == 10)
  #expect(dataset.labels == [3, 0, 9, 1])
  #expect(dataset.images.array == images.map { Float($0) / 255 })
}

@Test func datasetLoadsPlainFilesAndLimit() throws {
  let directory = try TemporaryDirectory()
  let stems = (
    images: Dataset.Split.test.imagesStem, labels: Dataset.Split.test.labelsStem
  )
  try writePlain(
    idxBytes(dimensions: [3, 1, 2], payload: [0, 255, 51, 102, 7, 8]),
    to: directory.file(stems.images))
  try writePlain(idxBytes(dimensions: [3], payload: [2, 1, 0]), to: directory.file(stems.labels))
  let dataset = try Dataset.load(directory: directory.path, split: .test, limit: 2, classCount: 3)
  #expect(dataset.count == 2)
  #expect(dataset.classCount == 3)
  #expect(dataset.labels == [2, 1])
  #expect(dataset.images.array == [0, 1, 0.2, 0.4])
}

@Test func datasetCountMismatchRejected() throws {
  let directory = try TemporaryDirectory()
  try writeSplit(
    stems: trainStems, in: directory, images: Array(repeating: 0, count: 3 * 4),
    imageDimensions: [3, 2, 2], labels: [1, 2])
  let error = try #require(loadError(directory.path))
  #expect(error.caseName == "countMismatch")
  #expect(error.description.contains(directory.file(trainStems.images + ".gz")))
  #expect(error.description.contains(directory.file(trainStems.labels + ".gz")))
  #expect(error.description.contains("3 images"))
  #expect(error.description.contains("2 labels"))
}

@Test func datasetLabelOutOfRangeRejected() throws {
  let directory = try TemporaryDirectory()
  try writeSplit(
    stems: trainStems, in: directory, images: Array(repeating: 0, count: 3 * 4),
    imageDimensions: [3, 2, 2], labels: [1, 12, 2])
  let error = try #require(loadError(directory.path))
  let labelsPath = directory.file(trainStems.labels + ".gz")
  #expect(error == .labelOutOfRange(path: labelsPath, index: 1, value: 12, classCount: 10))
  #expect(error.description.contains(labelsPath))
  #expect(error.description.contains("index 1"))
}

@Test func datasetImagesMustBeThreeDimensional() throws {
  let directory = try TemporaryDirectory()
  try writeSplit(
    stems: trainStems, in: directory, images: Array(repeating: 0, count: 8),
    imageDimensions: [2, 4], labels: [1, 2])
  let error = try #require(loadError(directory.path))
  #expect(error.caseName == "unexpectedShape")
  #expect(error.description.contains(directory.file(trainStems.images + ".gz")))
}

@Test func datasetLabelsMustBeOneDimensional() throws {
  let directory = try TemporaryDirectory()
  try writeGzip(
    idxBytes(dimensions: [2, 1, 1], payload: [0, 0]),
    to: directory.file(trainStems.images + ".gz"))
  try writeGzip(
    idxBytes(dimensions: [2, 1], payload: [0, 0]),
    to: directory.file(trainStems.labels + ".gz"))
  let error = try #require(loadError(directory.path))
  #expect(error.caseName == "unexpectedShape")
  #expect(error.description.contains(directory.file(trainStems.labels + ".gz")))
}

@Test func datasetMissingDirectoryRejected() throws {
  let directory = try TemporaryDirectory()
  let missing = directory.file("no-such-folder")
  let error = try #require(loadError(missing))
  #expect(error == .directoryNotFound(path: missing))
  #expect(error.description.contains(missing))
}

@Test func datasetMissingFileRejected() throws {
  let directory = try TemporaryDirectory()
  try writeGzip(
    idxBytes(dimensions: [1, 1, 1], payload: [0]), to: directory.file(trainStems.images + ".gz"))
  let error = try #require(loadError(directory.path))
  let candidates = [trainStems.labels + ".gz", trainStems.labels]
  #expect(error == .fileNotFound(directory: directory.path, candidates: candidates))
  #expect(error.description.contains(directory.path))
  #expect(error.description.contains(candidates.joined(separator: " or ")))
}

private let fashionMNISTDirectory = "/usr/share/datasets/fashion-mnist"

@Test(
  .enabled(
    if: FileManager.default.fileExists(atPath: fashionMNISTDirectory),
    "Fashion-MNIST is not installed at /usr/share/datasets/fashion-mnist"))
func fashionMNISTLoads() throws {
  for (split, expectedCount) in [(Dataset.Split.train, 60_000), (.test, 10_000)] {
    let dataset = try Dataset.load(directory: fashionMNISTDirectory, split: split)
    #expect(dataset.count == expectedCount)
    #expect(dataset.height == 28)
    #expect(dataset.width == 28)
    #expect(dataset.labels.allSatisfy { $0 >= 0 && $0 < 10 })
    #expect(Set(dataset.labels).count == 10)
    #expect(dataset.images.count == expectedCount * 28 * 28)
  }
}
