import ConcordTensors
import Foundation

/// Computes the BYOL regression loss, the mean over rows of `2 - 2 cos(p_i, t_i)`, and its
/// gradient with respect to the predictions.
///
/// Row `i` of `predictions` is the online network's prediction for one view, and row `i` of
/// `targets` is the target network's projection of the other view of the same image. Both
/// are L2-normalised, `x / max(||x||, 1e-12)` as PyTorch's `torch.nn.functional.normalize`
/// does, so the loss of a row is `||p_i / ||p_i|| - t_i / ||t_i|| ||^2 = 2 - 2 cos(p_i, t_i)`,
/// between 0 (same direction) and 4 (opposite directions). The targets are constants (BYOL's
/// stop-gradient), so only `dL/dp` is computed:
///
/// ```
/// dL/dp_i = -(2 / m) * (t_i/||t_i|| - c_i * p_i/||p_i||) / ||p_i||,   c_i = cos(p_i, t_i)
/// ```
///
/// A prediction row shorter than `1e-12` is divided by `1e-12` instead. That keeps the loss
/// and gradient finite, though the gradient of such a row is of order `1e12 / m`. A zero
/// target row gives loss 2 and a zero gradient for its row.
///
/// For the symmetrised loss, stack the two views as `m = 2n` rows and swap the targets of
/// the two halves. The result is the mean of the two directions, half of the sum that
/// Grill et al. minimise. Nothing is allocated.
///
/// ### References
///
/// Jean-Bastien Grill et al. Bootstrap Your Own Latent: A New Approach to Self-Supervised
/// Learning. NeurIPS 2020. arXiv:2006.07733.
///
/// - Parameters:
///   - p: The online predictions, `[m, d]` with `m >= 1`, row-major, any row stride.
///   - t: The target projections, `[m, d]`, any row stride, read only.
///   - gradient: `[m, d]`, any row stride, overwritten with `dL/dp`.
/// - Returns: The mean loss, in `[0, 4]` up to rounding.
public func byolLoss(predictions p: Matrix, targets t: Matrix, gradient: Matrix) -> Float {
  let m = p.rows
  let d = p.columns
  precondition(m >= 1 && d >= 1, "byolLoss needs at least one row and column, got [\(m), \(d)]")
  precondition(
    t.rows == m && t.columns == d,
    "byolLoss: targets [\(t.rows), \(t.columns)] must match predictions [\(m), \(d)]")
  precondition(
    gradient.rows == m && gradient.columns == d,
    "byolLoss: gradient [\(gradient.rows), \(gradient.columns)] must match predictions "
      + "[\(m), \(d)]")

  var lossSum = 0.0
  for i in 0..<m {
    let pRow = p.base + i * p.rowStride
    let tRow = t.base + i * t.rowStride
    let (pp, tt, pt) = rowProducts(pRow, tRow, count: d)
    let pNorm = pp.squareRoot()
    let pDivisor = max(pNorm, normalizationEpsilon)
    let tDivisor = max(tt.squareRoot(), normalizationEpsilon)
    let cosine = pt / (pDivisor * tDivisor)
    lossSum += 2 - 2 * cosine

    // Only a row that was really normalised loses its radial component: a clamped row
    // was scaled by the constant 1 / 1e-12.
    let radial = pNorm > normalizationEpsilon ? cosine / pDivisor : 0
    let targetScale = Float(-2 / (Double(m) * pDivisor * tDivisor))
    let predictionScale = Float(2 * radial / (Double(m) * pDivisor))
    let g = gradient.base + i * gradient.rowStride
    for k in 0..<d { g[k] = targetScale * tRow[k] + predictionScale * pRow[k] }
  }
  return Float(lossSum / Double(m))
}
