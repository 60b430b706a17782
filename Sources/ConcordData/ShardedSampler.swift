import ConcordTensors

/// The order in which one rank visits the samples: its slice of each global batch.
///
/// Every epoch visits the samples in one random permutation, drawn from the
/// stream keyed by the seed, the data-order purpose and the epoch. Every rank
/// draws the same permutation, cuts it into global batches of
/// `globalBatchSize` samples, and takes rank `r`'s positions
/// `r * localBatchSize..<(r + 1) * localBatchSize` of each. The
/// `datasetCount % globalBatchSize` samples that do not fill a last global
/// batch are left out of that epoch. Because the order depends only on the
/// seed and the step, a resumed run visits the samples as an uninterrupted one.
public struct ShardedSampler: Sendable {
  /// The positions of one rank's samples in one step.
  public struct Batch: Sendable, Equatable {
    /// The epoch, counted from 0.
    public let epoch: Int
    /// The step within the epoch, in `0..<stepsPerEpoch`.
    public let stepInEpoch: Int
    /// The dataset index of each of this rank's samples, `localBatchSize` of them.
    public let indices: ArraySlice<Int>
    /// The positions of this rank's samples within the global batch.
    public let positionsInGlobalBatch: Range<Int>
  }

  /// The number of samples in the dataset.
  public let datasetCount: Int
  /// The number of samples per step over all ranks.
  public let globalBatchSize: Int
  /// The number of ranks.
  public let worldSize: Int
  /// This rank, in `0..<worldSize`.
  public let rank: Int
  /// The seed of the run, which keys every epoch's permutation.
  public let seed: UInt64
  /// The epoch whose permutation is in `order`, or -1 before the first batch.
  private var cachedEpoch = -1
  /// The permutation of `0..<datasetCount` for `cachedEpoch`.
  private var order: [Int]

  /// The number of samples per step on one rank, `globalBatchSize / worldSize`.
  public var localBatchSize: Int { globalBatchSize / worldSize }
  /// The number of full global batches per epoch; an incomplete last batch is dropped.
  public var stepsPerEpoch: Int { datasetCount / globalBatchSize }
  /// The number of samples left out of each epoch, `datasetCount % globalBatchSize`.
  public var droppedSampleCount: Int { datasetCount % globalBatchSize }

  /// Creates the sampler of `rank` in a world of `worldSize` ranks.
  ///
  /// - Throws: ``DataError/batchSizeNotDivisible(globalBatchSize:worldSize:)`` when
  ///   `globalBatchSize` is not a multiple of `worldSize`, and
  ///   ``DataError/invalidBatchSize(globalBatchSize:datasetCount:)`` when it is not
  ///   in `1...datasetCount`.
  public init(datasetCount: Int, globalBatchSize: Int, worldSize: Int, rank: Int, seed: UInt64)
    throws
  {
    precondition(worldSize > 0, "world size must be positive, got \(worldSize)")
    precondition(rank >= 0 && rank < worldSize, "rank \(rank) outside 0..<\(worldSize)")
    guard globalBatchSize > 0, globalBatchSize <= datasetCount else {
      throw DataError.invalidBatchSize(globalBatchSize: globalBatchSize, datasetCount: datasetCount)
    }
    guard globalBatchSize % worldSize == 0 else {
      throw DataError.batchSizeNotDivisible(globalBatchSize: globalBatchSize, worldSize: worldSize)
    }
    self.datasetCount = datasetCount
    self.globalBatchSize = globalBatchSize
    self.worldSize = worldSize
    self.rank = rank
    self.seed = seed
    order = Array(0..<datasetCount)
  }

  /// Returns this rank's samples for global step `step`, counted from 0 over all epochs.
  ///
  /// The permutation is computed once per epoch and reused by its steps, so
  /// only the first call of an epoch costs `O(datasetCount)`.
  public mutating func batch(step: Int) -> Batch {
    precondition(step >= 0, "step must be non-negative, got \(step)")
    let epoch = step / stepsPerEpoch
    let stepInEpoch = step % stepsPerEpoch
    if epoch != cachedEpoch { shuffle(forEpoch: epoch) }
    let start = stepInEpoch * globalBatchSize + rank * localBatchSize
    let positions = (rank * localBatchSize)..<((rank + 1) * localBatchSize)
    return Batch(
      epoch: epoch, stepInEpoch: stepInEpoch, indices: order[start..<(start + localBatchSize)],
      positionsInGlobalBatch: positions)
  }

  /// Fills `order` with the permutation of `epoch`, reusing its storage.
  private mutating func shuffle(forEpoch epoch: Int) {
    var stream = RandomStream(seed: seed, purpose: .dataOrder, counters: UInt64(epoch))
    // Starting from the identity makes this equal to `stream.permutation(datasetCount)`.
    for index in order.indices { order[index] = index }
    stream.shuffle(&order)
    cachedEpoch = epoch
  }
}
