import Foundation
import ConcordTensors

@testable import ConcordBalancing

/// Returns `sum_t coefficients[t] * gradients[t]`.
func direction(coefficients: [Double], gradients: [[Double]]) -> [Double] {
  var sum = [Double](repeating: 0, count: gradients.first?.count ?? 0)
  for (coefficient, gradient) in zip(coefficients, gradients) {
    for k in sum.indices {
      sum[k] += coefficient * gradient[k]
    }
  }
  return sum
}

/// Returns `max_k |actual[k] - expected[k]| / max(1, max_k |expected[k]|)`, or infinity when the
/// lengths differ.
func relativeError(_ actual: [Double], _ expected: [Double]) -> Double {
  guard actual.count == expected.count else { return .infinity }
  let scale = max(1, expected.map(abs).max() ?? 0)
  var error = 0.0
  for (a, e) in zip(actual, expected) {
    error = max(error, abs(a - e))
  }
  return error / scale
}

func dot(_ a: [Double], _ b: [Double]) -> Double {
  zip(a, b).reduce(0) { $0 + $1.0 * $1.1 }
}

/// Returns `taskCount` standard normal vectors of `dimension` values.
func randomGradients(_ stream: inout RandomStream, taskCount: Int, dimension: Int) -> [[Double]] {
  (0..<taskCount).map { _ in (0..<dimension).map { _ in Double(stream.normal()) } }
}

/// Runs PCGrad on dense vectors, as algorithm 1 of "Gradient Surgery for Multi-Task Learning"
/// (Yu et al., 2020) states it.
///
/// Returns the direction `sum_i p_i` and the number of projections made.
func referencePCGrad(_ u: [[Double]], order: [[Int]]) -> (direction: [Double], projections: Int) {
  var sum = [Double](repeating: 0, count: u.first?.count ?? 0)
  var projections = 0
  for i in u.indices {
    var p = u[i]
    for j in order[i] {
      let normSquared = dot(u[j], u[j])
      let conflict = dot(p, u[j])
      guard normSquared > 0, conflict < 0 else { continue }
      for k in p.indices {
        p[k] -= conflict / normSquared * u[j][k]
      }
      projections += 1
    }
    for k in sum.indices {
      sum[k] += p[k]
    }
  }
  return (sum, projections)
}

/// Runs one GradNorm weight update on dense vectors, with norms over the whole vectors.
///
/// Returns the weights after the update, the gradient norms `G_t` and the targets.
func referenceGradNorm(
  gradients: [[Double]], weights: [Double], losses: [Double], initialLosses: [Double],
  alpha: Double, learningRate: Double
) -> (weights: [Double], gradNorms: [Double], targets: [Double]) {
  let count = Double(gradients.count)
  let norms = gradients.map { dot($0, $0).squareRoot() }
  let gradNorms = zip(weights, norms).map { $0 * $1 }
  let meanGradNorm = gradNorms.reduce(0, +) / count
  let ratios = zip(losses, initialLosses).map { $0 / $1 }
  let meanRatio = ratios.reduce(0, +) / count
  let targets = ratios.map { meanGradNorm * pow($0 / meanRatio, alpha) }
  var updated = weights.indices.map { t in
    let difference = gradNorms[t] - targets[t]
    let sign: Double = difference > 0 ? 1 : (difference < 0 ? -1 : 0)
    return max(weights[t] - learningRate * sign * norms[t], GradNorm.minimumTaskWeight)
  }
  let sum = updated.reduce(0, +)
  updated = updated.map { $0 * count / sum }
  return (updated, gradNorms, targets)
}
