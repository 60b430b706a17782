import ConcordTensors
import Foundation
import Testing

@testable import ConcordModel

/// Runs `steps` Adam updates in Double from the textbook form with bias-corrected moments,
/// with gradient `gradients[step][i]`, and returns the parameters after each step.
private func referenceAdam(
  start: [Double], gradients: [[Double]], learningRate: Double, beta1: Double, beta2: Double,
  epsilon: Double
) -> [[Double]] {
  var p = start
  var m = Array(repeating: 0.0, count: start.count)
  var v = Array(repeating: 0.0, count: start.count)
  var history = [[Double]]()
  for (step, g) in gradients.enumerated() {
    let t = Double(step + 1)
    for i in p.indices {
      m[i] = beta1 * m[i] + (1 - beta1) * g[i]
      v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i]
      let mHat = m[i] / (1 - pow(beta1, t))
      let vHat = v[i] / (1 - pow(beta2, t))
      p[i] -= learningRate * mHat / (vHat.squareRoot() + epsilon)
    }
    history.append(p)
  }
  return history
}

@Test func adamFirstStepMovesBySignTimesLearningRate() {
  let start: [Float] = [0.5, -1.25, 3, 0, 7, -2]
  let gradients: [Float] = [0.3, -2e-3, 40, -1e-2, 0, 5e-4]
  let parameters = FloatBuffer(start)
  let adam = Adam(parameterCount: 6, learningRate: 1e-3)
  adam.update(parameters: parameters.baseAddress, gradients: gradients, count: 6)
  #expect(adam.stepCount == 1)
  for i in 0..<6 {
    // m_hat = g and v_hat = g^2 after one step, so the move is lr * g / (|g| + eps).
    let expected: Float = gradients[i] == 0 ? 0 : (gradients[i] > 0 ? -1e-3 : 1e-3)
    #expect(abs((parameters.baseAddress[i] - start[i]) - expected) < 1e-6, "parameter \(i)")
  }
}

@Test func adamMatchesHandComputedSteps() {
  let start: [Float] = [1, -0.5, 0.25, 2]
  let gradientSteps: [[Float]] = [
    [0.1, -0.2, 0.3, 0], [0.05, 0.4, -0.3, 1e-3], [-0.2, 0.1, 0.3, -1e-3], [1, -1, 0.5, 0.2],
  ]
  let learningRate: Float = 0.01
  let beta1: Float = 0.8
  let beta2: Float = 0.99
  let epsilon: Float = 1e-6
  let expected = referenceAdam(
    start: start.map(Double.init), gradients: gradientSteps.map { $0.map(Double.init) },
    learningRate: Double(learningRate), beta1: Double(beta1), beta2: Double(beta2),
    epsilon: Double(epsilon))

  let parameters = FloatBuffer(start)
  let adam = Adam(
    parameterCount: 4, learningRate: learningRate, beta1: beta1, beta2: beta2, epsilon: epsilon)
  for (step, gradients) in gradientSteps.enumerated() {
    adam.update(parameters: parameters.baseAddress, gradients: gradients, count: 4)
    for i in 0..<4 {
      let difference = abs(Double(parameters.baseAddress[i]) - expected[step][i])
      #expect(difference < 1e-6, "step \(step + 1), parameter \(i)")
    }
  }
  #expect(adam.stepCount == 4)
}

@Test func adamSecondStepByHand() {
  // One parameter, g = 1 then g = -1, lr = 0.1, beta1 = 0.9, beta2 = 0.999, eps = 0:
  // step 1: m = 0.1, v = 0.001, m_hat = 1, v_hat = 1, p = 1 - 0.1 = 0.9.
  // step 2: m = 0.09 - 0.1 = -0.01, v = 0.000999 + 0.001 = 0.001999,
  //         m_hat = -0.01 / 0.19, v_hat = 0.001999 / 0.001999 = 1, p = 0.9 + 0.1 / 19.
  let parameters = FloatBuffer([1])
  let adam = Adam(parameterCount: 1, learningRate: 0.1, epsilon: 0)
  adam.update(parameters: parameters.baseAddress, gradients: [1], count: 1)
  #expect(abs(parameters.baseAddress[0] - 0.9) < 1e-7)
  adam.update(parameters: parameters.baseAddress, gradients: [-1], count: 1)
  #expect(abs(Double(parameters.baseAddress[0]) - (0.9 + 0.1 / 19)) < 1e-6)
}

@Test func adamResumesFromSavedStateBitIdentically() {
  let count = 37
  let gradientSteps = (0..<6).map { step in
    randomMatrix(rows: 1, columns: count, seed: 60 + UInt64(step)).array
  }
  let start = randomMatrix(rows: 1, columns: count, seed: 70).array

  let uninterrupted = FloatBuffer(start)
  let adam = Adam(parameterCount: count, learningRate: 3e-3)
  for g in gradientSteps {
    adam.update(parameters: uninterrupted.baseAddress, gradients: g, count: count)
  }

  // Two steps, then a copy of the state into a fresh optimizer, then the other four.
  let resumed = FloatBuffer(start)
  let before = Adam(parameterCount: count, learningRate: 3e-3)
  for g in gradientSteps[0..<2] {
    before.update(parameters: resumed.baseAddress, gradients: g, count: count)
  }
  let after = Adam(parameterCount: count, learningRate: 3e-3)
  after.firstMoment = FloatBuffer(before.firstMoment.array)
  after.secondMoment = FloatBuffer(before.secondMoment.array)
  after.stepCount = before.stepCount
  for g in gradientSteps[2...] {
    after.update(parameters: resumed.baseAddress, gradients: g, count: count)
  }

  #expect(resumed.array == uninterrupted.array)
  #expect(after.firstMoment.array == adam.firstMoment.array)
  #expect(after.secondMoment.array == adam.secondMoment.array)
  #expect(after.stepCount == 6)
}

@Test func adamUsesChangedLearningRate() {
  let parameters = FloatBuffer([0, 0])
  let adam = Adam(parameterCount: 2, learningRate: 1e-3)
  adam.learningRate = 0.5
  adam.update(parameters: parameters.baseAddress, gradients: [2, -3], count: 2)
  #expect(abs(parameters.baseAddress[0] + 0.5) < 1e-6)
  #expect(abs(parameters.baseAddress[1] - 0.5) < 1e-6)
}
