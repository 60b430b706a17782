import ConcordTensors

/// Assembles one rank's batch of two augmented views per sample into preallocated matrices.
///
/// Each view of a sample is augmented with the stream keyed by the seed, the
/// augmentation purpose, the step, the sample's position in the global batch
/// and the view (0 or 1). The views therefore depend neither on the number of
/// ranks nor on which rank loads the sample, and a run resumed at a step
/// recreates them exactly. Row `i` of every output belongs to the sample at
/// position `sampler.localBatchSize * rank + i` of the global batch.
public final class BatchLoader {
  /// The samples.
  public let dataset: Dataset
  /// The seed of the run, which keys every augmentation stream.
  public let seed: UInt64
  /// The first augmented view of each sample, `[localBatchSize, height * width]`.
  public let view1: Matrix
  /// The second augmented view of each sample, `[localBatchSize, height * width]`.
  public let view2: Matrix
  /// The class of each sample, `[localBatchSize]`.
  public private(set) var labels: [Int32]
  /// The augmentation-prediction labels of `view1`, `[localBatchSize, kinds]`, where `kinds`
  /// is `AugmentationKind.allCases.count`.
  public let augmentationLabels1: Matrix
  /// The augmentation-prediction labels of `view2`, `[localBatchSize, kinds]`, where `kinds`
  /// is `AugmentationKind.allCases.count`.
  public let augmentationLabels2: Matrix
  /// The kinds that the invariance twins leave out; empty means no twins.
  public let invariantKinds: [AugmentationKind]
  /// The invariance twin of each first view: `view1` with ``invariantKinds`` left out and every
  /// other draw shared, `[localBatchSize, height * width]`; empty without invariant kinds.
  public let invariantView1: Matrix
  /// The kinds that ``lightView`` may apply, or empty for no light views.
  public let lightKinds: [AugmentationKind]
  /// A third view of each sample that applies only ``lightKinds``, from its own draw.
  ///
  /// It is `[localBatchSize, height * width]`, and has no rows without light kinds.
  public let lightView: Matrix
  /// The sampler that picks this rank's samples.
  public private(set) var sampler: ShardedSampler
  private let augmenter: Augmenter
  /// The counters of the augmentation stream: step, position in the global batch, view (0 and
  /// 1 for the views, 2 for the light view).
  ///
  /// Reusing one array keeps ``load(step:)`` free of allocations, which the
  /// variadic `RandomStream` initialiser would make for every view.
  private var streamCounters: [UInt64] = [0, 0, 0]

  /// The number of samples per step on this rank.
  public var localBatchSize: Int { sampler.localBatchSize }

  /// Creates a loader for `dataset` with outputs sized for one local batch.
  ///
  /// - Parameters:
  ///   - dataset: The samples; its count must equal `sampler.datasetCount`.
  ///   - sampler: This rank's sampler.
  ///   - seed: The run's seed, keying the augmentation streams.
  ///   - invariantKinds: The kinds that ``invariantView1`` leaves out; empty for no twins.
  ///   - lightKinds: The kinds that ``lightView`` may apply, or empty for no light views.
  public init(
    dataset: Dataset, sampler: ShardedSampler, seed: UInt64,
    invariantKinds: [AugmentationKind] = [], lightKinds: [AugmentationKind] = []
  ) {
    precondition(
      dataset.count == sampler.datasetCount,
      "dataset contains \(dataset.count) samples but the sampler expects \(sampler.datasetCount)")
    self.dataset = dataset
    self.sampler = sampler
    self.seed = seed
    let rows = sampler.localBatchSize
    let kindCount = AugmentationKind.allCases.count
    view1 = Matrix(rows: rows, columns: dataset.pixelCount)
    view2 = Matrix(rows: rows, columns: dataset.pixelCount)
    labels = [Int32](repeating: 0, count: rows)
    augmentationLabels1 = Matrix(rows: rows, columns: kindCount)
    augmentationLabels2 = Matrix(rows: rows, columns: kindCount)
    self.invariantKinds = invariantKinds
    invariantView1 = Matrix(rows: invariantKinds.isEmpty ? 0 : rows, columns: dataset.pixelCount)
    self.lightKinds = lightKinds
    lightView = Matrix(rows: lightKinds.isEmpty ? 0 : rows, columns: dataset.pixelCount)
    augmenter = Augmenter(height: dataset.height, width: dataset.width)
  }

  /// Fills the views and labels with this rank's samples for global step `step`.
  ///
  /// - Returns: The epoch, the step within it and the samples loaded.
  @discardableResult
  public func load(step: Int) -> ShardedSampler.Batch {
    let batch = sampler.batch(step: step)
    for (row, index) in batch.indices.enumerated() {
      let position = UInt64(batch.positionsInGlobalBatch.lowerBound + row)
      let image = dataset.image(index)
      labels[row] = dataset.labels[index]

      streamCounters[0] = UInt64(step)
      streamCounters[1] = position
      streamCounters[2] = 0
      var stream1 = RandomStream(seed: seed, purpose: .augmentation, counterList: streamCounters)
      if invariantKinds.isEmpty {
        augmenter.augment(
          image, into: view1.row(row).baseAddress!,
          labels: augmentationLabels1.row(row).baseAddress!, stream: &stream1)
      } else {
        augmenter.augment(
          image, into: view1.row(row).baseAddress!, twin: invariantView1.row(row).baseAddress!,
          omitting: invariantKinds, labels: augmentationLabels1.row(row).baseAddress!,
          stream: &stream1)
      }

      streamCounters[2] = 1
      var stream2 = RandomStream(seed: seed, purpose: .augmentation, counterList: streamCounters)
      augmenter.augment(
        image, into: view2.row(row).baseAddress!,
        labels: augmentationLabels2.row(row).baseAddress!, stream: &stream2)

      guard !lightKinds.isEmpty else { continue }
      streamCounters[2] = 2
      var lightStream = RandomStream(
        seed: seed, purpose: .augmentation, counterList: streamCounters)
      augmenter.augment(
        image, into: lightView.row(row).baseAddress!, keeping: lightKinds, stream: &lightStream)
    }
    return batch
  }
}
