import ConcordBalancing
import Testing

@Test func balancerKindRawValues() {
  #expect(
    BalancerKind.allCases.map(\.rawValue) == ["equal", "gradnorm", "pcgrad", "pcgrad+gradnorm"])
  #expect(BalancerKind(rawValue: "pcgrad+gradnorm") == .pcgradGradnorm)
  #expect(BalancerKind(rawValue: "mgda") == nil)
}

@Test(arguments: BalancerKind.allCases)
func factoryMakesRequestedKind(kind: BalancerKind) {
  let balancer = kind.makeBalancer(taskCount: 3)
  #expect(balancer.kind == kind)
  #expect(balancer.taskCount == 3)
  #expect(balancer.taskWeights == [1, 1, 1])
  #expect(balancer.initialLosses == nil)
}

@Test func equalWeightingSumsGradients() {
  var balancer = EqualWeighting(taskCount: 3)
  let gradients: [[Double]] = [[1, -2], [-3, 0.5], [0, 4]]
  let result = balancer.balance(BalancingInput(gradients: gradients))
  #expect(result.coefficients == [1, 1, 1])
  #expect(result.taskWeights == [1, 1, 1])
  #expect(result.gradNorms == nil)
  #expect(result.targets == nil)
}

@Test func cosineSimilaritiesFromGram() {
  var balancer = EqualWeighting(taskCount: 3)
  let gradients: [[Double]] = [[3, 4], [-4, 3], [6, 8]]
  let result = balancer.balance(BalancingInput(gradients: gradients))
  let expected: [Double] = [1, 0, 1, 0, 1, 0, 1, 0, 1]
  #expect(relativeError(result.cosineSimilarities, expected) <= 1e-12)
}

@Test func gramOfFloatVectors() {
  let gram = BalancingInput.gram(of: [[Float(1), 2, 3], [-1, 0, 0.5]])
  #expect(gram == [14, 0.5, 0.5, 1.25])
}

@Test(arguments: BalancerKind.allCases)
func reusedResultMatchesFreshResult(kind: BalancerKind) {
  let gradients: [[Double]] = [[1, -2, 0], [-3, 0.5, 1], [0, 4, -1]]
  let problem = BalancingInput(
    gradients: gradients, losses: [1, 2, 3],
    taskOrder: PCGrad.taskOrder(seed: 2, step: 0, taskCount: 3))
  var reusing = kind.makeBalancer(taskCount: 3)
  var fresh = kind.makeBalancer(taskCount: 3)
  var result = BalancingResult(taskCount: 3)
  for _ in 0..<3 {
    reusing.balance(problem, into: &result)
    #expect(result == fresh.balance(problem))
  }
}
