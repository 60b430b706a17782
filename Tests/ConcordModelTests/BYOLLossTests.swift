import ConcordTensors
import Foundation
import Testing

@testable import ConcordModel

/// Computes the BYOL loss in Double: the mean over rows of `2 - 2 cos(p_i, t_i)`.
private func referenceBYOL(_ p: Matrix, _ t: Matrix) -> Double {
  var sum = 0.0
  for i in 0..<p.rows {
    let a = p.row(i).map(Double.init)
    let b = t.row(i).map(Double.init)
    let dot = zip(a, b).map(*).reduce(0, +)
    let aNorm = max(a.map { $0 * $0 }.reduce(0, +).squareRoot(), 1e-12)
    let bNorm = max(b.map { $0 * $0 }.reduce(0, +).squareRoot(), 1e-12)
    sum += 2 - 2 * dot / (aNorm * bNorm)
  }
  return sum / Double(p.rows)
}

/// Returns `base * sign + noise * scale`, element by element.
private func perturbed(_ base: Matrix, sign: Float, noiseScale: Float, seed: UInt64) -> Matrix {
  let noise = randomMatrix(rows: base.rows, columns: base.columns, seed: seed, scale: noiseScale)
  return Matrix(
    rows: base.rows, columns: base.columns,
    values: zip(base.array, noise.array).map { sign * $0 + $1 })
}

@Test func byolOfIdenticalDirectionsIsZero() {
  let t = randomMatrix(rows: 5, columns: 8, seed: 31)
  let p = Matrix(rows: 5, columns: 8, values: t.array.map { 3 * $0 })
  let gradient = Matrix(rows: 5, columns: 8)
  let value = byolLoss(predictions: p, targets: t, gradient: gradient)
  #expect(abs(value) < 1e-6)
  #expect(gradient.array.allSatisfy { abs($0) < 1e-6 })
}

@Test func byolOfOppositeDirectionsIsFour() {
  let t = randomMatrix(rows: 5, columns: 8, seed: 32)
  let p = Matrix(rows: 5, columns: 8, values: t.array.map { -0.5 * $0 })
  let gradient = Matrix(rows: 5, columns: 8)
  let value = byolLoss(predictions: p, targets: t, gradient: gradient)
  #expect(abs(value - 4) < 1e-6)
  // Opposite directions are a maximum of the loss, so the gradient vanishes there too.
  #expect(gradient.array.allSatisfy { abs($0) < 1e-5 })
}

@Test(arguments: [(1, 3), (4, 8), (7, 16), (16, 5)])
func byolMatchesFiniteDifferences(shape: (Int, Int)) {
  let (m, d) = shape
  let p = randomMatrix(rows: m, columns: d, seed: 33)
  let t = randomMatrix(rows: m, columns: d, seed: 34)
  let gradient = Matrix(rows: m, columns: d)
  let scratch = Matrix(rows: m, columns: d)
  let value = byolLoss(predictions: p, targets: t, gradient: gradient)
  #expect(abs(Double(value) - referenceBYOL(p, t)) < 1e-6)
  let result = GradientCheck().compare(input: p, analyticGradient: gradient) {
    byolLoss(predictions: p, targets: t, gradient: scratch)
  }
  #expect(result.maximumRelativeError < 1e-2, "\(result)")
}

@Test(arguments: [Float(1), Float(-1)])
func byolGradientNearlyParallelOrOpposite(sign: Float) {
  // Targets within about a degree of the predictions (or of their negatives), where the
  // gradient is small and the loss is close to 0 (or 4).
  let p = randomMatrix(rows: 4, columns: 6, seed: 35)
  let t = perturbed(p, sign: sign, noiseScale: 1e-2, seed: 36)
  let gradient = Matrix(rows: 4, columns: 6)
  let value = byolLoss(predictions: p, targets: t, gradient: gradient)
  #expect(abs(Double(value) - referenceBYOL(p, t)) < 1e-6)
  // Gradients near 1e-4 are finer than a Float loss near 4 resolves, so the numeric side
  // differentiates the Double formula minus its value at the extreme, 0 or 4.
  let extreme = sign > 0 ? 0.0 : 4.0
  let check = GradientCheck(step: 1e-3, floor: 1e-5)
  let result = check.compare(input: p, analyticGradient: gradient) {
    Float(referenceBYOL(p, t) - extreme)
  }
  #expect(result.maximumRelativeError < 1e-2, "\(result)")
}

@Test func byolGuardsZeroRows() {
  let p = randomMatrix(rows: 3, columns: 4, seed: 37)
  let t = randomMatrix(rows: 3, columns: 4, seed: 38)
  for k in 0..<4 {
    p[0, k] = 0
    t[1, k] = 0
  }
  let gradient = Matrix(rows: 3, columns: 4)
  let value = byolLoss(predictions: p, targets: t, gradient: gradient)
  #expect(value.isFinite)
  #expect(abs(Double(value) - referenceBYOL(p, t)) < 1e-6)
  #expect(gradient.array.allSatisfy { $0.isFinite })
  // A zero target has no direction to pull towards.
  #expect(gradient.row(1).allSatisfy { $0 == 0 })
}

@Test func byolGradientIsOrthogonalToPredictions() {
  let p = randomMatrix(rows: 6, columns: 9, seed: 39, scale: 4)
  let t = randomMatrix(rows: 6, columns: 9, seed: 40)
  let gradient = Matrix(rows: 6, columns: 9)
  _ = byolLoss(predictions: p, targets: t, gradient: gradient)
  for i in 0..<6 {
    let along = zip(p.row(i), gradient.row(i)).map { Double($0) * Double($1) }.reduce(0, +)
    #expect(abs(along) < 1e-6, "row \(i)")
  }
}

@Test func byolWritesOnlyInsideGradient() {
  let p = randomMatrix(rows: 5, columns: 3, seed: 41)
  let t = randomMatrix(rows: 5, columns: 3, seed: 42)
  let stridedPredictions = PaddedMatrix(rows: 5, columns: 3)
  let stridedTargets = PaddedMatrix(rows: 5, columns: 3)
  stridedPredictions.view.copy(from: p)
  stridedTargets.view.copy(from: t)
  let padded = PaddedMatrix(rows: 5, columns: 3)
  let dense = Matrix(rows: 5, columns: 3)
  let stridedValue = byolLoss(
    predictions: stridedPredictions.view, targets: stridedTargets.view, gradient: padded.view)
  let denseValue = byolLoss(predictions: p, targets: t, gradient: dense)
  #expect(stridedValue == denseValue)
  #expect(padded.changedPaddingCount == 0)
  #expect(padded.unwrittenElementCount == 0)
  #expect(padded.view.array == dense.array)
  #expect(stridedTargets.changedPaddingCount == 0)
}
