import ConcordBalancing
import Foundation
import Testing

/// One file of the Golden folder: a balancer input and the output it must produce.
struct GoldenCase: Decodable {
  struct Expected: Decodable {
    let direction: [Double]
    let weights: [Double]?
  }

  let balancer: String
  let gradients: [[Double]]
  let losses: [Double]?
  let initialLosses: [Double]?
  let weights: [Double]?
  let alpha: Double?
  let weightLearningRate: Double?
  let order: [[Int]]
  let expected: Expected

  enum CodingKeys: String, CodingKey {
    case balancer, gradients, losses, weights, alpha, order, expected
    case initialLosses = "initial_losses"
    case weightLearningRate = "weight_lr"
  }
}

/// The Golden folder next to this source file.
let goldenDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  .appendingPathComponent("Golden")

/// The JSON files of the Golden folder, sorted; empty when the folder cannot be read.
let goldenFileNames: [String] =
  ((try? FileManager.default.contentsOfDirectory(atPath: goldenDirectory.path)) ?? [])
  .filter { $0.hasSuffix(".json") }.sorted()

@Test func goldenFolderHoldsEveryCase() {
  #expect(goldenFileNames.count == 23, "found \(goldenFileNames) in \(goldenDirectory.path)")
}

@Test(arguments: goldenFileNames)
func goldenCase(fileName: String) throws {
  let data = try Data(contentsOf: goldenDirectory.appendingPathComponent(fileName))
  let golden = try JSONDecoder().decode(GoldenCase.self, from: data)
  let kind = try #require(BalancerKind(rawValue: golden.balancer))
  let taskCount = golden.gradients.count
  var balancer = kind.makeBalancer(
    taskCount: taskCount, alpha: golden.alpha ?? GradNorm.defaultAlpha,
    weightLearningRate: golden.weightLearningRate ?? GradNorm.defaultWeightLearningRate)

  // Only the GradNorm balancers learn weights; the others keep w_t = 1 by definition.
  let learnsWeights = kind == .gradnorm || kind == .pcgradGradnorm
  if learnsWeights {
    let weights = try #require(golden.weights)
    let initialLosses = try #require(golden.initialLosses)
    balancer.taskWeights = weights
    balancer.initialLosses = initialLosses
  }
  let input = BalancingInput(
    gradients: golden.gradients, losses: golden.losses ?? [], taskOrder: golden.order)
  let result = balancer.balance(input)

  let actual = direction(coefficients: result.coefficients, gradients: golden.gradients)
  #expect(relativeError(actual, golden.expected.direction) <= 1e-5, "direction \(actual)")
  if let expectedWeights = golden.expected.weights {
    #expect(
      relativeError(result.updatedWeights, expectedWeights) <= 1e-5,
      "weights \(result.updatedWeights)")
    #expect(balancer.taskWeights == result.updatedWeights)
  }
  if learnsWeights {
    #expect(balancer.initialLosses == golden.initialLosses)
  }
}
