import ConcordTensors
import Foundation
import Testing

@testable import ConcordModel

/// Labels `(i * 7 + 3) mod classCount` for `n` rows: every class appears for larger `n`.
private func labels(n: Int, classCount: Int) -> [Int32] {
  (0..<n).map { Int32(($0 * 7 + 3) % classCount) }
}

/// Computes the mean cross-entropy in Double, straight from the definition: the target of a
/// row puts `1 - smoothing + smoothing / C` on its label and `smoothing / C` elsewhere.
private func referenceCrossEntropy(_ logits: Matrix, _ labels: [Int32], smoothing: Double = 0)
  -> Double
{
  var sum = 0.0
  for i in 0..<logits.rows {
    let row = logits.row(i).map(Double.init)
    let maximum = row.max()!
    let logSumExp = log(row.map { exp($0 - maximum) }.reduce(0, +)) + maximum
    for (j, x) in row.enumerated() {
      let target = (j == Int(labels[i]) ? 1 - smoothing : 0) + smoothing / Double(row.count)
      sum += target * (logSumExp - x)
    }
  }
  return sum / Double(logits.rows)
}

@Test func crossEntropyOfUniformLogitsIsLogC() {
  let n = 4
  let classCount = 10
  let logits = Matrix(rows: n, columns: classCount, values: Array(repeating: 3.7, count: 40))
  let gradient = Matrix(rows: n, columns: classCount)
  let y = labels(n: n, classCount: classCount)
  let loss = softmaxCrossEntropy(logits: logits, labels: y, gradient: gradient)
  #expect(abs(loss - Float(log(10.0))) < 1e-6)
  for i in 0..<n {
    for j in 0..<classCount {
      let expected = (0.1 - (j == Int(y[i]) ? 1 : 0)) / Float(n)
      #expect(abs(gradient[i, j] - expected) < 1e-7)
    }
  }
}

@Test(arguments: [(1, 2), (5, 10), (8, 3), (3, 1)])
func crossEntropyMatchesFiniteDifferences(shape: (Int, Int)) {
  let (n, classCount) = shape
  let logits = randomMatrix(rows: n, columns: classCount, seed: 11, scale: 3)
  let gradient = Matrix(rows: n, columns: classCount)
  let scratch = Matrix(rows: n, columns: classCount)
  let y = labels(n: n, classCount: classCount)
  let loss = softmaxCrossEntropy(logits: logits, labels: y, gradient: gradient)
  #expect(abs(Double(loss) - referenceCrossEntropy(logits, y)) < 1e-5)

  let result = GradientCheck().compare(input: logits, analyticGradient: gradient) {
    softmaxCrossEntropy(logits: logits, labels: y, gradient: scratch)
  }
  #expect(result.maximumRelativeError < 1e-2, "\(result)")
}

@Test(arguments: [(5, 10), (1, 2), (4, 3)])
func crossEntropyWithLabelSmoothing(shape: (Int, Int)) {
  let (n, classCount) = shape
  let smoothing: Float = 0.1
  let logits = randomMatrix(rows: n, columns: classCount, seed: 14, scale: 3)
  let gradient = Matrix(rows: n, columns: classCount)
  let scratch = Matrix(rows: n, columns: classCount)
  let y = labels(n: n, classCount: classCount)
  let loss = softmaxCrossEntropy(
    logits: logits, labels: y, gradient: gradient, labelSmoothing: smoothing)
  let expected = referenceCrossEntropy(logits, y, smoothing: Double(smoothing))
  #expect(abs(Double(loss) - expected) < 1e-5)
  #expect(abs(Double(loss) - referenceCrossEntropy(logits, y)) > 1e-3)

  // Each row of the gradient is softmax minus a target that sums to 1, so it sums to 0.
  for i in 0..<n {
    #expect(abs(gradient.row(i).reduce(0, +)) < 1e-6)
  }
  let result = GradientCheck().compare(input: logits, analyticGradient: gradient) {
    softmaxCrossEntropy(logits: logits, labels: y, gradient: scratch, labelSmoothing: smoothing)
  }
  #expect(result.maximumRelativeError < 1e-2, "\(result)")
}

@Test func crossEntropyIsStableForLargeLogits() {
  let logits = Matrix(
    rows: 2, columns: 3, values: [1e4, 0, -1e4, 88, 89, -500])
  let gradient = Matrix(rows: 2, columns: 3)
  let y: [Int32] = [1, 1]
  let loss = softmaxCrossEntropy(logits: logits, labels: y, gradient: gradient)
  // Row 0: log-sum-exp is 1e4 (the other terms underflow), so the loss is 1e4 - 0.
  // Row 1: log(e^88 + e^89) - 89 = log(1 + e^-1).
  let expected = (1e4 + log(1 + exp(-1.0))) / 2
  #expect(loss.isFinite)
  #expect(abs(Double(loss) - expected) < 1e-3)
  let g = gradient.array
  #expect(g.allSatisfy { $0.isFinite })
  #expect(abs(g[0] - 0.5) < 1e-7)
  #expect(abs(g[1] + 0.5) < 1e-7)
  #expect(abs(g[4] - Float((1 / (1 + exp(-1.0)) - 1) / 2)) < 1e-6)
}

@Test func crossEntropyFiniteDifferencesWithSaturatedSoftmax() {
  let logits = randomMatrix(rows: 6, columns: 5, seed: 12, scale: 50)
  let gradient = Matrix(rows: 6, columns: 5)
  let scratch = Matrix(rows: 6, columns: 5)
  let y = labels(n: 6, classCount: 5)
  _ = softmaxCrossEntropy(logits: logits, labels: y, gradient: gradient)
  // The loss is near 100, so one Float unit in its last place is about 1e-5: a large step
  // keeps that rounding small next to the differences, and the loss is nearly linear here.
  let check = GradientCheck(step: 0.25, floor: 1e-2)
  let result = check.compare(input: logits, analyticGradient: gradient) {
    softmaxCrossEntropy(logits: logits, labels: y, gradient: scratch)
  }
  #expect(result.maximumRelativeError < 1e-2, "\(result)")
}

@Test func crossEntropyCountsCorrectRows() {
  let logits = Matrix(
    rows: 4, columns: 3, values: [2, 1, 0, 0, 5, 1, 1, 1, 1, 0, 0, 3])
  let gradient = Matrix(rows: 4, columns: 3)
  // Row 2 ties: the argmax is the lowest index, 0, so label 1 is not correct.
  let y: [Int32] = [0, 2, 1, 2]
  var correct = -1
  _ = softmaxCrossEntropy(logits: logits, labels: y, gradient: gradient, correctCount: &correct)
  #expect(correct == 2)
}

@Test func crossEntropyGradientMayAliasLogits() {
  let logits = randomMatrix(rows: 5, columns: 7, seed: 13, scale: 2)
  let y = labels(n: 5, classCount: 7)
  let separate = Matrix(rows: 5, columns: 7)
  let expectedLoss = softmaxCrossEntropy(logits: logits, labels: y, gradient: separate)
  let inPlaceLoss = softmaxCrossEntropy(logits: logits, labels: y, gradient: logits)
  #expect(inPlaceLoss == expectedLoss)
  #expect(logits.array == separate.array)
}

@Test func crossEntropyWritesOnlyInsideGradient() {
  let logits = randomMatrix(rows: 4, columns: 6, seed: 14)
  let stridedLogits = PaddedMatrix(rows: 4, columns: 6)
  stridedLogits.view.copy(from: logits)
  let padded = PaddedMatrix(rows: 4, columns: 6)
  let dense = Matrix(rows: 4, columns: 6)
  let y = labels(n: 4, classCount: 6)
  let stridedLoss = softmaxCrossEntropy(
    logits: stridedLogits.view, labels: y, gradient: padded.view)
  let denseLoss = softmaxCrossEntropy(logits: logits, labels: y, gradient: dense)
  #expect(stridedLoss == denseLoss)
  #expect(padded.changedPaddingCount == 0)
  #expect(padded.unwrittenElementCount == 0)
  #expect(padded.view.array == dense.array)
}
