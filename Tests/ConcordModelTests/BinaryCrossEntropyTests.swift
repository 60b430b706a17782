import ConcordTensors
import Foundation
import Testing

@testable import ConcordModel

/// Targets of 0 and 1 in a fixed pattern that has both values in every row of width 2 or more.
private func binaryTargets(rows: Int, columns: Int) -> Matrix {
  Matrix(
    rows: rows, columns: columns,
    values: (0..<rows * columns).map { Float(($0 * 5 + $0 / columns) % 2) })
}

/// Computes the mean binary cross-entropy in Double, from `-y log(s) - (1 - y) log(1 - s)`.
private func referenceBCE(_ logits: Matrix, _ targets: Matrix) -> Double {
  let x = logits.array
  let y = targets.array
  var sum = 0.0
  for k in x.indices {
    let s = 1 / (1 + exp(-Double(x[k])))
    let target = Double(y[k])
    sum += -target * log(s) - (1 - target) * log(1 - s)
  }
  return sum / Double(x.count)
}

@Test func bceOfZeroLogitsIsLogTwo() {
  let logits = Matrix(rows: 3, columns: 4)
  let targets = binaryTargets(rows: 3, columns: 4)
  let gradient = Matrix(rows: 3, columns: 4)
  let value = binaryCrossEntropyWithLogits(logits: logits, targets: targets, gradient: gradient)
  #expect(abs(value - Float(log(2.0))) < 1e-7)
  for (g, y) in zip(gradient.array, targets.array) {
    #expect(abs(g - (0.5 - y) / 12) < 1e-8)
  }
}

@Test(arguments: [(1, 1), (4, 4), (9, 3), (2, 11)])
func bceMatchesFiniteDifferences(shape: (Int, Int)) {
  let (n, labelCount) = shape
  let logits = randomMatrix(rows: n, columns: labelCount, seed: 51, scale: 2)
  let targets = binaryTargets(rows: n, columns: labelCount)
  let gradient = Matrix(rows: n, columns: labelCount)
  let scratch = Matrix(rows: n, columns: labelCount)
  let value = binaryCrossEntropyWithLogits(logits: logits, targets: targets, gradient: gradient)
  #expect(abs(Double(value) - referenceBCE(logits, targets)) < 1e-6)
  // The gradient is at most 1 / (n K), so the floor sits below that.
  let check = GradientCheck(floor: 1e-3)
  let result = check.compare(input: logits, analyticGradient: gradient) {
    binaryCrossEntropyWithLogits(logits: logits, targets: targets, gradient: scratch)
  }
  #expect(result.maximumRelativeError < 1e-2, "\(result)")
}

@Test func bceIsStableForLargeLogits() {
  // Right with confidence: loss about exp(-|x|), gradient about 0. Wrong: loss |x|,
  // gradient +-1 / (n K).
  let logits = Matrix(rows: 2, columns: 4, values: [100, -100, 1e4, -1e4, 100, -100, 1e4, -1e4])
  let targets = Matrix(rows: 2, columns: 4, values: [1, 0, 1, 0, 0, 1, 0, 1])
  let gradient = Matrix(rows: 2, columns: 4)
  let value = binaryCrossEntropyWithLogits(logits: logits, targets: targets, gradient: gradient)
  #expect(value.isFinite)
  #expect(abs(Double(value) - (100 + 100 + 1e4 + 1e4) / 8) < 1e-2)
  let g = gradient.array
  #expect(g.allSatisfy { $0.isFinite })
  for k in 0..<4 { #expect(abs(g[k]) < 1e-30, "entry \(k)") }
  for k in 4..<8 {
    let expected: Float = k % 2 == 0 ? 1.0 / 8 : -1.0 / 8
    #expect(abs(g[k] - expected) < 1e-8, "entry \(k)")
  }
}

@Test func bceFiniteDifferencesWithLargeLogits() {
  let logits = randomMatrix(rows: 4, columns: 4, seed: 52, scale: 30)
  let targets = binaryTargets(rows: 4, columns: 4)
  let gradient = Matrix(rows: 4, columns: 4)
  let scratch = Matrix(rows: 4, columns: 4)
  _ = binaryCrossEntropyWithLogits(logits: logits, targets: targets, gradient: gradient)
  // The loss is near 10, so a larger step keeps its rounding small next to the difference.
  let check = GradientCheck(step: 0.1, floor: 1e-2)
  let result = check.compare(input: logits, analyticGradient: gradient) {
    binaryCrossEntropyWithLogits(logits: logits, targets: targets, gradient: scratch)
  }
  #expect(result.maximumRelativeError < 1e-2, "\(result)")
}

@Test func bceWritesOnlyInsideGradient() {
  let logits = randomMatrix(rows: 3, columns: 5, seed: 53)
  let targets = binaryTargets(rows: 3, columns: 5)
  let stridedLogits = PaddedMatrix(rows: 3, columns: 5)
  let stridedTargets = PaddedMatrix(rows: 3, columns: 5)
  stridedLogits.view.copy(from: logits)
  stridedTargets.view.copy(from: targets)
  let padded = PaddedMatrix(rows: 3, columns: 5)
  let dense = Matrix(rows: 3, columns: 5)
  let stridedValue = binaryCrossEntropyWithLogits(
    logits: stridedLogits.view, targets: stridedTargets.view, gradient: padded.view)
  let denseValue = binaryCrossEntropyWithLogits(
    logits: logits, targets: targets, gradient: dense)
  #expect(stridedValue == denseValue)
  #expect(padded.changedPaddingCount == 0)
  #expect(padded.unwrittenElementCount == 0)
  #expect(padded.view.array == dense.array)
}
