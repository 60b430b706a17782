/// GradNorm's task weights, then PCGrad on the weighted gradients `w_t * g_t`.
///
/// The combination runs ``PCGrad`` with the weights `w_t` that ``GradNorm`` stores before this
/// step's update, so the direction is `sum_i p_i` over the projected `u_i = w_t * g_t`, and head
/// gradients are scaled by the same `w_t`. Then GradNorm updates the weights for the next step
/// exactly as it does alone. Projection does not feed back into the weights: GradNorm's norms
/// are those of the unprojected `g_t^W`.
public struct PCGradGradNorm: GradientBalancer {
  public var kind: BalancerKind { .pcgradGradnorm }
  public var taskCount: Int { gradNorm.taskCount }

  /// The GradNorm part, which owns the task weights and initial losses.
  public private(set) var gradNorm: GradNorm

  /// The PCGrad part, which projects the weighted gradients.
  private var pcGrad: PCGrad

  public var taskWeights: [Double] {
    get { gradNorm.taskWeights }
    set { gradNorm.taskWeights = newValue }
  }

  public var initialLosses: [Double]? {
    get { gradNorm.initialLosses }
    set { gradNorm.initialLosses = newValue }
  }

  /// Creates the balancer for `taskCount` tasks, with every task weight at 1.
  ///
  /// - Parameters:
  ///   - taskCount: The number of tasks `T`, at least 1.
  ///   - alpha: GradNorm's asymmetry `alpha`, at least 0.
  ///   - weightLearningRate: GradNorm's learning rate of the task weights, at least 0.
  public init(
    taskCount: Int, alpha: Double = GradNorm.defaultAlpha,
    weightLearningRate: Double = GradNorm.defaultWeightLearningRate
  ) {
    gradNorm = GradNorm(
      taskCount: taskCount, alpha: alpha, weightLearningRate: weightLearningRate)
    pcGrad = PCGrad(taskCount: taskCount)
  }

  public mutating func balance(_ input: BalancingInput, into result: inout BalancingResult) {
    checkTaskCount(input, taskCount, "PCGradGradNorm")
    result.prepare(taskCount: taskCount)
    // PCGrad first, because it must see the weights from before GradNorm's update.
    pcGrad.project(input, weights: gradNorm.taskWeights, into: &result)
    gradNorm.updateWeights(input, into: &result)
  }
}
