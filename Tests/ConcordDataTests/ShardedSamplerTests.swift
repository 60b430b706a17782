import ConcordTensors
import Testing

@testable import ConcordData

/// Returns the error that `ShardedSampler.init` throws, or nil when it succeeds.
private func samplerError(datasetCount: Int, globalBatchSize: Int, worldSize: Int) -> DataError? {
  do {
    _ = try ShardedSampler(
      datasetCount: datasetCount, globalBatchSize: globalBatchSize, worldSize: worldSize,
      rank: 0, seed: 1)
    return nil
  } catch {
    return error as? DataError
  }
}

@Test func samplerRejectsIndivisibleBatch() throws {
  let error = try #require(samplerError(datasetCount: 100, globalBatchSize: 10, worldSize: 3))
  #expect(error == .batchSizeNotDivisible(globalBatchSize: 10, worldSize: 3))
  #expect(error.description.contains("10"))
  #expect(error.description.contains("world size 3"))
}

@Test func samplerRejectsBatchLargerThanDataset() throws {
  let error = try #require(samplerError(datasetCount: 100, globalBatchSize: 128, worldSize: 2))
  #expect(error == .invalidBatchSize(globalBatchSize: 128, datasetCount: 100))
  #expect(error.description.contains("128"))
  #expect(error.description.contains("100 samples"))
  #expect(samplerError(datasetCount: 100, globalBatchSize: 0, worldSize: 1) != nil)
}

@Test func samplerEpochCoversEachSampleOnce() throws {
  // 105 samples in global batches of 20 over 4 ranks: 5 steps, 5 samples dropped.
  let worldSize = 4
  var samplers = try (0..<worldSize).map {
    try ShardedSampler(
      datasetCount: 105, globalBatchSize: 20, worldSize: worldSize, rank: $0, seed: 8)
  }
  #expect(samplers[0].stepsPerEpoch == 5)
  #expect(samplers[0].localBatchSize == 5)
  #expect(samplers[0].droppedSampleCount == 5)
  for epoch in 0..<2 {
    var seen = [Int]()
    for stepInEpoch in 0..<5 {
      for rank in 0..<worldSize {
        let batch = samplers[rank].batch(step: epoch * 5 + stepInEpoch)
        #expect(batch.epoch == epoch)
        #expect(batch.stepInEpoch == stepInEpoch)
        #expect(batch.indices.count == 5)
        #expect(batch.positionsInGlobalBatch == (rank * 5)..<(rank * 5 + 5))
        seen += batch.indices
      }
    }
    #expect(seen.count == 100)
    #expect(Set(seen).count == 100)
    #expect(seen.allSatisfy { (0..<105).contains($0) })
  }
}

@Test func samplerMatchesEpochPermutation() throws {
  // Every rank reads its slice of the same permutation keyed by (seed, epoch).
  for rank in 0..<2 {
    var sampler = try ShardedSampler(
      datasetCount: 50, globalBatchSize: 10, worldSize: 2, rank: rank, seed: 17)
    for epoch in 0..<3 {
      var stream = RandomStream(seed: 17, purpose: .dataOrder, counters: UInt64(epoch))
      let permutation = stream.permutation(50)
      for stepInEpoch in 0..<5 {
        let batch = sampler.batch(step: epoch * 5 + stepInEpoch)
        let start = stepInEpoch * 10 + rank * 5
        #expect(Array(batch.indices) == Array(permutation[start..<(start + 5)]))
      }
    }
  }
}

@Test func samplerEpochsDiffer() throws {
  var sampler = try ShardedSampler(
    datasetCount: 64, globalBatchSize: 64, worldSize: 1, rank: 0, seed: 2)
  let first = Array(sampler.batch(step: 0).indices)
  let second = Array(sampler.batch(step: 1).indices)
  let again = Array(sampler.batch(step: 0).indices)
  #expect(first != second)
  #expect(first == again)
}

@Test func samplerRanksUnionEqualsSingleRank() throws {
  var single = try ShardedSampler(
    datasetCount: 90, globalBatchSize: 16, worldSize: 1, rank: 0, seed: 5)
  var rank0 = try ShardedSampler(
    datasetCount: 90, globalBatchSize: 16, worldSize: 2, rank: 0, seed: 5)
  var rank1 = try ShardedSampler(
    datasetCount: 90, globalBatchSize: 16, worldSize: 2, rank: 1, seed: 5)
  // 5 steps per epoch, so these steps cross into the second and third epochs.
  for step in [0, 3, 4, 5, 9, 12] {
    let whole = Array(single.batch(step: step).indices)
    let halves = Array(rank0.batch(step: step).indices) + Array(rank1.batch(step: step).indices)
    #expect(halves == whole, "step \(step)")
  }
}
