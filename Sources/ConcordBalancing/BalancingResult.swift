/// The output of one balancing step: coefficients of the shared update and the task weights.
///
/// The update direction on the shared parameters is `sum_t coefficients[t] * g_t` over the
/// unweighted per-task gradients `g_t`. Each task's head gradient `h_t` is scaled by
/// `taskWeights[t]`, because surgery applies to shared parameters only.
///
/// A result can be created once with ``init(taskCount:)`` and passed to
/// ``GradientBalancer/balance(_:into:)`` every step, which then writes into its arrays without
/// allocating.
public struct BalancingResult: Sendable, Equatable {
  /// The coefficients `c_t` of the shared update direction `sum_t c_t * g_t`, `T` values.
  public var coefficients: [Double]

  /// The task weights `w_t` used in this step, before any update, `T` values.
  public var taskWeights: [Double]

  /// The task weights after this step's GradNorm update, used by the next step, `T` values.
  ///
  /// Equal to ``taskWeights`` for balancers that do not learn weights.
  public var updatedWeights: [Double]

  /// The number of PCGrad projections made in this step, over all tasks; 0 without PCGrad.
  public var projectionCount: Int

  /// GradNorm's weighted gradient norms `G_t = w_t * ||g_t^W||`, `T` values; `nil` without
  /// GradNorm.
  public var gradNorms: [Double]?

  /// GradNorm's targets `G_bar * r_t^alpha`, `T` values; `nil` without GradNorm.
  public var targets: [Double]?

  /// Whether GradNorm left the weights unchanged because a loss or gradient norm was not finite.
  public var isWeightUpdateSkipped: Bool

  /// The cosine similarities `g_i . g_j / (||g_i|| ||g_j||)` of the per-task gradients, `[T, T]`
  /// row-major; 0 in every entry whose row or column task has a zero gradient.
  public var cosineSimilarities: [Double]

  /// Creates a zeroed result with room for `taskCount` tasks.
  public init(taskCount: Int) {
    coefficients = [Double](repeating: 0, count: taskCount)
    taskWeights = [Double](repeating: 1, count: taskCount)
    updatedWeights = [Double](repeating: 1, count: taskCount)
    projectionCount = 0
    gradNorms = nil
    targets = nil
    isWeightUpdateSkipped = false
    cosineSimilarities = [Double](repeating: 0, count: taskCount * taskCount)
  }

  /// Resizes the arrays for `taskCount` tasks if needed and clears the GradNorm fields.
  ///
  /// Allocates only when the sizes differ, so a result reused with the same task count costs
  /// nothing here.
  mutating func prepare(taskCount: Int) {
    if coefficients.count != taskCount || cosineSimilarities.count != taskCount * taskCount
      || taskWeights.count != taskCount || updatedWeights.count != taskCount
    {
      self = BalancingResult(taskCount: taskCount)
    }
    projectionCount = 0
    isWeightUpdateSkipped = false
  }

  /// Writes ``cosineSimilarities`` from the Gram matrix of `input`.
  mutating func writeCosineSimilarities(from input: BalancingInput) {
    let count = input.taskCount
    for i in 0..<count {
      let normI = input.gram[i * count + i].squareRoot()
      for j in 0..<count {
        let normJ = input.gram[j * count + j].squareRoot()
        let denominator = normI * normJ
        cosineSimilarities[i * count + j] =
          denominator > 0 ? input.gram[i * count + j] / denominator : 0
      }
    }
  }
}
