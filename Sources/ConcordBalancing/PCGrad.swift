import ConcordTensors

/// Projecting conflicting gradients (PCGrad): each task's gradient loses its component along
/// every other task's gradient that it conflicts with.
///
/// With `u_t = w_t * g_t` (here `w_t = 1`; ``PCGradGradNorm`` supplies GradNorm's weights), for
/// each task `i`: `p_i = u_i`, then for each `j` in `taskOrder[i]`, if `p_i . u_j < 0`,
/// `p_i <- p_i - (p_i . u_j / ||u_j||^2) u_j`. Projections use the original `u_j`, never a
/// projected `p_j`, and a `u_j` of zero norm is skipped. The direction is `sum_i p_i`.
///
/// Every `p_i` is a combination `sum_k P[i][k] u_k`, so the algorithm runs on the `[T, T]`
/// coefficient matrix `P` (identity at the start) and the Gram matrix of the `u_t`:
/// `p_i . u_j = sum_k P[i][k] w_k w_j (g_k . g_j)`, and a projection subtracts
/// `p_i . u_j / ||u_j||^2` from `P[i][j]`. The returned coefficients are
/// `c_k = w_k * sum_i P[i][k]`, so that `sum_k c_k g_k = sum_i p_i`. The cost is `O(T^3)`,
/// independent of the number of shared parameters.
///
/// The projection order is random, as in the paper, but drawn from a stream keyed by the run's
/// seed and the step (``taskOrder(seed:step:taskCount:)``), never by the rank, so every rank
/// and a resumed run project in the same order.
///
/// ### References
/// - Tianhe Yu, Saurabh Kumar, Abhishek Gupta, Sergey Levine, Karol Hausman, Chelsea Finn.
///   "Gradient Surgery for Multi-Task Learning." NeurIPS 2020, algorithm 1.
///   https://arxiv.org/abs/2001.06782
public struct PCGrad: GradientBalancer {
  public var kind: BalancerKind { .pcgrad }
  public let taskCount: Int

  public var taskWeights: [Double] {
    didSet { checkUnitTaskWeights(taskWeights, taskCount, "PCGrad") }
  }

  public var initialLosses: [Double]? {
    didSet { checkInitialLosses(initialLosses, taskCount, "PCGrad") }
  }

  /// The projection coefficients `P`, `[T, T]` row-major, reused every step.
  private var projection: [Double]

  /// Creates the balancer for `taskCount` tasks.
  public init(taskCount: Int) {
    precondition(taskCount > 0, "PCGrad needs at least one task, got \(taskCount)")
    self.taskCount = taskCount
    taskWeights = [Double](repeating: 1, count: taskCount)
    initialLosses = nil
    projection = [Double](repeating: 0, count: taskCount * taskCount)
  }

  public mutating func balance(_ input: BalancingInput, into result: inout BalancingResult) {
    checkTaskCount(input, taskCount, "PCGrad")
    if initialLosses == nil && input.losses.count == taskCount {
      initialLosses = input.losses
    }
    result.prepare(taskCount: taskCount)
    project(input, weights: taskWeights, into: &result)
    for t in 0..<taskCount {
      result.taskWeights[t] = 1
      result.updatedWeights[t] = 1
    }
    result.gradNorms = nil
    result.targets = nil
  }

  /// Runs PCGrad on `u_t = weights[t] * g_t` and writes ``BalancingResult/coefficients``,
  /// ``BalancingResult/projectionCount`` and ``BalancingResult/cosineSimilarities``.
  mutating func project(
    _ input: BalancingInput, weights: [Double], into result: inout BalancingResult
  ) {
    let count = taskCount
    Self.checkTaskOrder(input.taskOrder, taskCount: count)
    var projectionCount = 0
    for i in 0..<count {
      for k in 0..<count {
        projection[i * count + k] = i == k ? 1 : 0
      }
      for j in input.taskOrder[i] {
        // ||u_j||^2; a zero-norm u_j has no direction to project onto.
        let normSquared = weights[j] * weights[j] * input.gram[j * count + j]
        guard normSquared > 0 else { continue }

        // p_i . u_j, with p_i = sum_k P[i][k] u_k.
        var dot = 0.0
        for k in 0..<count {
          dot += projection[i * count + k] * weights[k] * weights[j] * input.gram[k * count + j]
        }
        if dot < 0 {
          projection[i * count + j] -= dot / normSquared
          projectionCount += 1
        }
      }
    }

    // sum_i p_i = sum_k (sum_i P[i][k]) w_k g_k.
    for k in 0..<count {
      var columnSum = 0.0
      for i in 0..<count {
        columnSum += projection[i * count + k]
      }
      result.coefficients[k] = weights[k] * columnSum
    }
    result.projectionCount = projectionCount
    result.writeCosineSimilarities(from: input)
  }

  /// Checks that `order` has one row per task and that row `i` lists every other task once.
  static func checkTaskOrder(_ order: [[Int]], taskCount: Int) {
    precondition(
      order.count == taskCount,
      "PCGrad needs a task order with \(taskCount) rows, got \(order.count): \(order)")
    for (i, row) in order.enumerated() {
      var isValid = row.count == taskCount - 1
      for (position, j) in row.enumerated() where isValid {
        isValid = j >= 0 && j < taskCount && j != i && !row[..<position].contains(j)
      }
      precondition(
        isValid,
        "PCGrad task order row \(i) must list each task of 0..<\(taskCount) except \(i) once, "
          + "got \(row)")
    }
  }

  /// Returns the PCGrad projection order of a step: for each task, the other tasks shuffled.
  ///
  /// The order comes from `RandomStream(seed: seed, purpose: .taskOrder, counters: step)`, so it
  /// depends on the seed and the step alone: every rank draws the same order, and a run resumed
  /// at step `k` draws the order of an uninterrupted run.
  ///
  /// - Parameters:
  ///   - seed: The run's seed.
  ///   - step: The zero-based training step.
  ///   - taskCount: The number of tasks `T`.
  /// - Returns: `T` rows; row `i` is a permutation of the tasks `0..<T` other than `i`.
  public static func taskOrder(seed: UInt64, step: Int, taskCount: Int) -> [[Int]] {
    var order = [[Int]](repeating: [], count: taskCount)
    writeTaskOrder(into: &order, seed: seed, step: step)
    return order
  }

  /// Writes the PCGrad projection order of a step into `order`, reusing its rows.
  ///
  /// Draws the same order as ``taskOrder(seed:step:taskCount:)`` for `T = order.count`, and
  /// allocates nothing when every row already contains `T - 1` elements.
  ///
  /// - Parameters:
  ///   - order: `T` rows, overwritten.
  ///   - seed: The run's seed.
  ///   - step: The zero-based training step.
  public static func writeTaskOrder(into order: inout [[Int]], seed: UInt64, step: Int) {
    precondition(step >= 0, "PCGrad task order needs a non-negative step, got \(step)")
    let count = order.count
    var stream = RandomStream(seed: seed, purpose: .taskOrder, counters: UInt64(step))
    for i in 0..<count {
      if order[i].count != count - 1 {
        order[i] = [Int](repeating: 0, count: count - 1)
      }
      var position = 0
      for j in 0..<count where j != i {
        order[i][position] = j
        position += 1
      }
      stream.shuffle(&order[i])
    }
  }
}
