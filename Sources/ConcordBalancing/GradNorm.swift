import Foundation

/// GradNorm: task weights learned so that each task's weighted gradient norm follows its
/// relative training rate.
///
/// Each step, with `||g_t^W||` the norm of task `t`'s gradient on the GradNorm layer `W`:
/// - `G_t = w_t * ||g_t^W||` and `G_bar = mean_t G_t`;
/// - the relative inverse training rate `r_t = (L_t / L_t(0)) / mean_s (L_s / L_s(0))`;
/// - the target `G_bar * r_t^alpha`, held constant;
/// - the gradient of `L_grad = sum_t |G_t - target_t|` with respect to `w_t`,
///   `sign(G_t - target_t) * ||g_t^W||`;
/// - `w_t <- w_t - weightLearningRate * sign(G_t - target_t) * ||g_t^W||`, then the floor
///   ``minimumTaskWeight``, then renormalisation so that `sum_t w_t = T`.
///
/// This step's coefficients are the weights from before the update, `c_t = w_t`. The update
/// is a plain gradient step with learning rate ``weightLearningRate``, not a step of the
/// model's optimizer.
///
/// Values that make the update undefined are handled as follows:
/// - A task whose `L_t(0)` is zero, negative or not finite has `r_t = 1` (a neutral training
///   rate), and the mean in `r_t` runs over the other tasks. If every task is like that, or the
///   mean of the loss ratios is zero (every loss is zero) or infinite, every `r_t` is 1.
/// - A loss, a gradient norm or an updated weight that is not finite skips the weight update
///   for this step. The weights stay as they were and ``BalancingResult/isWeightUpdateSkipped``
///   is set, so one diverged step cannot corrupt the weights of later steps and checkpoints.
///
/// ### References
/// - Zhao Chen, Vijay Badrinarayanan, Chen-Yu Lee, Andrew Rabinovich. "GradNorm: Gradient
///   Normalization for Adaptive Loss Balancing in Deep Multitask Networks." ICML 2018,
///   algorithm 1. https://arxiv.org/abs/1711.02257
public struct GradNorm: GradientBalancer {
  /// The default asymmetry `alpha`, 1.5.
  public static let defaultAlpha = 1.5

  /// The default learning rate of the task weights, 0.025.
  public static let defaultWeightLearningRate = 0.025

  /// The floor that every task weight is raised to after the gradient step, 0.001, before
  /// renormalisation.
  ///
  /// Without it a large step could make a weight zero or negative. A negative weight would turn
  /// the task's gradient into ascent on its loss, and a zero weight would drop the task from the
  /// update and from PCGrad. Weights that are all zero would make the renormalisation divide by
  /// zero. The value is 0.1% of the mean weight of 1, so it binds only when a step would push a
  /// weight to about zero or below. Renormalisation can scale a floored weight below the floor,
  /// but the weight stays positive.
  public static let minimumTaskWeight = 1e-3

  public var kind: BalancerKind { .gradnorm }
  public let taskCount: Int

  /// The asymmetry `alpha`: how strongly tasks that train slower are pulled up.
  public let alpha: Double

  /// The learning rate of the gradient step on the task weights.
  public let weightLearningRate: Double

  public var taskWeights: [Double] {
    didSet { checkTaskWeights(taskWeights, taskCount, "GradNorm") }
  }

  public var initialLosses: [Double]? {
    didSet { checkInitialLosses(initialLosses, taskCount, "GradNorm") }
  }

  /// The loss ratios `L_t / L_t(0)` of the current step, reused every step.
  private var lossRatios: [Double]

  /// The task weights after the gradient step and the floor, before renormalisation.
  private var proposedWeights: [Double]

  /// Creates the balancer for `taskCount` tasks, with every task weight at 1.
  ///
  /// - Parameters:
  ///   - taskCount: The number of tasks `T`, at least 1.
  ///   - alpha: The asymmetry `alpha`, at least 0.
  ///   - weightLearningRate: The learning rate of the task weights, at least 0.
  public init(
    taskCount: Int, alpha: Double = defaultAlpha,
    weightLearningRate: Double = defaultWeightLearningRate
  ) {
    precondition(taskCount > 0, "GradNorm needs at least one task, got \(taskCount)")
    precondition(alpha.isFinite && alpha >= 0, "GradNorm alpha must be >= 0, got \(alpha)")
    precondition(
      weightLearningRate.isFinite && weightLearningRate >= 0,
      "GradNorm weight learning rate must be >= 0, got \(weightLearningRate)")
    self.taskCount = taskCount
    self.alpha = alpha
    self.weightLearningRate = weightLearningRate
    taskWeights = [Double](repeating: 1, count: taskCount)
    initialLosses = nil
    lossRatios = [Double](repeating: 0, count: taskCount)
    proposedWeights = [Double](repeating: 0, count: taskCount)
  }

  public mutating func balance(_ input: BalancingInput, into result: inout BalancingResult) {
    checkTaskCount(input, taskCount, "GradNorm")
    result.prepare(taskCount: taskCount)
    for t in 0..<taskCount {
      result.coefficients[t] = taskWeights[t]
    }
    updateWeights(input, into: &result)
    result.writeCosineSimilarities(from: input)
  }

  /// Runs one GradNorm update on ``taskWeights``.
  ///
  /// Writes the weights before and after the update, the gradient norms and the targets into
  /// `result`, and leaves its coefficients unchanged.
  mutating func updateWeights(_ input: BalancingInput, into result: inout BalancingResult) {
    let count = taskCount
    precondition(
      input.losses.count == count && input.gradNormSquares.count == count,
      "GradNorm needs \(count) losses and \(count) gradient norms, got \(input.losses.count) "
        + "and \(input.gradNormSquares.count)")
    for t in 0..<count where input.gradNormSquares[t] < 0 {
      preconditionFailure(
        "GradNorm gradient norm squares must be >= 0, got \(input.gradNormSquares)")
    }
    if initialLosses == nil {
      initialLosses = input.losses
    }
    if result.gradNorms?.count != count {
      result.gradNorms = [Double](repeating: 0, count: count)
    }
    if result.targets?.count != count {
      result.targets = [Double](repeating: 0, count: count)
    }

    // G_t = w_t ||g_t^W|| and their mean G_bar.
    var meanGradNorm = 0.0
    for t in 0..<count {
      let gradNorm = taskWeights[t] * input.gradNormSquares[t].squareRoot()
      result.gradNorms?[t] = gradNorm
      result.taskWeights[t] = taskWeights[t]
      meanGradNorm += gradNorm
    }
    meanGradNorm /= Double(count)

    writeRelativeInverseTrainingRates(losses: input.losses)

    // target_t = G_bar r_t^alpha, then the gradient step on w_t and the floor.
    var proposedSum = 0.0
    for t in 0..<count {
      let target = meanGradNorm * pow(lossRatios[t], alpha)
      result.targets?[t] = target
      let norm = input.gradNormSquares[t].squareRoot()
      let difference = taskWeights[t] * norm - target
      let sign: Double = difference > 0 ? 1 : (difference < 0 ? -1 : 0)
      let step = weightLearningRate * sign * norm
      proposedWeights[t] = max(taskWeights[t] - step, Self.minimumTaskWeight)
      proposedSum += proposedWeights[t]
    }

    // Renormalise to sum T, unless a non-finite value makes the update meaningless.
    let isFinite =
      meanGradNorm.isFinite && proposedSum.isFinite && input.losses.allSatisfy(\.isFinite)
    if isFinite {
      let scale = Double(count) / proposedSum
      for t in 0..<count {
        taskWeights[t] = proposedWeights[t] * scale
      }
    }
    result.isWeightUpdateSkipped = !isFinite
    for t in 0..<count {
      result.updatedWeights[t] = taskWeights[t]
    }
  }

  /// Writes `r_t = (L_t / L_t(0)) / mean_s (L_s / L_s(0))` into ``lossRatios``, with `r_t = 1`
  /// for tasks whose ratio is undefined.
  private mutating func writeRelativeInverseTrainingRates(losses: [Double]) {
    var ratioSum = 0.0
    var definedCount = 0
    for t in 0..<taskCount {
      let initialLoss = initialLosses?[t] ?? 0
      if initialLoss.isFinite && initialLoss > 0 {
        lossRatios[t] = losses[t] / initialLoss
        ratioSum += lossRatios[t]
        definedCount += 1
      } else {
        lossRatios[t] = .nan
      }
    }
    let meanRatio = definedCount > 0 ? ratioSum / Double(definedCount) : 0
    for t in 0..<taskCount {
      if lossRatios[t].isNaN || !(meanRatio > 0) || !meanRatio.isFinite {
        lossRatios[t] = 1
      } else {
        lossRatios[t] /= meanRatio
      }
    }
  }
}
