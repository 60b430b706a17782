import ConcordTensors
import Foundation

/// Computes the mean softmax cross-entropy of `logits` against integer class labels.
///
/// For row `i` with logits `x_i` and label `y_i`, the loss is
/// `log(sum_j exp(x_ij)) - x_i,y_i`, and the result is its mean over the `n` rows. The
/// log-sum-exp subtracts the row maximum first, so logits of any magnitude give a finite
/// loss. The gradient of the mean with respect to the logits,
/// `(softmax(x_i) - onehot(y_i)) / n`, overwrites `gradient`.
///
/// With label smoothing `epsilon`, the target of row `i` is `(1 - epsilon) * onehot(y_i) +
/// epsilon / C`, as in PyTorch's `CrossEntropyLoss(label_smoothing=)`. The loss of the row is
/// then `log(sum_j exp(x_ij)) - (1 - epsilon) * x_i,y_i - epsilon * mean_j(x_ij)`, and the
/// gradient is `(softmax(x_i) - target_i) / n`.
///
/// `gradient` may be the same view as `logits`, because each element is read before it is
/// overwritten. Nothing is allocated.
///
/// - Parameters:
///   - logits: `[n, C]` with `n >= 1`, row-major, any row stride.
///   - labels: `n` class indices, each in `0..<C`.
///   - gradient: `[n, C]`, any row stride. Every element is overwritten.
///   - labelSmoothing: `epsilon`, in `[0, 1]`. The default, 0, gives the plain cross-entropy.
/// - Returns: The mean loss in nats.
public func softmaxCrossEntropy(
  logits: Matrix, labels: UnsafePointer<Int32>, gradient: Matrix, labelSmoothing: Float = 0
) -> Float {
  var correctCount = 0
  return softmaxCrossEntropy(
    logits: logits, labels: labels, gradient: gradient, labelSmoothing: labelSmoothing,
    correctCount: &correctCount)
}

/// Computes the mean softmax cross-entropy and counts the rows whose argmax is the label.
///
/// The loss and the gradient are those of
/// ``softmaxCrossEntropy(logits:labels:gradient:labelSmoothing:)``. A row counts as correct when its
/// largest logit is at the label, and a tie goes to the lowest column index.
///
/// - Parameters:
///   - logits: `[n, C]` with `n >= 1`, row-major, any row stride.
///   - labels: `n` class indices, each in `0..<C`.
///   - gradient: `[n, C]`, any row stride. Every element is overwritten.
///   - labelSmoothing: `epsilon`, in `[0, 1]`. The default, 0, gives the plain cross-entropy.
///   - correctCount: Set to the number of rows, out of `n`, whose argmax equals the label.
/// - Returns: The mean loss in nats.
public func softmaxCrossEntropy(
  logits: Matrix, labels: UnsafePointer<Int32>, gradient: Matrix, labelSmoothing: Float = 0,
  correctCount: inout Int
) -> Float {
  let n = logits.rows
  let classCount = logits.columns
  precondition(
    n >= 1 && classCount >= 1,
    "softmaxCrossEntropy needs at least one row and one class, got logits [\(n), \(classCount)]")
  precondition(
    gradient.rows == n && gradient.columns == classCount,
    "softmaxCrossEntropy: gradient [\(gradient.rows), \(gradient.columns)] must match logits "
      + "[\(n), \(classCount)]")
  precondition(
    labelSmoothing >= 0 && labelSmoothing <= 1,
    "softmaxCrossEntropy: label smoothing \(labelSmoothing) is outside [0, 1]")

  let inverseRowCount = 1 / Float(n)
  var lossSum = 0.0
  var correct = 0
  for i in 0..<n {
    let label = Int(labels[i])
    precondition(
      label >= 0 && label < classCount,
      "softmaxCrossEntropy: label \(label) of row \(i) is outside 0..<\(classCount)")
    let x = logits.base + i * logits.rowStride
    let g = gradient.base + i * gradient.rowStride

    // Pass 1: the maximum, which also gives the argmax.
    var maximum = x[0]
    var argmax = 0
    for j in 1..<classCount where x[j] > maximum {
      maximum = x[j]
      argmax = j
    }
    if argmax == label { correct += 1 }
    let labelLogit = x[label]

    // Pass 2: exp(x - max) into the gradient row, summed in Double, and the logits' sum.
    var sum = 0.0
    var logitSum = 0.0
    for j in 0..<classCount {
      let e = exp(x[j] - maximum)
      logitSum += Double(x[j])
      g[j] = e
      sum += Double(e)
    }
    let smoothing = Double(labelSmoothing)
    lossSum +=
      log(sum) + Double(maximum) - (1 - smoothing) * Double(labelLogit)
      - smoothing * logitSum / Double(classCount)

    // Pass 3: scale to softmax / n and subtract the target / n.
    let scale = Float(1 / sum) * inverseRowCount
    let uniform = labelSmoothing / Float(classCount) * inverseRowCount
    for j in 0..<classCount { g[j] = g[j] * scale - uniform }
    g[label] -= (1 - labelSmoothing) * inverseRowCount
  }
  correctCount = correct
  return Float(lossSum / Double(n))
}
