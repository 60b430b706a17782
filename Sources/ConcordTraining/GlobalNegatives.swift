import ConcordDistributed
import ConcordModel
import ConcordTensors

/// The source of the negatives of each view in SimCLR's NT-Xent loss.
public enum SimCLRNegatives: String, Sendable, Codable, CaseIterable {
  /// The other views of the rank's own batch: `2n - 2` negatives per view with `n` images per
  /// rank, no communication, and a loss that changes with the rank count.
  case local
  /// The other views of the whole global batch: `2N - 2` negatives per view with `N` images in
  /// all, as in SimCLR's large-batch training, so that the loss and its gradient do not depend
  /// on the rank count. Costs one allgather and one reduce-scatter of the projections per step.
  case global
}

/// The ``ProjectionExchange`` of a training run: an allgather and a reduce-scatter on its
/// communicator.
///
/// The reduce-scatter returns the gradients of the projections to the ranks that own them.
/// An allreduce followed by taking one's own block would do the same, but it sends each rank
/// every block of the sum, about twice the bytes of the reduce-scatter, and adds up `R` times
/// the floats.
///
/// A failed call leaves the output as it was and keeps the error, which the trainer throws
/// with ``throwFailure()`` once the head has run.
final class CommunicatorProjectionExchange: ProjectionExchange {
  let communicator: Communicator
  /// The first failure since the last ``throwFailure()``.
  private var failure: Error?

  init(communicator: Communicator) {
    self.communicator = communicator
  }

  var rank: Int { communicator.rank }
  var size: Int { communicator.size }

  func allgather(_ local: Matrix, into all: Matrix) {
    precondition(
      local.isDense && all.isDense && all.count == size * local.count,
      "allgather of [\(local.rows), \(local.columns)] into [\(all.rows), \(all.columns)]")
    keepingFailure {
      try communicator.allgather(local.base, count: local.count, into: all.base)
    }
  }

  func reduceScatterSum(_ all: Matrix, into local: Matrix) {
    precondition(
      local.isDense && all.isDense && all.count == size * local.count,
      "reduce-scatter of [\(all.rows), \(all.columns)] into [\(local.rows), \(local.columns)]")
    keepingFailure {
      try communicator.reduceScatterSum(all.base, into: local.base, count: local.count)
    }
  }

  /// Runs `collective` unless an earlier one failed, and keeps its error.
  private func keepingFailure(_ collective: () throws -> Void) {
    guard failure == nil else { return }
    do {
      try collective()
    } catch {
      failure = error
    }
  }

  /// Throws the failure of an exchange since the last call, if any, and clears it.
  func throwFailure() throws {
    guard let error = failure else { return }
    failure = nil
    throw error
  }
}
