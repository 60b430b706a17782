import ConcordTensors

/// Moves SimCLR projections between the data-parallel ranks, so that NT-Xent can contrast
/// each view with the views of the whole global batch, as SimCLR's large-batch training does.
///
/// The model module makes no MPI call, so the training module implements this protocol over
/// its communicator. Every rank calls each method at the same point of the step with matrices of
/// the same shape, as collectives require.
///
/// The methods do not throw, because a task head's loss does not: an implementation that
/// fails keeps the failure for its owner to report after the head has run, and the head's
/// outputs of that step are then meaningless.
public protocol ProjectionExchange: AnyObject {
  /// The index of this rank, in `0..<size`.
  var rank: Int { get }
  /// The number of ranks.
  var size: Int { get }

  /// Writes every rank's `local` rows into `all`, rank r's at rows
  /// `r * local.rows ..< (r + 1) * local.rows`.
  ///
  /// - Parameters:
  ///   - local: `[m, d]`, dense.
  ///   - all: `[size * m, d]`, dense, overwritten.
  func allgather(_ local: Matrix, into all: Matrix)

  /// Sums `all` over the ranks and writes this rank's block of rows of the sum,
  /// `rank * local.rows ..< (rank + 1) * local.rows`, into `local`.
  ///
  /// - Parameters:
  ///   - all: `[size * m, d]`, dense.
  ///   - local: `[m, d]`, dense, overwritten.
  func reduceScatterSum(_ all: Matrix, into local: Matrix)
}

/// NT-Xent over the global batch: the work space of one rank and the exchange that joins it
/// to the others.
///
/// A step gathers every rank's projections (``ProjectionExchange/allgather(_:into:)``). It
/// computes the loss of this rank's anchors against all of them, and the loss's gradient with
/// respect to all of them. Then each rank receives the sum over the ranks of the gradients of
/// its own projections (``ProjectionExchange/reduceScatterSum(_:into:)``).
///
/// With `R` ranks, the loss is the mean over this rank's anchors, and the gradient is `R` times
/// the global loss's gradient. The step's allreduce, a mean over the ranks, then yields the
/// NT-Xent loss of the `2N` views of the global batch and its gradient, whatever `R` is.
final class GlobalNTXent {
  let exchange: ProjectionExchange
  let loss: NTXentLoss
  /// Every rank's projections, `[R * 2n, d]`.
  let candidates: Matrix
  /// The gradient with respect to ``candidates``, `[R * 2n, d]`.
  let candidateGradient: Matrix

  /// Allocates the work space for `rows` views per rank, projected to `dimension` features.
  init(exchange: ProjectionExchange, rows: Int, dimension: Int) {
    self.exchange = exchange
    let all = exchange.size * rows
    loss = NTXentLoss(anchorRows: rows, candidateRows: all, dimension: dimension)
    candidates = Matrix(rows: all, columns: dimension)
    candidateGradient = Matrix(rows: all, columns: dimension)
  }

  /// Computes this rank's share of the global NT-Xent loss and the gradient with respect to
  /// its projections `z`, `[2n, d]`, into `gradient`.
  func callAsFunction(projections z: Matrix, temperature: Float, gradient: Matrix) -> Float {
    let rows = loss.rows
    precondition(
      z.rows == rows && gradient.rows == rows,
      "NT-Xent over the global batch for \(rows) views per rank called with \(z.rows)")
    exchange.allgather(z, into: candidates)
    let first = exchange.rank * rows
    let value = loss(
      candidates: candidates, anchors: first..<(first + rows), temperature: temperature,
      gradient: candidateGradient)
    exchange.reduceScatterSum(candidateGradient, into: gradient)
    return value
  }
}

extension SimCLRHead {
  /// Makes the NT-Xent loss contrast each view with the views of every rank's batch, through
  /// `exchange`, instead of only those of the local batch.
  ///
  /// Allocates the work space for the global batch once; the steps that follow allocate
  /// nothing. Every rank must call it, and then every rank's head takes part in each step's
  /// exchanges.
  public func useGlobalNegatives(_ exchange: ProjectionExchange) {
    globalLoss = GlobalNTXent(
      exchange: exchange, rows: loss.rows, dimension: projector.outputSize)
  }

  /// Whether the loss takes its negatives from every rank's batch.
  public var usesGlobalNegatives: Bool { globalLoss != nil }
}
