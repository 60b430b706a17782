import ConcordTensors
import Testing

@testable import ConcordModel

/// A small model and batch: 4 images of 10 pixels, an encoder 10-12-8, every task, and
/// adapters of rank `adapterRank`, if given.
struct SmallProblem {
  let model: MultiTaskModel
  let input: Matrix
  let labels: [Int32]
  let augmentationLabels: Matrix

  init(tasks: [TaskKind] = TaskKind.defaultTasks, adapterRank: Int? = nil) {
    let configuration = ModelConfiguration(
      inputSize: 10, hiddenSizes: [12, 8], classCount: 3, augmentationCount: 4, tasks: tasks,
      projectorHiddenSize: 9, projectionSize: 5, temperature: 0.5, adapterRank: adapterRank)
    model = MultiTaskModel(configuration: configuration, capacity: 8, seed: 3)
    var stream = RandomStream(seed: 5, purpose: .test)
    input = Matrix(rows: 8, columns: 10, values: (0..<80).map { _ in stream.uniform() })
    let firstLabels: [Int32] = [0, 2, 1, 2]
    labels = firstLabels + firstLabels
    augmentationLabels = Matrix(
      rows: 8, columns: 4, values: (0..<32).map { _ in stream.bernoulli(0.5) ? 1 : 0 })
    // Move the BYOL target away from the online network, as after some training.
    if let target = model.target {
      for i in 0..<target.count { target.baseAddress[i] *= 0.9 }
    }
  }

  func losses() -> [Float] {
    labels.withUnsafeBufferPointer { labels in
      model.computeTaskGradients(
        batch: TaskBatch(
          input: input, labels: labels.baseAddress!, augmentationLabels: augmentationLabels,
          pairCount: 4))
    }
    return Array(model.losses)
  }
}

/// Every task's gradient on the encoder and on its head matches finite differences of that
/// task's loss, through the whole model.
@Test(arguments: TaskKind.defaultTasks)
func taskGradientsMatchFiniteDifferences(task: TaskKind) throws {
  let problem = SmallProblem()
  let model = problem.model
  let t = model.configuration.tasks.firstIndex(of: task)!
  _ = problem.losses()

  // The encoder gradient of task t is row t of each block; gather it in layout order.
  var analytic: [Float] = []
  for block in model.encoder.gradientBlocks { analytic += Array(block.row(t)) }
  let headOffset = model.lossOffset - (model.layout.count - model.encoderParameterCount)
  let range = model.headRanges[t]
  let headStart = headOffset + range.lowerBound - model.encoderParameterCount
  let headAnalytic = Array(
    UnsafeBufferPointer(start: model.reduceBuffer.baseAddress + headStart, count: range.count))

  let encoderValues = UnsafeMutableBufferPointer(
    start: model.parameters.baseAddress, count: model.encoderParameterCount)
  let encoderResult = kinkAwareCheck(encoderValues, analytic) { problem.losses()[t] }
  #expect(encoderResult.worst < 1e-2, "\(task) encoder: \(encoderResult)")
  #expect(encoderResult.checked >= 150, "\(task) encoder: \(encoderResult)")

  let headValues = UnsafeMutableBufferPointer(
    start: model.parameters.baseAddress + range.lowerBound, count: range.count)
  let headResult = kinkAwareCheck(headValues, headAnalytic) { problem.losses()[t] }
  #expect(headResult.worst < 1e-2, "\(task) head: \(headResult)")
  #expect(headResult.checked >= min(range.count, 200) * 3 / 4, "\(task) head: \(headResult)")
}

@Test func gramMatchesDotProducts() {
  let problem = SmallProblem()
  let model = problem.model
  _ = problem.losses()
  let t = model.taskCount
  var gram = [Double](repeating: 0, count: t * t)
  var lastLayer = [Double](repeating: 0, count: t)
  model.taskGram(into: &gram, lastLayerNormSquares: &lastLayer)
  let rows = (0..<t).map { task in
    model.encoder.gradientBlocks.flatMap { Array($0.row(task)).map(Double.init) }
  }
  for i in 0..<t {
    for j in 0..<t {
      let expected = zip(rows[i], rows[j]).map(*).reduce(0, +)
      #expect(abs(gram[i * t + j] - expected) <= 1e-5 * max(abs(expected), 1e-6))
    }
    let weight = model.encoder.gradientBlocks[model.encoder.gradientBlocks.count - 2]
    let expected = Array(weight.row(i)).map { Double($0) * Double($0) }.reduce(0, +)
    #expect(abs(lastLayer[i] - expected) <= 1e-5 * max(expected, 1e-6))
  }
}

@Test func updateCombinesTaskGradients() {
  let problem = SmallProblem()
  let model = problem.model
  _ = problem.losses()
  let coefficients: [Float] = [0.5, 1.5, -0.25, 2]
  let weights: [Float] = [0.7, 1.1, 0.9, 1.3]
  model.formUpdate(coefficients: coefficients, taskWeights: weights)
  var offset = 0
  for block in model.encoder.gradientBlocks {
    for k in 0..<block.columns {
      var expected: Float = 0
      for t in 0..<4 { expected += coefficients[t] * block[t, k] }
      #expect(abs(model.update.baseAddress[offset + k] - expected) <= 1e-5 * (abs(expected) + 1e-3))
    }
    offset += block.columns
  }
  #expect(offset == model.encoderParameterCount)
  let headGradients =
    model.reduceBuffer.baseAddress + model.lossOffset
    - (model.layout.count - model.encoderParameterCount)
  for (t, range) in model.headRanges.enumerated() {
    for i in range {
      let expected = weights[t] * headGradients[i - model.encoderParameterCount]
      #expect(model.update.baseAddress[i] == expected)
    }
  }
}

@Test func targetStartsAsOnlineCopyAndFollowsIt() throws {
  let configuration = ModelConfiguration(
    inputSize: 6, hiddenSizes: [5, 4], classCount: 2, augmentationCount: 3,
    projectorHiddenSize: 4, projectionSize: 3)
  let model = MultiTaskModel(configuration: configuration, capacity: 4, seed: 1)
  let target = try #require(model.target)
  let encoderCount = model.encoderParameterCount
  for i in 0..<encoderCount { #expect(target.baseAddress[i] == model.parameters.baseAddress[i]) }

  let before = target.array
  for i in 0..<model.parameters.count { model.parameters.baseAddress[i] += 1 }
  model.updateTarget(decay: 0.75)
  for i in 0..<encoderCount {
    #expect(abs(target.baseAddress[i] - (before[i] + 0.25)) < 1e-6)
  }
}

@Test func sameSeedGivesSameParameters() {
  let configuration = ModelConfiguration(inputSize: 6, hiddenSizes: [5, 4])
  let a = MultiTaskModel(configuration: configuration, capacity: 4, seed: 7)
  let b = MultiTaskModel(configuration: configuration, capacity: 4, seed: 7)
  let c = MultiTaskModel(configuration: configuration, capacity: 4, seed: 8)
  #expect(a.parameters.array == b.parameters.array)
  #expect(a.parameters.array != c.parameters.array)
}
