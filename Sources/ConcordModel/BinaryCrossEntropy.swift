import ConcordTensors
import Foundation

/// Computes the mean binary cross-entropy of `logits` against `targets`, with the sigmoid
/// folded in, and its gradient with respect to the logits.
///
/// For a logit `x` and a target `y`, the loss is
/// `-y log(sigmoid(x)) - (1 - y) log(1 - sigmoid(x))`, evaluated in the stable form
/// `max(x, 0) - x y + log(1 + exp(-|x|))`, which stays finite and accurate for logits of any
/// magnitude. The result is the mean over all `n * K` entries, and the gradient of that mean,
/// `(sigmoid(x) - y) / (n K)`, overwrites `gradient`. Nothing is allocated.
///
/// - Parameters:
///   - logits: `[n, K]`, one logit per label, row-major, any row stride.
///   - targets: `[n, K]`, any row stride, each 0 or 1. Any value in `[0, 1]` is accepted
///     as a soft label.
///   - gradient: `[n, K]`, any row stride. Every element is overwritten.
/// - Returns: The mean loss in nats.
public func binaryCrossEntropyWithLogits(logits: Matrix, targets: Matrix, gradient: Matrix)
  -> Float
{
  let n = logits.rows
  let labelCount = logits.columns
  precondition(
    n >= 1 && labelCount >= 1,
    "binaryCrossEntropyWithLogits needs at least one entry, got logits [\(n), \(labelCount)]")
  precondition(
    targets.rows == n && targets.columns == labelCount,
    "binaryCrossEntropyWithLogits: targets [\(targets.rows), \(targets.columns)] must match "
      + "logits [\(n), \(labelCount)]")
  precondition(
    gradient.rows == n && gradient.columns == labelCount,
    "binaryCrossEntropyWithLogits: gradient [\(gradient.rows), \(gradient.columns)] must "
      + "match logits [\(n), \(labelCount)]")

  let inverseCount = 1 / Float(n * labelCount)
  var lossSum = 0.0
  for i in 0..<n {
    let x = logits.base + i * logits.rowStride
    let y = targets.base + i * targets.rowStride
    let g = gradient.base + i * gradient.rowStride
    for k in 0..<labelCount {
      let logit = x[k]
      let target = y[k]
      // exp(-|x|) is at most 1, so neither the loss nor the sigmoid can overflow.
      let e = exp(-abs(logit))
      lossSum += Double(max(logit, 0) - logit * target) + Double(log1p(e))
      let sigmoid = logit >= 0 ? 1 / (1 + e) : e / (1 + e)
      g[k] = (sigmoid - target) * inverseCount
    }
  }
  return Float(lossSum / Double(n * labelCount))
}
