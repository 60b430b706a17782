/// A rule that turns per-task gradients into one update direction on the shared parameters.
///
/// A balancer works in the space of tasks. It reads the `[T, T]` Gram matrix of the reduced
/// per-task gradients `g_t` (plus losses and norms for GradNorm) and returns coefficients `c_t`.
/// The caller forms the direction `sum_t c_t * g_t`, so the balancer never touches the large
/// gradient vectors. Balancing runs after the allreduce, on every rank, as a pure function of
/// the reduced values and the state below, so every rank keeps identical task weights.
///
/// The state that a checkpoint must save and restore is ``taskWeights`` and ``initialLosses``.
public protocol GradientBalancer: Sendable {
  /// The method this balancer implements.
  var kind: BalancerKind { get }

  /// The number of tasks `T`.
  var taskCount: Int { get }

  /// The task weights `w_t` the next call of ``balance(_:into:)`` uses, `T` positive values.
  ///
  /// They start at 1. Balancers that do not learn weights keep them at 1 and reject any other
  /// value in the setter.
  var taskWeights: [Double] { get set }

  /// The initial losses `L_t(0)`, `T` values, or `nil` before the first call.
  ///
  /// The first call of ``balance(_:into:)`` with a full set of losses stores them, unless they
  /// were set before, as when a run resumes from a checkpoint. Later calls keep them.
  var initialLosses: [Double]? { get set }

  /// Computes this step's coefficients and updates the balancer's state.
  ///
  /// Writes into the arrays of `result` and allocates nothing when `result` was made for
  /// ``taskCount`` tasks (see ``BalancingResult/init(taskCount:)``).
  ///
  /// - Parameters:
  ///   - input: This step's Gram matrix, norms, losses and task order, for ``taskCount`` tasks.
  ///   - result: Receives the coefficients, the weights before and after this step and the
  ///     diagnostics.
  mutating func balance(_ input: BalancingInput, into result: inout BalancingResult)
}

extension GradientBalancer {
  /// Computes this step's coefficients and updates the balancer's state, returning a new result.
  ///
  /// Allocates the result; the training step should reuse one with ``balance(_:into:)``.
  ///
  /// - Parameter input: This step's Gram matrix, norms, losses and task order.
  /// - Returns: The coefficients, the weights before and after this step and the diagnostics.
  public mutating func balance(_ input: BalancingInput) -> BalancingResult {
    var result = BalancingResult(taskCount: input.taskCount)
    balance(input, into: &result)
    return result
  }
}

/// Checks that `input` describes `taskCount` tasks.
func checkTaskCount(_ input: BalancingInput, _ taskCount: Int, _ balancer: String) {
  precondition(
    input.taskCount == taskCount && input.gram.count == taskCount * taskCount,
    "\(balancer) was made for \(taskCount) tasks but the input has \(input.taskCount) tasks "
      + "and \(input.gram.count) Gram entries")
}

/// Checks that restored task weights are `taskCount` positive finite values.
func checkTaskWeights(_ weights: [Double], _ taskCount: Int, _ balancer: String) {
  precondition(
    weights.count == taskCount && weights.allSatisfy { $0.isFinite && $0 > 0 },
    "\(balancer) needs \(taskCount) positive finite task weights, got \(weights)")
}

/// Checks that fixed task weights are all 1, for balancers that do not learn weights.
func checkUnitTaskWeights(_ weights: [Double], _ taskCount: Int, _ balancer: String) {
  precondition(
    weights.count == taskCount && weights.allSatisfy { $0 == 1 },
    "\(balancer) keeps \(taskCount) task weights at 1, got \(weights); restore learned weights "
      + "only into a GradNorm balancer")
}

/// Checks that initial losses, when present, are `taskCount` values.
func checkInitialLosses(_ losses: [Double]?, _ taskCount: Int, _ balancer: String) {
  guard let losses else { return }
  precondition(
    losses.count == taskCount,
    "\(balancer) needs \(taskCount) initial losses, got \(losses.count): \(losses)")
}
