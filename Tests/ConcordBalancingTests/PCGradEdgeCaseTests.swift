import ConcordBalancing
import Testing

private let base: [Double] = [1, 2, 0, -1, 0.5]

private func runPCGrad(_ gradients: [[Double]], order: [[Int]]) -> BalancingResult {
  var balancer = PCGrad(taskCount: gradients.count)
  return balancer.balance(BalancingInput(gradients: gradients, taskOrder: order))
}

@Test func pcGradSkipsZeroGradient() {
  let first: [Double] = [1, 0, 2, -1]
  let second: [Double] = [-2, 1, 0, 1]
  let zero: [Double] = [0, 0, 0, 0]
  let order = [[1, 2], [2, 0], [0, 1]]
  let result = runPCGrad([first, zero, second], order: order)
  let withoutZero = runPCGrad([first, second], order: [[1], [0]])

  #expect(result.coefficients.allSatisfy { $0.isFinite })
  #expect(result.cosineSimilarities.allSatisfy { $0.isFinite })
  let actual = direction(coefficients: result.coefficients, gradients: [first, zero, second])
  let expected = direction(coefficients: withoutZero.coefficients, gradients: [first, second])
  #expect(relativeError(actual, expected) <= 1e-12)
  #expect(result.projectionCount == withoutZero.projectionCount)
  #expect(result.cosineSimilarities[0 * 3 + 1] == 0)
  #expect(result.cosineSimilarities[1 * 3 + 1] == 0)
  #expect(result.cosineSimilarities[2 * 3 + 1] == 0)
}

@Test func pcGradAllZeroGradients() {
  let zero: [Double] = [0, 0, 0]
  let result = runPCGrad([zero, zero], order: [[1], [0]])
  #expect(result.coefficients == [1, 1])
  #expect(result.projectionCount == 0)
  #expect(result.cosineSimilarities == [0, 0, 0, 0])
}

@Test func pcGradIdenticalGradients() {
  let result = runPCGrad([base, base], order: [[1], [0]])
  #expect(result.coefficients == [1, 1])
  #expect(result.projectionCount == 0)
  #expect(abs(result.cosineSimilarities[1] - 1) <= 1e-12)
}

@Test func pcGradParallelGradients() {
  let scaled = base.map { 3 * $0 }
  let result = runPCGrad([base, scaled], order: [[1], [0]])
  #expect(result.coefficients == [1, 1])
  #expect(result.projectionCount == 0)
}

@Test func pcGradOppositeGradientsCancel() {
  let opposite = base.map { -$0 }
  let result = runPCGrad([base, opposite], order: [[1], [0]])
  let actual = direction(coefficients: result.coefficients, gradients: [base, opposite])
  #expect(result.projectionCount == 2)
  #expect(actual.allSatisfy { abs($0) <= 1e-12 })
  #expect(abs(result.cosineSimilarities[1] + 1) <= 1e-12)
}

@Test func pcGradOppositeScaledGradientsCancel() {
  let opposite = base.map { -2 * $0 }
  let result = runPCGrad([base, opposite], order: [[1], [0]])
  let actual = direction(coefficients: result.coefficients, gradients: [base, opposite])
  #expect(result.projectionCount == 2)
  #expect(actual.allSatisfy { abs($0) <= 1e-12 })
}

@Test func pcGradOrthogonalGradientsUnchanged() {
  let orthogonal: [Double] = [2, -1, 5, 0, 0]
  let result = runPCGrad([base, orthogonal], order: [[1], [0]])
  #expect(result.coefficients == [1, 1])
  #expect(result.projectionCount == 0)
}

@Test(arguments: BalancerKind.allCases)
func singleTaskPassesThrough(kind: BalancerKind) {
  var balancer = kind.makeBalancer(taskCount: 1)
  let input = BalancingInput(gradients: [base], losses: [0.7], taskOrder: [[]])
  let first = balancer.balance(input)
  let second = balancer.balance(input)
  #expect(first.coefficients == [1])
  #expect(first.updatedWeights == [1])
  #expect(second.coefficients == [1])
  #expect(first.projectionCount == 0)
  #expect(first.cosineSimilarities == [1])
}
