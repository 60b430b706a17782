/// Sums batch-normalisation statistics over every process that computes a share of the batch.
///
/// Batch normalisation in a data-parallel run takes its mean and variance over the global
/// batch, as PyTorch's `SyncBatchNorm` does, so that the network computes the same function
/// of the global batch whatever the number of ranks. The model requests those sums through
/// this protocol and so never sees the communication library.
///
/// Every process calls ``sum(_:count:)`` at the same points of a step, in the same order and
/// with the same `count`, as collectives require.
public protocol BatchStatisticsReducer: AnyObject {
  /// Replaces `values[0..<count]` with their element-wise sum over all processes.
  func sum(_ values: UnsafeMutablePointer<Double>, count: Int)
}

/// The statistics reducer of a run in one process: the local sums are already global.
public final class SingleProcessStatisticsReducer: BatchStatisticsReducer {
  /// Creates the reducer.
  public init() {}

  /// Leaves `values` as they are.
  public func sum(_ values: UnsafeMutablePointer<Double>, count: Int) {}
}
