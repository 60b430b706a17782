/// The plain sum of the task gradients: every coefficient and task weight is 1.
///
/// The baseline that the other balancers are compared against. It reads only the Gram matrix,
/// for the cosine similarities it reports.
public struct EqualWeighting: GradientBalancer {
  public var kind: BalancerKind { .equal }
  public let taskCount: Int

  public var taskWeights: [Double] {
    didSet { checkUnitTaskWeights(taskWeights, taskCount, "EqualWeighting") }
  }

  public var initialLosses: [Double]? {
    didSet { checkInitialLosses(initialLosses, taskCount, "EqualWeighting") }
  }

  /// Creates the balancer for `taskCount` tasks.
  public init(taskCount: Int) {
    precondition(taskCount > 0, "EqualWeighting needs at least one task, got \(taskCount)")
    self.taskCount = taskCount
    taskWeights = [Double](repeating: 1, count: taskCount)
    initialLosses = nil
  }

  public mutating func balance(_ input: BalancingInput, into result: inout BalancingResult) {
    checkTaskCount(input, taskCount, "EqualWeighting")
    if initialLosses == nil && input.losses.count == taskCount {
      initialLosses = input.losses
    }
    result.prepare(taskCount: taskCount)
    for t in 0..<taskCount {
      result.coefficients[t] = 1
      result.taskWeights[t] = 1
      result.updatedWeights[t] = 1
    }
    result.gradNorms = nil
    result.targets = nil
    result.writeCosineSimilarities(from: input)
  }
}
