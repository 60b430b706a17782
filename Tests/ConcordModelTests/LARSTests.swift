import ConcordTensors
import Foundation
import Testing

@testable import ConcordModel

/// Returns a layout of one `[2, 2]` weight and one `[2]` bias, six parameters.
private func tinyLayout() -> ParameterLayout {
  var layout = ParameterLayout()
  layout.append("layer.weight", shape: [2, 2])
  layout.append("layer.bias", shape: [2])
  return layout
}

/// Runs `steps` LARS updates in Double with constant gradients and returns the parameters after the
/// last one.
///
/// Weights are the tensors of more than one dimension.
private func referenceLARS(
  layout: ParameterLayout, start: [Double], gradients: [Double], steps: Int, rate: Double,
  momentum: Double, weightDecay: Double, eta: Double
) -> [Double] {
  var w = start
  var v = Array(repeating: 0.0, count: start.count)
  for _ in 0..<steps {
    for slot in layout.slots {
      let range = slot.offset..<(slot.offset + slot.count)
      let isWeight = slot.shape.count > 1
      let weightNorm = range.map { w[$0] * w[$0] }.reduce(0, +).squareRoot()
      let gradientNorm = range.map { gradients[$0] * gradients[$0] }.reduce(0, +).squareRoot()
      let denominator = gradientNorm + weightDecay * weightNorm
      let ratio =
        isWeight && weightNorm > 0 && denominator > 0 ? eta * weightNorm / denominator : 1
      let decay = isWeight ? weightDecay : 0
      for i in range {
        v[i] = momentum * v[i] + rate * ratio * (gradients[i] + decay * w[i])
        w[i] -= v[i]
      }
    }
  }
  return w
}

/// One step by hand: ||w|| = 5 and ||g|| = 1, so the trust ratio is
/// 0.01 * 5 / (1 + 0.1 * 5) = 1/30 and the weight moves by 0.5 / 30 * (g + 0.1 w); the bias
/// moves by 0.5 g, without trust ratio or weight decay.
@Test func larsFirstStepMatchesHandComputation() {
  let parameters = FloatBuffer([3, 4, 0, 0, 1, -1])
  let gradients: [Float] = [0.6, 0.8, 0, 0, 0.5, 0.25]
  let lars = LARS(
    layout: tinyLayout(), learningRate: 0.5, momentum: 0.9, weightDecay: 0.1,
    trustCoefficient: 0.01)
  lars.update(parameters: parameters.baseAddress, gradients: gradients, count: 6)

  #expect(lars.stepCount == 1)
  // eta and the weight decay are Float, so the ratio is 1/30 to Float precision.
  #expect(abs(lars.trustRatios[0] - 1.0 / 30) < 1e-8)
  #expect(lars.trustRatios[1] == 1)
  let expectedVelocity: [Float] = [0.015, 0.02, 0, 0, 0.25, 0.125]
  let expectedParameters: [Float] = [2.985, 3.98, 0, 0, 0.75, -1.125]
  for i in 0..<6 {
    #expect(abs(lars.velocity.baseAddress[i] - expectedVelocity[i]) < 1e-7, "velocity \(i)")
    #expect(abs(parameters.baseAddress[i] - expectedParameters[i]) < 1e-6, "parameter \(i)")
  }
}

/// Three steps carry the momentum: they match the same rule computed in Double.
@Test func larsMomentumMatchesReferenceOverThreeSteps() {
  let start: [Float] = [0.5, -1.5, 2, 0.25, 0.1, -0.3]
  let gradients: [Float] = [0.2, 0.1, -0.4, 0.3, -0.05, 0.6]
  let layout = tinyLayout()
  let parameters = FloatBuffer(start)
  let lars = LARS(
    layout: layout, learningRate: 0.2, momentum: 0.8, weightDecay: 0.05, trustCoefficient: 0.1)
  for _ in 0..<3 {
    lars.update(parameters: parameters.baseAddress, gradients: gradients, count: 6)
  }
  let expected = referenceLARS(
    layout: layout, start: start.map(Double.init), gradients: gradients.map(Double.init),
    steps: 3, rate: 0.2, momentum: 0.8, weightDecay: 0.05, eta: 0.1)
  for i in 0..<6 {
    let relative = abs(Double(parameters.baseAddress[i]) - expected[i]) / max(abs(expected[i]), 1)
    #expect(relative < 1e-6, "parameter \(i): \(parameters.baseAddress[i]) vs \(expected[i])")
  }
}

/// A weight of zeros has no scale to trust, so its ratio is 1 and it moves by the plain rate.
@Test func larsZeroWeightTakesPlainStep() {
  let parameters = FloatBuffer([0, 0, 0, 0, 0, 0])
  let gradients: [Float] = [1, -2, 0.5, 0, 3, 4]
  let lars = LARS(layout: tinyLayout(), learningRate: 0.1, weightDecay: 0.5)
  lars.update(parameters: parameters.baseAddress, gradients: gradients, count: 6)
  #expect(lars.trustRatios == [1, 1])
  for i in 0..<6 {
    #expect(abs(parameters.baseAddress[i] + 0.1 * gradients[i]) < 1e-7, "parameter \(i)")
  }
}

/// The checkpoint names of each optimizer's state.
@Test func optimizerStateNames() {
  #expect(
    OptimizerKind.adam.tensorName(state: "first_moment", tensor: "encoder.0.weight")
      == "adam.first_moment.encoder.0.weight")
  #expect(
    OptimizerKind.lars.tensorName(state: "momentum", tensor: "encoder.0.bias")
      == "lars.momentum.encoder.0.bias")
  #expect(OptimizerKind.adam.stepCounterName == "adam.step")
  #expect(OptimizerKind.lars.stepCounterName == "lars.step")
  let lars = LARS(layout: tinyLayout(), learningRate: 1)
  #expect(lars.stateBuffers.count == OptimizerKind.lars.stateNames.count)
  #expect(lars.stateBuffers[0] === lars.velocity)
  let adam = Adam(parameterCount: 6)
  #expect(adam.stateBuffers.count == OptimizerKind.adam.stateNames.count)
  #expect(adam.stateBuffers[0] === adam.firstMoment)
  #expect(adam.stateBuffers[1] === adam.secondMoment)
}
