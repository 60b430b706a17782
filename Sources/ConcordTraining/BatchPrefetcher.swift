import ConcordData
import ConcordModel
import ConcordTensors
import Foundation

/// One step's inputs as the model reads them: both views stacked, labels repeated, and
/// optionally the clean images after them.
final class BatchSlot: @unchecked Sendable {
  let loader: BatchLoader
  /// The rows that the model reads, `pixels` values each.
  ///
  /// Rows `0..<b` are the first views and `b..<2b` the second views. With clean rows, rows
  /// `2b..<3b` are the images as the dataset stores them, or their light views. With
  /// invariant kinds, `b` more rows at the end are the invariance twins of the first views.
  let input: Matrix
  /// The class label of each row, one per row of ``input``.
  let labels: UnsafeMutablePointer<Int32>
  /// The augmentation labels of each view, `[2b, sensitiveKinds.count]`.
  let augmentationLabels: Matrix
  /// The kinds of the columns of ``augmentationLabels``: the augpred task's kinds.
  let sensitiveKinds: [AugmentationKind]
  /// Whether the slot contains the clean images, or their light views, after the views.
  let hasCleanRows: Bool
  /// Whether the slot contains the invariance twins of the first views as its last rows.
  let hasInvariantRows: Bool
  /// The step whose inputs the slot holds, or -1.
  var step = -1

  init(
    dataset: Dataset, sampler: ShardedSampler, seed: UInt64, hasCleanRows: Bool,
    sensitiveKinds: [AugmentationKind], invariantKinds: [AugmentationKind] = [],
    lightKinds: [AugmentationKind] = []
  ) {
    loader = BatchLoader(
      dataset: dataset, sampler: sampler, seed: seed, invariantKinds: invariantKinds,
      lightKinds: lightKinds)
    self.hasCleanRows = hasCleanRows
    hasInvariantRows = !invariantKinds.isEmpty
    let b = sampler.localBatchSize
    let rows = (2 + (hasCleanRows ? 1 : 0) + (hasInvariantRows ? 1 : 0)) * b
    input = Matrix(rows: rows, columns: dataset.pixelCount)
    labels = .allocate(capacity: rows)
    augmentationLabels = Matrix(rows: 2 * b, columns: sensitiveKinds.count)
    self.sensitiveKinds = sensitiveKinds
  }

  deinit {
    labels.deallocate()
  }

  /// Loads and augments the local batch of `step`.
  func fill(step: Int) {
    let b = loader.localBatchSize
    let loaded = loader.load(step: step)
    input.rows(0..<b).copy(from: loader.view1)
    input.rows(b..<(2 * b)).copy(from: loader.view2)
    copySensitiveLabels(from: loader.augmentationLabels1, to: 0)
    copySensitiveLabels(from: loader.augmentationLabels2, to: b)
    for i in 0..<b {
      labels[i] = loader.labels[i]
      labels[b + i] = loader.labels[i]
    }
    if hasCleanRows && !loader.lightKinds.isEmpty {
      input.rows((2 * b)..<(3 * b)).copy(from: loader.lightView)
      for i in 0..<b { labels[2 * b + i] = loader.labels[i] }
    } else if hasCleanRows {
      let dataset = loader.dataset
      for (row, index) in loaded.indices.enumerated() {
        input.row(2 * b + row).baseAddress!.update(
          from: dataset.image(index), count: dataset.pixelCount)
        labels[2 * b + row] = loader.labels[row]
      }
    }
    if hasInvariantRows {
      let start = input.rows - b
      input.rows(start..<input.rows).copy(from: loader.invariantView1)
      for i in 0..<b { labels[start + i] = loader.labels[i] }
    }
    self.step = step
  }

  /// Copies the columns of the sensitive kinds of `labels`, `[b, AugmentationKind.allCases.count]`,
  /// into rows `firstRow..<firstRow + b` of ``augmentationLabels``.
  private func copySensitiveLabels(from labels: Matrix, to firstRow: Int) {
    if sensitiveKinds == AugmentationKind.allCases {
      augmentationLabels.rows(firstRow..<(firstRow + labels.rows)).copy(from: labels)
      return
    }
    for row in 0..<labels.rows {
      for (column, kind) in sensitiveKinds.enumerated() {
        augmentationLabels[firstRow + row, column] = labels[row, kind.labelIndex]
      }
    }
  }

  var batch: TaskBatch {
    TaskBatch(
      input: input, labels: labels, augmentationLabels: augmentationLabels,
      pairCount: loader.localBatchSize, cleanRowCount: hasCleanRows ? loader.localBatchSize : 0,
      invariantRowCount: hasInvariantRows ? loader.localBatchSize : 0)
  }
}

/// Prepares the next step's batch on a background thread while the current step computes.
///
/// Augmenting a batch is a few milliseconds of scalar work per step. When the rank has a
/// core that its BLAS threads leave free, a second thread hides that work. Without a spare
/// core the two threads would only take turns, so the batch is then prepared in line. The
/// views do not depend on which thread made them: every sample's augmentation draws from a
/// stream keyed by the step and the sample's place in the global batch.
final class BatchPrefetcher {
  /// The state that the worker thread shares with the caller.
  ///
  /// The thread keeps it alive, so that it can still read the stop flag after the prefetcher is
  /// gone.
  private final class Shared: @unchecked Sendable {
    let slots: [BatchSlot]
    let request = DispatchSemaphore(value: 0)
    let done = DispatchSemaphore(value: 0)
    var pendingStep = -1
    var pendingSlot = 0
    var isStopping = false

    init(slots: [BatchSlot]) {
      self.slots = slots
    }

    func work() {
      while true {
        request.wait()
        if isStopping { return }
        slots[pendingSlot].fill(step: pendingStep)
        done.signal()
      }
    }
  }

  private let shared: Shared
  private let isBackground: Bool
  private var isPending = false

  /// Creates the prefetcher; with `inBackground` false, batches are prepared in line.
  ///
  /// - Parameters:
  ///   - hasCleanRows: whether each batch contains the clean images after the views.
  ///   - sensitiveKinds: the kinds whose labels the batches carry, in the order of application.
  ///   - invariantKinds: the kinds that the invariance twins leave out; empty for no twins.
  ///   - lightKinds: the kinds that the rows after the views may apply, in place of the clean
  ///     images; empty for clean images.
  init(
    dataset: Dataset, sampler: ShardedSampler, seed: UInt64, inBackground: Bool,
    hasCleanRows: Bool = false, sensitiveKinds: [AugmentationKind] = AugmentationKind.allCases,
    invariantKinds: [AugmentationKind] = [], lightKinds: [AugmentationKind] = []
  ) {
    isBackground = inBackground
    shared = Shared(
      slots: (0..<(inBackground ? 2 : 1)).map { _ in
        BatchSlot(
          dataset: dataset, sampler: sampler, seed: seed, hasCleanRows: hasCleanRows,
          sensitiveKinds: sensitiveKinds, invariantKinds: invariantKinds, lightKinds: lightKinds)
      })
    if inBackground {
      let shared = shared
      let thread = Thread { shared.work() }
      thread.name = "concord-prefetch"
      thread.start()
    }
  }

  deinit {
    if isPending { shared.done.wait() }
    shared.isStopping = true
    if isBackground { shared.request.signal() }
  }

  /// Returns the batch of `step`, and starts preparing `next` (when not nil) in the background.
  func batch(step: Int, next: Int?) -> BatchSlot {
    if isPending {
      shared.done.wait()
      isPending = false
    }
    let slot: BatchSlot
    if let ready = shared.slots.first(where: { $0.step == step }) {
      slot = ready
    } else {
      slot = shared.slots[0]
      slot.fill(step: step)
    }
    if isBackground, let next {
      shared.pendingSlot = shared.slots.firstIndex { $0 !== slot }!
      shared.pendingStep = next
      isPending = true
      shared.request.signal()
    }
    return slot
  }
}
