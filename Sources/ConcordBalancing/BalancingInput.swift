/// The per-step quantities a gradient balancer reads, all in the space of tasks.
///
/// A balancer reads dot products of the shared-parameter gradients, never the gradients
/// themselves, because PCGrad's conflict tests and projections and GradNorm's gradient norms are
/// functions of the Gram matrix of the per-task gradients `g_t`. The caller forms the update direction on the
/// shared parameters as `sum_t c_t * g_t` from the returned coefficients `c_t`.
///
/// Every rank must build the same input from the same reduced buffer, so that every rank computes
/// the same coefficients and weights.
public struct BalancingInput: Sendable {
  /// The number of tasks `T`.
  public var taskCount: Int

  /// The Gram matrix `g_i . g_j` of the unweighted, reduced per-task gradients on the shared
  /// parameters, `[T, T]` row-major.
  public var gram: [Double]

  /// The squared norms `||g_t^W||^2` of each task's gradient on the GradNorm layer `W`, `T`
  /// values.
  ///
  /// `W` is the caller's choice: the last shared layer's weight (the GradNorm paper's choice) or
  /// all shared parameters, in which case these values are the diagonal of ``gram``. Only the
  /// GradNorm balancers read them.
  public var gradNormSquares: [Double]

  /// The reduced per-task losses `L_t` of this step, `T` values.
  ///
  /// Only the GradNorm balancers read them. The other balancers may receive an empty array.
  public var losses: [Double]

  /// The PCGrad projection order, `T` rows: row `i` lists the tasks other than `i` in the order
  /// that task `i`'s gradient is projected against them.
  ///
  /// Only the PCGrad balancers read it, and ``PCGrad/taskOrder(seed:step:taskCount:)`` draws it.
  public var taskOrder: [[Int]]

  /// Creates an input from its parts.
  ///
  /// - Parameters:
  ///   - taskCount: The number of tasks `T`.
  ///   - gram: `[T, T]` row-major Gram matrix of the per-task gradients.
  ///   - gradNormSquares: `T` squared gradient norms on the GradNorm layer.
  ///   - losses: `T` reduced losses, or empty for balancers that ignore losses.
  ///   - taskOrder: `T` rows of PCGrad projection order, or empty for balancers without PCGrad.
  public init(
    taskCount: Int, gram: [Double], gradNormSquares: [Double] = [], losses: [Double] = [],
    taskOrder: [[Int]] = []
  ) {
    precondition(taskCount > 0, "BalancingInput needs at least one task, got \(taskCount)")
    precondition(
      gram.count == taskCount * taskCount,
      "BalancingInput.gram must hold \(taskCount)x\(taskCount) values, got \(gram.count)")
    self.taskCount = taskCount
    self.gram = gram
    self.gradNormSquares = gradNormSquares
    self.losses = losses
    self.taskOrder = taskOrder
  }

  /// Creates an input from dense per-task gradients, with GradNorm norms over the whole vectors.
  ///
  /// Meant for tests and small problems: it allocates the Gram matrix and reads every element.
  ///
  /// - Parameters:
  ///   - gradients: `T` vectors of equal length, `g_t` on the shared parameters.
  ///   - losses: `T` reduced losses, or empty for balancers that ignore losses.
  ///   - taskOrder: `T` rows of PCGrad projection order, or empty for balancers without PCGrad.
  public init<Scalar: BinaryFloatingPoint>(
    gradients: [[Scalar]], losses: [Double] = [], taskOrder: [[Int]] = []
  ) {
    let gram = Self.gram(of: gradients)
    let count = gradients.count
    self.init(
      taskCount: count, gram: gram,
      gradNormSquares: (0..<count).map { gram[$0 * count + $0] }, losses: losses,
      taskOrder: taskOrder)
  }

  /// Returns the Gram matrix `v_i . v_j` of `vectors`, `[T, T]` row-major, summed in `Double`.
  ///
  /// Meant for tests and small problems. The training step should compute the Gram matrix of
  /// its gradient buffer with BLAS instead.
  ///
  /// - Parameter vectors: `T` vectors of equal length.
  /// - Returns: `T * T` values; the matrix is symmetric.
  public static func gram<Scalar: BinaryFloatingPoint>(of vectors: [[Scalar]]) -> [Double] {
    let count = vectors.count
    let length = vectors.first?.count ?? 0
    for (index, vector) in vectors.enumerated() {
      precondition(
        vector.count == length,
        "gram(of:) needs vectors of equal length: vector 0 has \(length) values, "
          + "vector \(index) has \(vector.count)")
    }
    var gram = [Double](repeating: 0, count: count * count)
    for i in 0..<count {
      for j in i..<count {
        var sum = 0.0
        for k in 0..<length {
          sum += Double(vectors[i][k]) * Double(vectors[j][k])
        }
        gram[i * count + j] = sum
        gram[j * count + i] = sum
      }
    }
    return gram
  }
}
