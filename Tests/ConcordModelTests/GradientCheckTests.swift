import ConcordTensors
import Foundation
import Testing

@testable import ConcordModel

/// `L(x) = sum_i c_i x_i^2 / 2 + sin(x_i)`, in Double, and its gradient `c_i x_i + cos(x_i)`.
private func quadraticLoss(_ x: Matrix, coefficients: [Float]) -> Float {
  let values = x.array
  var sum = 0.0
  for i in values.indices {
    let v = Double(values[i])
    sum += Double(coefficients[i]) * v * v / 2 + sin(v)
  }
  return Float(sum)
}

private func quadraticGradient(_ x: Matrix, coefficients: [Float]) -> Matrix {
  let values = x.array
  return Matrix(
    rows: x.rows, columns: x.columns,
    values: values.indices.map { coefficients[$0] * values[$0] + cos(values[$0]) })
}

@Test func gradientCheckAcceptsCorrectGradient() {
  let x = PaddedMatrix(rows: 3, columns: 4)
  x.view.copy(from: randomMatrix(rows: 3, columns: 4, seed: 81))
  let coefficients = (0..<12).map { Float($0) / 4 }
  let gradient = quadraticGradient(x.view, coefficients: coefficients)
  let result = GradientCheck().compare(input: x.view, analyticGradient: gradient) {
    quadraticLoss(x.view, coefficients: coefficients)
  }
  #expect(result.checkedCount == 12)
  #expect(result.maximumRelativeError < 1e-3, "\(result)")
  #expect(x.changedPaddingCount == 0)
}

@Test func gradientCheckRejectsWrongGradient() {
  let x = randomMatrix(rows: 2, columns: 5, seed: 82)
  let coefficients = Array(repeating: Float(1), count: 10)
  let gradient = quadraticGradient(x, coefficients: coefficients)
  gradient[1, 3] *= 1.1
  gradient[1, 3] += 0.05
  let result = GradientCheck().compare(input: x, analyticGradient: gradient) {
    quadraticLoss(x, coefficients: coefficients)
  }
  #expect(result.maximumRelativeError > 2e-2, "\(result)")
  #expect(result.worstCoordinate == 8)
}

@Test func gradientCheckRestoresValuesExactly() {
  let values = randomMatrix(rows: 1, columns: 50, seed: 83).array.map { $0 * 1e3 + 0.1 }
  let buffer = FloatBuffer(values)
  let gradient = Array(repeating: Float(0), count: 50)
  let result = gradient.withUnsafeBufferPointer { analytic in
    GradientCheck(step: 0.37).compare(values: buffer.elements, analyticGradient: analytic) {
      0
    }
  }
  #expect(result.maximumRelativeError == 0)
  #expect(buffer.array == values)
}

@Test func gradientCheckSamplesLargeInputs() {
  let x = randomMatrix(rows: 40, columns: 30, seed: 84)
  let coefficients = Array(repeating: Float(0.5), count: 1200)
  let gradient = quadraticGradient(x, coefficients: coefficients)
  var evaluations = 0
  let check = GradientCheck(maximumCoordinateCount: 25, seed: 9)
  let result = check.compare(input: x, analyticGradient: gradient) {
    evaluations += 1
    return quadraticLoss(x, coefficients: coefficients)
  }
  #expect(result.checkedCount == 25)
  #expect(evaluations == 50)
  #expect(result.maximumRelativeError < 1e-2, "\(result)")
}

@Test func gradientCheckReportsNaN() {
  let x = randomMatrix(rows: 1, columns: 3, seed: 85)
  let gradient = Matrix(rows: 1, columns: 3, values: [0, .nan, 0])
  let result = GradientCheck().compare(input: x, analyticGradient: gradient) { 0 }
  #expect(result.maximumRelativeError.isNaN)
  #expect(result.worstCoordinate == 1)
}
