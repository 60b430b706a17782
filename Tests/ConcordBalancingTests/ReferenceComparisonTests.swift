import ConcordBalancing
import ConcordTensors
import Testing

/// Random problems: `T` in 2...5 tasks, gradients of 1...200 standard normal values.
struct RandomProblem {
  let gradients: [[Double]]
  let weights: [Double]
  let losses: [Double]
  let initialLosses: [Double]
  let order: [[Int]]

  init(caseIndex: Int) {
    var stream = RandomStream(seed: 2024, purpose: .test, counters: UInt64(caseIndex))
    let taskCount = stream.integer(in: 2...5)
    let dimension = stream.integer(in: 1...200)
    gradients = randomGradients(&stream, taskCount: taskCount, dimension: dimension)
    let rawWeights = (0..<taskCount).map { _ in Double(stream.uniform(in: 0.2...2)) }
    let weightSum = rawWeights.reduce(0, +)
    weights = rawWeights.map { $0 * Double(taskCount) / weightSum }
    losses = (0..<taskCount).map { _ in Double(stream.uniform(in: 0.1...3)) }
    initialLosses = (0..<taskCount).map { _ in Double(stream.uniform(in: 0.5...3)) }
    order = PCGrad.taskOrder(seed: 7, step: caseIndex, taskCount: taskCount)
  }

  var input: BalancingInput {
    BalancingInput(gradients: gradients, losses: losses, taskOrder: order)
  }
}

@Test(arguments: 0..<40)
func pcGradMatchesVectorAlgorithm(caseIndex: Int) {
  let problem = RandomProblem(caseIndex: caseIndex)
  var balancer = PCGrad(taskCount: problem.gradients.count)
  let result = balancer.balance(problem.input)

  let reference = referencePCGrad(problem.gradients, order: problem.order)
  let actual = direction(coefficients: result.coefficients, gradients: problem.gradients)
  #expect(relativeError(actual, reference.direction) <= 1e-9)
  #expect(result.projectionCount == reference.projections)
}

@Test(arguments: 0..<40)
func gradNormMatchesVectorAlgorithm(caseIndex: Int) {
  let problem = RandomProblem(caseIndex: caseIndex)
  // Every fourth case takes large steps, so that the weight floor binds in some of them.
  let learningRate = caseIndex % 4 == 0 ? 2.0 : 0.025
  var balancer = GradNorm(
    taskCount: problem.gradients.count, weightLearningRate: learningRate)
  balancer.taskWeights = problem.weights
  balancer.initialLosses = problem.initialLosses
  let result = balancer.balance(problem.input)

  let reference = referenceGradNorm(
    gradients: problem.gradients, weights: problem.weights, losses: problem.losses,
    initialLosses: problem.initialLosses, alpha: 1.5, learningRate: learningRate)
  let weighted = zip(problem.weights, problem.gradients).map { w, g in g.map { w * $0 } }
  let expectedDirection = direction(
    coefficients: [Double](repeating: 1, count: weighted.count), gradients: weighted)
  let actual = direction(coefficients: result.coefficients, gradients: problem.gradients)
  #expect(relativeError(actual, expectedDirection) <= 1e-9)
  #expect(relativeError(result.updatedWeights, reference.weights) <= 1e-9)
  #expect(relativeError(result.gradNorms ?? [], reference.gradNorms) <= 1e-9)
  #expect(relativeError(result.targets ?? [], reference.targets) <= 1e-9)
  #expect(result.taskWeights == problem.weights)
}

@Test(arguments: 0..<40)
func pcGradGradNormMatchesVectorAlgorithm(caseIndex: Int) {
  let problem = RandomProblem(caseIndex: caseIndex)
  var balancer = PCGradGradNorm(taskCount: problem.gradients.count)
  balancer.taskWeights = problem.weights
  balancer.initialLosses = problem.initialLosses
  let result = balancer.balance(problem.input)

  let weighted = zip(problem.weights, problem.gradients).map { w, g in g.map { w * $0 } }
  let surgery = referencePCGrad(weighted, order: problem.order)
  let reference = referenceGradNorm(
    gradients: problem.gradients, weights: problem.weights, losses: problem.losses,
    initialLosses: problem.initialLosses, alpha: 1.5, learningRate: 0.025)
  let actual = direction(coefficients: result.coefficients, gradients: problem.gradients)
  #expect(relativeError(actual, surgery.direction) <= 1e-9)
  #expect(result.projectionCount == surgery.projections)
  #expect(relativeError(result.updatedWeights, reference.weights) <= 1e-9)
  #expect(result.taskWeights == problem.weights)
}

@Test func randomProblemsIncludeProjections() {
  let projectionTotal = (0..<40).reduce(0) { total, caseIndex in
    let problem = RandomProblem(caseIndex: caseIndex)
    return total + referencePCGrad(problem.gradients, order: problem.order).projections
  }
  #expect(projectionTotal > 20)
}
