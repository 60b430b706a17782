import ConcordTensors
import Foundation

/// The smallest divisor used when a row is L2-normalised, as in PyTorch's
/// `torch.nn.functional.normalize`: a row `x` becomes `x / max(||x||, 1e-12)`, so a zero row
/// stays zero instead of becoming NaN.
let normalizationEpsilon = 1e-12

/// The normalised temperature-scaled cross-entropy (NT-Xent) loss of SimCLR, with the work
/// space for one batch shape.
///
/// The input contains the projections of `2n` views. Rows `0..<n` are the first view of `n`
/// images and rows `n..<2n` the second view of the same images. So the positive of row `i`
/// is row `(i + n) mod 2n`, and the other `2n - 2` rows are its negatives. Each row is
/// L2-normalised, `u_i = z_i / max(||z_i||, 1e-12)`, the similarities are
/// `s_ij = u_i . u_j / temperature`, and the loss of row `i` is the cross-entropy of its
/// positive under a softmax over `s_ij` for `j != i`:
///
/// ```
/// l_i = -s_i,pos(i) + log(sum_{j != i} exp(s_ij))
/// L = (1 / 2n) * sum_i l_i
/// ```
///
/// The gradient flows back through the normalisation. For a row shorter than `1e-12` it is
/// `(dL/du) / 1e-12`, as in PyTorch, so the guard prevents NaN but not a very large gradient.
///
/// An instance owns the normalised projections `[2n, d]`, the similarity matrix `[2n, 2n]`
/// and a gradient buffer `[2n, d]`, so a call allocates nothing. Create one instance per
/// batch shape and reuse it. An instance is not safe to call from two threads at once.
///
/// ### Anchors among more candidates
///
/// SimCLR's large-batch training contrasts each view with the views of the whole global
/// batch, which data-parallel ranks hold in parts. For that, an instance made with
/// ``init(anchorRows:candidateRows:dimension:)`` takes `C` candidate projections, the views
/// of every rank, of which the `2n` rows `o..<o + 2n` are this rank's anchors, laid out as
/// above: the positive of candidate `o + i` is `o + (i + n) mod 2n`. The loss is the mean of
/// `l_i` over the anchors, each contrasted with all `C - 1` other candidates, and the
/// gradient covers every candidate, since the other ranks' views are negatives of these
/// anchors. Suppose each of `R` ranks computes its anchors' loss, and the ranks sum their
/// candidate gradients. Then the mean of the ranks' losses is the NT-Xent loss of the `C`
/// views, and the sum of their gradients is `R` times its gradient.
///
/// ### References
///
/// Ting Chen, Simon Kornblith, Mohammad Norouzi and Geoffrey Hinton. A Simple Framework for
/// Contrastive Learning of Visual Representations. ICML 2020. arXiv:2002.05709.
public final class NTXentLoss {
  /// The number of anchor projections per call, `2n`.
  public let rows: Int
  /// The number of candidate projections per call, `C`: ``rows`` unless the instance was made
  /// for anchors among more candidates.
  public let candidateRows: Int
  /// The projection dimension `d`.
  public let dimension: Int

  /// The L2-normalised candidate projections `u`, `[C, d]`.
  let normalized: Matrix
  /// The divisor of each candidate, `max(||z_i||, 1e-12)`, `[C]`.
  private var divisors: [Double]
  /// The similarities `s` of the anchors to the candidates, later overwritten by the gradient
  /// with respect to `s`, `[2n, C]`.
  let similarities: Matrix
  /// The gradient with respect to `u`, `[C, d]`.
  let normalizedGradient: Matrix

  /// Allocates the work space for `rows` projections of `dimension` features each.
  ///
  /// - Parameters:
  ///   - rows: `2n`, the number of views in the batch, even and at least 2.
  ///   - dimension: `d`, the projection size, at least 1.
  public convenience init(rows: Int, dimension: Int) {
    self.init(anchorRows: rows, candidateRows: rows, dimension: dimension)
  }

  /// Allocates the work space for `anchorRows` anchors among `candidateRows` candidate
  /// projections of `dimension` features each.
  ///
  /// - Parameters:
  ///   - anchorRows: `2n`, the views of this rank's batch, even and at least 2.
  ///   - candidateRows: `C`, the views of the global batch, at least `anchorRows`.
  ///   - dimension: `d`, the projection size, at least 1.
  public init(anchorRows rows: Int, candidateRows: Int, dimension: Int) {
    precondition(
      rows >= 2 && rows % 2 == 0,
      "NTXentLoss needs an even number of rows (two views per image), at least 2, got \(rows)")
    precondition(
      candidateRows >= rows,
      "NTXentLoss needs at least as many candidates as anchors, got \(candidateRows) < \(rows)")
    precondition(dimension >= 1, "NTXentLoss needs a dimension of at least 1, got \(dimension)")
    self.rows = rows
    self.candidateRows = candidateRows
    self.dimension = dimension
    normalized = Matrix(rows: candidateRows, columns: dimension)
    divisors = [Double](repeating: 1, count: candidateRows)
    similarities = Matrix(rows: rows, columns: candidateRows)
    normalizedGradient = Matrix(rows: candidateRows, columns: dimension)
  }

  /// Computes the mean NT-Xent loss over the `2n` views and its gradient.
  ///
  /// - Parameters:
  ///   - z: The projections, `[2n, d]`, row-major, any row stride. Rows `i` and
  ///     `(i + n) mod 2n` are the two views of one image.
  ///   - temperature: The temperature `tau > 0` that divides the cosine similarities.
  ///     Smaller values sharpen the softmax and weight the hardest negatives more.
  ///   - gradient: `[2n, d]`, any row stride, overwritten with `dL/dz`.
  /// - Returns: The mean loss in nats. With `n = 1` it is 0, because each row's only
  ///   candidate is its positive.
  public func callAsFunction(projections z: Matrix, temperature: Float, gradient: Matrix)
    -> Float
  {
    precondition(
      candidateRows == rows,
      "NTXentLoss for \(rows) anchors among \(candidateRows) candidates called without anchors")
    return self(candidates: z, anchors: 0..<rows, temperature: temperature, gradient: gradient)
  }

  /// Computes the mean NT-Xent loss of the anchors `z[anchors]` against every row of `z`, and
  /// its gradient with respect to every row.
  ///
  /// - Parameters:
  ///   - z: The candidate projections, `[C, d]`, row-major, any row stride.
  ///   - anchors: `2n` consecutive rows of `z`, the first view of `n` images and then their
  ///     second view, so that the positive of row `o + i` is `o + (i + n) mod 2n`.
  ///   - temperature: The temperature `tau > 0` that divides the cosine similarities.
  ///   - gradient: `[C, d]`, any row stride, overwritten with the loss's gradient with respect
  ///     to each candidate.
  /// - Returns: The mean loss over the anchors, in nats.
  public func callAsFunction(
    candidates z: Matrix, anchors: Range<Int>, temperature: Float, gradient: Matrix
  ) -> Float {
    precondition(
      z.rows == candidateRows && z.columns == dimension,
      "NTXentLoss for [\(candidateRows), \(dimension)] called with projections "
        + "[\(z.rows), \(z.columns)]")
    precondition(
      gradient.rows == candidateRows && gradient.columns == dimension,
      "NTXentLoss for [\(candidateRows), \(dimension)] called with gradient "
        + "[\(gradient.rows), \(gradient.columns)]")
    precondition(
      anchors.count == rows && anchors.lowerBound >= 0 && anchors.upperBound <= candidateRows,
      "NTXentLoss for \(rows) anchors among \(candidateRows) candidates called with anchors "
        + "\(anchors)")
    precondition(
      temperature > 0 && temperature.isFinite,
      "NTXentLoss temperature must be positive and finite, got \(temperature)")

    normalizeRows(of: z)
    let anchorRows = normalized.rows(anchors)
    BLAS.gemm(
      anchorRows, normalized, transposeB: true, into: similarities, alpha: 1 / temperature)
    let loss = replaceSimilaritiesByTheirGradient(firstAnchor: anchors.lowerBound)

    // s = u_a u^T / tau for the anchors u_a, so dL/du = G^T u_a / tau on every candidate,
    // plus G u / tau on the anchors, with G = dL/ds. Candidates that are not anchors start
    // from zero.
    for i in 0..<candidateRows where !anchors.contains(i) {
      normalizedGradient.row(i).update(repeating: 0)
    }
    BLAS.gemm(
      similarities, normalized, into: normalizedGradient.rows(anchors), alpha: 1 / temperature)
    BLAS.gemm(
      similarities, transposeA: true, anchorRows, into: normalizedGradient,
      alpha: 1 / temperature, beta: 1)
    backpropagateNormalization(into: gradient)
    return loss
  }

  /// Writes `u_i = z_i / max(||z_i||, 1e-12)` and the divisors.
  private func normalizeRows(of z: Matrix) {
    for i in 0..<candidateRows {
      let source = z.base + i * z.rowStride
      var squaredNorm = 0.0
      for k in 0..<dimension { squaredNorm += Double(source[k]) * Double(source[k]) }
      let divisor = max(squaredNorm.squareRoot(), normalizationEpsilon)
      divisors[i] = divisor
      let scale = Float(1 / divisor)
      let target = normalized.base + i * normalized.rowStride
      for k in 0..<dimension { target[k] = source[k] * scale }
    }
  }

  /// Returns the mean loss and overwrites `similarities` with `G = dL/ds`.
  ///
  /// Row `i` of `G` is `(softmax_{j != o + i}(s_i) - onehot(pos(i))) / 2n`, and
  /// `G_i,o+i = 0`, where `o` is `firstAnchor`.
  private func replaceSimilaritiesByTheirGradient(firstAnchor: Int) -> Float {
    let n = rows / 2
    let inverseRows = 1 / Float(rows)
    var lossSum = 0.0
    for i in 0..<rows {
      let s = similarities.base + i * similarities.rowStride
      let anchor = firstAnchor + i
      let positive = firstAnchor + (i + n) % rows

      // The log-sum-exp over j != anchor, with the maximum subtracted for stability.
      let positiveSimilarity = s[positive]
      var maximum = -Float.infinity
      for j in 0..<candidateRows where j != anchor { maximum = max(maximum, s[j]) }
      var sum = 0.0
      for j in 0..<candidateRows {
        let e: Float = j == anchor ? 0 : exp(s[j] - maximum)
        sum += Double(e)
        s[j] = e
      }
      lossSum += log(sum) + Double(maximum) - Double(positiveSimilarity)

      let scale = Float(1 / sum) * inverseRows
      for j in 0..<candidateRows { s[j] *= scale }
      s[positive] -= inverseRows
    }
    return Float(lossSum / Double(rows))
  }

  /// Maps `dL/du` back through the normalisation into `gradient`.
  ///
  /// For a row with `||z|| > 1e-12`, `dL/dz = (dL/du - u (u . dL/du)) / ||z||`. A shorter row
  /// was divided by the constant `1e-12`, so its gradient is `(dL/du) / 1e-12`.
  private func backpropagateNormalization(into gradient: Matrix) {
    for i in 0..<candidateRows {
      let u = normalized.base + i * normalized.rowStride
      let du = normalizedGradient.base + i * normalizedGradient.rowStride
      let dz = gradient.base + i * gradient.rowStride
      let divisor = divisors[i]
      var radial: Float = 0
      if divisor > normalizationEpsilon {
        var dot = 0.0
        for k in 0..<dimension { dot += Double(u[k]) * Double(du[k]) }
        radial = Float(dot)
      }
      let scale = Float(1 / divisor)
      for k in 0..<dimension { dz[k] = (du[k] - u[k] * radial) * scale }
    }
  }
}
