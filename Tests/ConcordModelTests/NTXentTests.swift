import ConcordTensors
import Foundation
import Testing

@testable import ConcordModel

/// Computes the NT-Xent loss in Double, straight from the definition: normalise, take cosine
/// similarities over the temperature, and average the cross-entropy of each row's positive
/// over the other rows.
private func referenceNTXent(_ z: Matrix, temperature: Double) -> Double {
  let rows = z.rows
  let n = rows / 2
  let u: [[Double]] = (0..<rows).map { i in
    let row = z.row(i).map(Double.init)
    let norm = max(row.map { $0 * $0 }.reduce(0, +).squareRoot(), 1e-12)
    return row.map { $0 / norm }
  }
  var sum = 0.0
  for i in 0..<rows {
    var denominator = 0.0
    for j in 0..<rows where j != i {
      let similarity = zip(u[i], u[j]).map(*).reduce(0, +) / temperature
      denominator += exp(similarity)
    }
    let positive = zip(u[i], u[(i + n) % rows]).map(*).reduce(0, +) / temperature
    sum += log(denominator) - positive
  }
  return sum / Double(rows)
}

private let shapes: [(Int, Int)] = [
  (1, 3), (1, 8), (2, 3), (2, 7), (2, 16), (8, 3), (8, 5), (8, 16),
]

@Test(arguments: shapes)
func ntXentMatchesDoubleFormula(shape: (Int, Int)) {
  let (n, d) = shape
  let z = randomMatrix(rows: 2 * n, columns: d, seed: 21)
  let gradient = Matrix(rows: 2 * n, columns: d)
  let loss = NTXentLoss(rows: 2 * n, dimension: d)
  for temperature in [0.5, 0.2] {
    let value = loss(projections: z, temperature: Float(temperature), gradient: gradient)
    let expected = referenceNTXent(z, temperature: temperature)
    #expect(abs(Double(value) - expected) < 1e-5 * max(1, expected), "temperature \(temperature)")
  }
}

@Test(arguments: shapes)
func ntXentMatchesFiniteDifferences(shape: (Int, Int)) {
  let (n, d) = shape
  let z = randomMatrix(rows: 2 * n, columns: d, seed: 22)
  let gradient = Matrix(rows: 2 * n, columns: d)
  let scratch = Matrix(rows: 2 * n, columns: d)
  let loss = NTXentLoss(rows: 2 * n, dimension: d)
  for temperature: Float in [0.5, 0.2] {
    _ = loss(projections: z, temperature: temperature, gradient: gradient)
    let result = GradientCheck(step: 1e-2).compare(input: z, analyticGradient: gradient) {
      loss(projections: z, temperature: temperature, gradient: scratch)
    }
    #expect(result.maximumRelativeError < 1e-2, "temperature \(temperature): \(result)")
  }
}

@Test func ntXentWithOnePairIsZero() {
  let z = randomMatrix(rows: 2, columns: 4, seed: 23)
  let gradient = Matrix(rows: 2, columns: 4)
  gradient.fill(sentinel)
  let value = NTXentLoss(rows: 2, dimension: 4)(
    projections: z, temperature: 0.5, gradient: gradient)
  #expect(value == 0)
  #expect(gradient.array.allSatisfy { $0 == 0 })
}

@Test func ntXentGradientIsOrthogonalToEachRow() {
  // The loss depends only on directions, so scaling a row leaves it unchanged and the
  // gradient of each row has no component along that row.
  let z = randomMatrix(rows: 8, columns: 6, seed: 24, scale: 3)
  let gradient = Matrix(rows: 8, columns: 6)
  _ = NTXentLoss(rows: 8, dimension: 6)(projections: z, temperature: 0.5, gradient: gradient)
  for i in 0..<8 {
    let along = zip(z.row(i), gradient.row(i)).map { Double($0) * Double($1) }.reduce(0, +)
    let gradientNorm = gradient.row(i).map { Double($0) * Double($0) }.reduce(0, +).squareRoot()
    #expect(abs(along) < 1e-5 * max(gradientNorm, 1e-3), "row \(i)")
  }
}

@Test func ntXentStaysFiniteWithZeroRow() {
  let z = randomMatrix(rows: 4, columns: 5, seed: 25)
  for k in 0..<5 { z[1, k] = 0 }
  let gradient = Matrix(rows: 4, columns: 5)
  let value = NTXentLoss(rows: 4, dimension: 5)(
    projections: z, temperature: 0.5, gradient: gradient)
  #expect(value.isFinite)
  #expect(abs(Double(value) - referenceNTXent(z, temperature: 0.5)) < 1e-5)
  #expect(gradient.array.allSatisfy { $0.isFinite })
}

@Test func ntXentReusesWorkspaceExactly() {
  let loss = NTXentLoss(rows: 6, dimension: 4)
  let first = randomMatrix(rows: 6, columns: 4, seed: 26)
  let second = randomMatrix(rows: 6, columns: 4, seed: 27, scale: 5)
  let gradientBefore = Matrix(rows: 6, columns: 4)
  let gradientBetween = Matrix(rows: 6, columns: 4)
  let gradientAfter = Matrix(rows: 6, columns: 4)
  let before = loss(projections: first, temperature: 0.5, gradient: gradientBefore)
  _ = loss(projections: second, temperature: 0.1, gradient: gradientBetween)
  let after = loss(projections: first, temperature: 0.5, gradient: gradientAfter)
  #expect(before == after)
  #expect(gradientBefore.array == gradientAfter.array)
}

@Test func ntXentWritesOnlyInsideGradient() {
  let z = randomMatrix(rows: 6, columns: 5, seed: 28)
  let stridedProjections = PaddedMatrix(rows: 6, columns: 5)
  stridedProjections.view.copy(from: z)
  let padded = PaddedMatrix(rows: 6, columns: 5)
  let dense = Matrix(rows: 6, columns: 5)
  let loss = NTXentLoss(rows: 6, dimension: 5)
  let stridedValue = loss(
    projections: stridedProjections.view, temperature: 0.5, gradient: padded.view)
  let denseValue = loss(projections: z, temperature: 0.5, gradient: dense)
  #expect(stridedValue == denseValue)
  #expect(padded.changedPaddingCount == 0)
  #expect(padded.unwrittenElementCount == 0)
  #expect(padded.view.array == dense.array)
  #expect(stridedProjections.changedPaddingCount == 0)
}
