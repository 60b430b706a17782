import Foundation
import ConcordBalancing
import ConcordTensors
import Testing

private func input(_ stream: inout RandomStream, losses: [Double]) -> BalancingInput {
  let gradients = randomGradients(&stream, taskCount: losses.count, dimension: 30)
  let order = PCGrad.taskOrder(seed: 1, step: 0, taskCount: losses.count)
  return BalancingInput(gradients: gradients, losses: losses, taskOrder: order)
}

@Test(arguments: [BalancerKind.gradnorm, .pcgradGradnorm])
func initialLossesComeFromFirstCall(kind: BalancerKind) {
  var stream = RandomStream(seed: 3, purpose: .test)
  var balancer = kind.makeBalancer(taskCount: 3)
  #expect(balancer.initialLosses == nil)
  _ = balancer.balance(input(&stream, losses: [2, 1.5, 0.9]))
  #expect(balancer.initialLosses == [2, 1.5, 0.9])
  _ = balancer.balance(input(&stream, losses: [1, 1, 0.5]))
  #expect(balancer.initialLosses == [2, 1.5, 0.9])
}

@Test func restoredInitialLossesAreKept() {
  var stream = RandomStream(seed: 3, purpose: .test)
  var balancer = GradNorm(taskCount: 2)
  balancer.initialLosses = [4, 5]
  _ = balancer.balance(input(&stream, losses: [1, 1]))
  #expect(balancer.initialLosses == [4, 5])
}

@Test(arguments: [0.025, 0.5, 5.0])
func weightsStayPositiveAndSumToTaskCount(learningRate: Double) {
  var stream = RandomStream(seed: 8, purpose: .test)
  var balancer = GradNorm(taskCount: 4, weightLearningRate: learningRate)
  for step in 0..<200 {
    // One task's gradient grows tenfold, which pushes its weight down hard.
    var problem = input(&stream, losses: [1, 0.8, 1.2, 0.5 + Double(step % 7) / 10])
    for j in 0..<4 {
      problem.gram[j] *= 10
      problem.gram[j * 4] *= 10
    }
    problem.gradNormSquares[0] = problem.gram[0]
    let result = balancer.balance(problem)
    #expect(result.updatedWeights.allSatisfy { $0 > 0 }, "step \(step)")
    #expect(abs(result.updatedWeights.reduce(0, +) - 4) <= 1e-12, "step \(step)")
  }
}

@Test func floorKeepsConflictedWeightPositive() {
  var balancer = GradNorm(taskCount: 2, weightLearningRate: 10)
  balancer.initialLosses = [1, 1]
  let problem = BalancingInput(gradients: [[100.0, 0], [0, 0.01]], losses: [0.5, 1])
  let result = balancer.balance(problem)
  // w_0 = 1 - 10 * 100 is floored at 0.001 before the sum is brought back to 2.
  let floored = GradNorm.minimumTaskWeight
  let secondWeight = 1 + 10 * 0.01
  let scale = 2 / (floored + secondWeight)
  #expect(abs(result.updatedWeights[0] - floored * scale) <= 1e-15)
  #expect(abs(result.updatedWeights[1] - secondWeight * scale) <= 1e-12)
}

@Test func zeroInitialLossGivesNeutralRate() throws {
  var balancer = GradNorm(taskCount: 3)
  balancer.initialLosses = [0, 2, 1]
  let problem = BalancingInput(
    gradients: [[1.0, 0], [0, 2], [1, 1]], losses: [0.3, 1, 1])
  let result = balancer.balance(problem)
  let gradNorms = try #require(result.gradNorms)
  let meanGradNorm = gradNorms.reduce(0, +) / 3
  // Task 0 is neutral (target G_bar); r_1 = 0.5 / 0.75 and r_2 = 1 / 0.75.
  #expect(result.targets?[0] == meanGradNorm)
  #expect(abs((result.targets?[1] ?? 0) - meanGradNorm * pow(0.5 / 0.75, 1.5)) <= 1e-12)
  #expect(abs((result.targets?[2] ?? 0) - meanGradNorm * pow(1 / 0.75, 1.5)) <= 1e-12)
  #expect(result.updatedWeights.allSatisfy { $0.isFinite })
  #expect(!result.isWeightUpdateSkipped)
}

@Test func zeroLossesGiveNeutralRates() {
  var balancer = GradNorm(taskCount: 2)
  let problem = BalancingInput(gradients: [[1.0, 0], [0, 3]], losses: [0, 0])
  let result = balancer.balance(problem)
  #expect(result.targets?[0] == result.targets?[1])
  #expect(result.updatedWeights.allSatisfy { $0.isFinite })
}

@Test func nonFiniteLossSkipsWeightUpdate() {
  var balancer = GradNorm(taskCount: 2)
  balancer.taskWeights = [0.5, 1.5]
  balancer.initialLosses = [1, 1]
  let problem = BalancingInput(gradients: [[1.0, 0], [0, 3]], losses: [.nan, 1])
  let result = balancer.balance(problem)
  #expect(result.isWeightUpdateSkipped)
  #expect(result.updatedWeights == [0.5, 1.5])
  #expect(balancer.taskWeights == [0.5, 1.5])
  #expect(result.coefficients == [0.5, 1.5])
}

@Test func nonFiniteGradientSkipsWeightUpdate() {
  var balancer = GradNorm(taskCount: 2)
  let problem = BalancingInput(gradients: [[1.0, .infinity], [0, 3]], losses: [1, 1])
  let result = balancer.balance(problem)
  #expect(result.isWeightUpdateSkipped)
  #expect(balancer.taskWeights == [1, 1])
}

@Test(arguments: [BalancerKind.gradnorm, .pcgradGradnorm])
func restoredStateContinuesRun(kind: BalancerKind) {
  var stream = RandomStream(seed: 12, purpose: .test)
  let inputs = (0..<6).map { step in
    input(&stream, losses: [1 - 0.1 * Double(step), 1, 1 + 0.05 * Double(step)])
  }
  var uninterrupted = kind.makeBalancer(taskCount: 3)
  var results: [BalancingResult] = []
  for problem in inputs {
    results.append(uninterrupted.balance(problem))
  }

  var first = kind.makeBalancer(taskCount: 3)
  for problem in inputs[..<3] {
    _ = first.balance(problem)
  }
  var resumed = kind.makeBalancer(taskCount: 3)
  resumed.taskWeights = first.taskWeights
  resumed.initialLosses = first.initialLosses
  for (offset, problem) in inputs[3...].enumerated() {
    #expect(resumed.balance(problem) == results[3 + offset])
  }
}
