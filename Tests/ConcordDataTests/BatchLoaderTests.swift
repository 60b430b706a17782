import ConcordTensors
import Testing

@testable import ConcordData

/// Returns a dataset of `count` random 6x5 images with labels `index % 10`.
private func randomDataset(count: Int) -> Dataset {
  var stream = RandomStream(seed: 31, purpose: .test)
  let images = FloatBuffer((0..<(count * 30)).map { _ in stream.uniform() })
  return Dataset(
    images: images, labels: (0..<count).map { Int32($0 % 10) }, height: 6, width: 5,
    classCount: 10)
}

/// Returns the bit patterns of the rows of `matrix`.
private func bits(_ matrix: Matrix) -> [UInt32] {
  matrix.array.map(\.bitPattern)
}

@Test func loaderOutputsHaveBatchShapes() throws {
  let dataset = randomDataset(count: 20)
  let sampler = try ShardedSampler(
    datasetCount: 20, globalBatchSize: 8, worldSize: 2, rank: 1, seed: 4)
  let loader = BatchLoader(dataset: dataset, sampler: sampler, seed: 4)
  for matrix in [loader.view1, loader.view2] {
    #expect(matrix.rows == 4)
    #expect(matrix.columns == 30)
  }
  #expect(loader.labels.count == 4)
  for matrix in [loader.augmentationLabels1, loader.augmentationLabels2] {
    #expect(matrix.rows == 4)
    #expect(matrix.columns == 6)
  }

  let batch = loader.load(step: 1)
  #expect(batch.positionsInGlobalBatch == 4..<8)
  #expect(loader.labels == batch.indices.map { dataset.labels[$0] })
  #expect(loader.augmentationLabels1.array.allSatisfy { $0 == 0 || $0 == 1 })
  #expect(loader.view1.array.allSatisfy { $0 >= 0 && $0 <= 1 })
  #expect(bits(loader.view1) != bits(loader.view2))
}

@Test func loaderViewsFollowStreamKey() throws {
  let dataset = randomDataset(count: 12)
  let sampler = try ShardedSampler(
    datasetCount: 12, globalBatchSize: 4, worldSize: 2, rank: 1, seed: 6)
  let loader = BatchLoader(dataset: dataset, sampler: sampler, seed: 6)
  let batch = loader.load(step: 2)

  // Row 1 of rank 1 is position 3 of the global batch; its second view uses counter 1.
  let augmenter = Augmenter(height: 6, width: 5)
  var stream = RandomStream(seed: 6, purpose: .augmentation, counters: 2, 3, 1)
  var view = [Float](repeating: 0, count: 30)
  var labels = [Float](repeating: 0, count: 6)
  augmenter.augment(
    dataset.image(batch.indices[batch.indices.startIndex + 1]), into: &view, labels: &labels,
    stream: &stream)
  #expect(Array(loader.view2.row(1)).map(\.bitPattern) == view.map(\.bitPattern))
  #expect(Array(loader.augmentationLabels2.row(1)) == labels)
}

@Test func loaderWorldTwoMatchesWorldOne() throws {
  let dataset = randomDataset(count: 45)
  let seed: UInt64 = 12
  let single = BatchLoader(
    dataset: dataset,
    sampler: try ShardedSampler(
      datasetCount: 45, globalBatchSize: 8, worldSize: 1, rank: 0, seed: seed), seed: seed)
  let ranks = try (0..<2).map { rank in
    BatchLoader(
      dataset: dataset,
      sampler: try ShardedSampler(
        datasetCount: 45, globalBatchSize: 8, worldSize: 2, rank: rank, seed: seed), seed: seed)
  }
  // 5 steps per epoch: steps 4 to 6 cross the first epoch boundary.
  for step in [0, 1, 4, 5, 6] {
    single.load(step: step)
    for loader in ranks { loader.load(step: step) }
    #expect(bits(ranks[0].view1) + bits(ranks[1].view1) == bits(single.view1), "step \(step)")
    #expect(bits(ranks[0].view2) + bits(ranks[1].view2) == bits(single.view2), "step \(step)")
    #expect(ranks[0].labels + ranks[1].labels == single.labels, "step \(step)")
    #expect(
      ranks[0].augmentationLabels1.array + ranks[1].augmentationLabels1.array
        == single.augmentationLabels1.array, "step \(step)")
    #expect(
      ranks[0].augmentationLabels2.array + ranks[1].augmentationLabels2.array
        == single.augmentationLabels2.array, "step \(step)")
  }
}

@Test func loaderResumeRecreatesStep() throws {
  let dataset = randomDataset(count: 30)
  let makeLoader = {
    BatchLoader(
      dataset: dataset,
      sampler: try ShardedSampler(
        datasetCount: 30, globalBatchSize: 6, worldSize: 1, rank: 0, seed: 3), seed: 3)
  }
  let uninterrupted = try makeLoader()
  for step in 0...7 { uninterrupted.load(step: step) }
  let resumed = try makeLoader()
  resumed.load(step: 7)
  #expect(bits(resumed.view1) == bits(uninterrupted.view1))
  #expect(bits(resumed.view2) == bits(uninterrupted.view2))
  #expect(resumed.labels == uninterrupted.labels)
}
