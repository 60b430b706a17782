/// The gradient balancing methods, named as the command line and configuration spell them.
public enum BalancerKind: String, Sendable, CaseIterable, Codable {
  /// The plain sum of the task gradients, ``EqualWeighting``.
  case equal
  /// GradNorm's learned task weights, ``GradNorm``.
  case gradnorm
  /// PCGrad's projection of conflicting gradients, ``PCGrad``.
  case pcgrad
  /// GradNorm's weights, then PCGrad on the weighted gradients, ``PCGradGradNorm``.
  case pcgradGradnorm = "pcgrad+gradnorm"

  /// Creates a balancer of this kind for `taskCount` tasks, with task weights at 1.
  ///
  /// - Parameters:
  ///   - taskCount: The number of tasks `T`, at least 1.
  ///   - alpha: GradNorm's asymmetry `alpha`; ignored without GradNorm.
  ///   - weightLearningRate: GradNorm's learning rate for the task weights; ignored without
  ///     GradNorm.
  /// - Returns: A new balancer with no initial losses recorded.
  public func makeBalancer(
    taskCount: Int, alpha: Double = GradNorm.defaultAlpha,
    weightLearningRate: Double = GradNorm.defaultWeightLearningRate
  ) -> any GradientBalancer {
    switch self {
    case .equal:
      return EqualWeighting(taskCount: taskCount)
    case .gradnorm:
      return GradNorm(
        taskCount: taskCount, alpha: alpha, weightLearningRate: weightLearningRate)
    case .pcgrad:
      return PCGrad(taskCount: taskCount)
    case .pcgradGradnorm:
      return PCGradGradNorm(
        taskCount: taskCount, alpha: alpha, weightLearningRate: weightLearningRate)
    }
  }
}
