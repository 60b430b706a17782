import ConcordTensors
import Foundation
import Testing

@testable import ConcordModel

/// Returns the mean of `1 - cos(a_i, b_i)`, computed in double precision.
private func referenceInvariance(_ a: Matrix, _ b: Matrix) -> Double {
  var sum = 0.0
  for i in 0..<a.rows {
    var ab = 0.0
    var aa = 0.0
    var bb = 0.0
    for k in 0..<a.columns {
      ab += Double(a[i, k]) * Double(b[i, k])
      aa += Double(a[i, k]) * Double(a[i, k])
      bb += Double(b[i, k]) * Double(b[i, k])
    }
    sum += 1 - ab / (aa.squareRoot() * bb.squareRoot())
  }
  return sum / Double(a.rows)
}

@Test(arguments: [(1, 3), (4, 8), (7, 16)])
func invarianceLossMatchesFiniteDifferences(shape: (Int, Int)) {
  let (m, d) = shape
  let a = randomMatrix(rows: m, columns: d, seed: 41)
  let b = randomMatrix(rows: m, columns: d, seed: 42)
  let gradientA = Matrix(rows: m, columns: d)
  let gradientB = Matrix(rows: m, columns: d)
  let scratchA = Matrix(rows: m, columns: d)
  let scratchB = Matrix(rows: m, columns: d)
  let value = invarianceLoss(a, b, gradientA: gradientA, gradientB: gradientB)
  #expect(abs(Double(value) - referenceInvariance(a, b)) < 1e-6)

  let resultA = GradientCheck().compare(input: a, analyticGradient: gradientA) {
    invarianceLoss(a, b, gradientA: scratchA, gradientB: scratchB)
  }
  #expect(resultA.maximumRelativeError < 1e-2, "dL/da: \(resultA)")
  let resultB = GradientCheck().compare(input: b, analyticGradient: gradientB) {
    invarianceLoss(a, b, gradientA: scratchA, gradientB: scratchB)
  }
  #expect(resultB.maximumRelativeError < 1e-2, "dL/db: \(resultB)")
}

/// Equal directions give loss 0 and no gradient, opposite ones loss 2 and no gradient.
@Test func invarianceLossAtTheExtremes() {
  let a = randomMatrix(rows: 3, columns: 5, seed: 43)
  let gradientA = Matrix(rows: 3, columns: 5)
  let gradientB = Matrix(rows: 3, columns: 5)
  for (scale, expected) in [(Float(2), Float(0)), (-0.5, 2)] {
    let b = Matrix(rows: 3, columns: 5, values: a.array.map { scale * $0 })
    let value = invarianceLoss(a, b, gradientA: gradientA, gradientB: gradientB)
    #expect(abs(value - expected) < 1e-6, "scale \(scale)")
    #expect(gradientA.array.allSatisfy { abs($0) < 1e-5 }, "scale \(scale)")
    #expect(gradientB.array.allSatisfy { abs($0) < 1e-5 }, "scale \(scale)")
  }
}

/// A zero row gives loss 1 and finite gradients.
@Test func invarianceLossGuardsZeroRows() {
  let a = Matrix(rows: 1, columns: 4)
  let b = randomMatrix(rows: 1, columns: 4, seed: 44)
  let gradientA = Matrix(rows: 1, columns: 4)
  let gradientB = Matrix(rows: 1, columns: 4)
  let value = invarianceLoss(a, b, gradientA: gradientA, gradientB: gradientB)
  #expect(value == 1)
  #expect(gradientA.array.allSatisfy { $0.isFinite })
  #expect(gradientB.array.allSatisfy { $0 == 0 })
}

/// 4 images of 10 pixels: 8 view rows, the clean rows when asked, then 4 invariance twins.
private struct TwinRowsProblem {
  let input: Matrix
  let labels: [Int32]
  let augmentationLabels: Matrix

  init() {
    var stream = RandomStream(seed: 6, purpose: .test)
    input = Matrix(rows: 16, columns: 10, values: (0..<160).map { _ in stream.uniform() })
    let imageLabels: [Int32] = [0, 2, 1, 2]
    labels = imageLabels + imageLabels + imageLabels + imageLabels
    augmentationLabels = Matrix(
      rows: 8, columns: 4, values: (0..<32).map { _ in stream.bernoulli(0.5) ? 1 : 0 })
  }

  static func makeModel(tasks: [TaskKind], view: SupervisedView) -> MultiTaskModel {
    let configuration = ModelConfiguration(
      inputSize: 10, hiddenSizes: [12, 8], classCount: 3, augmentationCount: 4, tasks: tasks,
      projectorHiddenSize: 9, projectionSize: 5, temperature: 0.5)
    let model = MultiTaskModel(
      configuration: configuration, capacity: 4 * model(rowsPerImageOf: view), seed: 3,
      supervisedView: view)
    if let target = model.target {
      for i in 0..<target.count { target.baseAddress[i] *= 0.9 }
    }
    return model
  }

  static func model(rowsPerImageOf view: SupervisedView) -> Int { view.rowsPerImage + 1 }

  func computeGradients(_ model: MultiTaskModel) {
    let clean = model.supervisedView == .augmented ? 0 : 4
    let rows = 8 + clean + 4
    labels.withUnsafeBufferPointer { labels in
      model.computeTaskGradients(
        batch: TaskBatch(
          input: input.rows(0..<rows), labels: labels.baseAddress!,
          augmentationLabels: augmentationLabels, pairCount: 4, cleanRowCount: clean,
          invariantRowCount: 4))
    }
  }
}

/// The invariance task's loss is the invariance loss of the first views' features and the
/// twins' features, and its gradient on the encoder matches finite differences, alone and
/// next to the clean rows of `--supervised-view`.
@Test(arguments: [SupervisedView.augmented, .both])
func invarianceTaskMatchesFiniteDifferences(view: SupervisedView) {
  let problem = TwinRowsProblem()
  let model = TwinRowsProblem.makeModel(
    tasks: TaskKind.defaultTasks + [.invariance], view: view)
  let t = model.taskCount - 1
  #expect(model.headRanges[t].isEmpty)
  func loss() -> Float {
    problem.computeGradients(model)
    return model.losses[t]
  }
  let value = loss()
  let rows = model.capacity
  let features = model.encoder.forwardForEvaluation(problem.input.rows(0..<rows))
  let expected = referenceInvariance(features.rows(0..<4), features.rows((rows - 4)..<rows))
  #expect(abs(Double(value) - expected) < 1e-5, "loss \(value), expected \(expected)")

  // Only the first views and the twins get a gradient.
  problem.computeGradients(model)
  let featuresGradient = model.encoder.featuresGradient(task: t, rows: rows)
  #expect(featuresGradient.rows(4..<(rows - 4)).array.allSatisfy { $0 == 0 })
  #expect(featuresGradient.rows(0..<4).array.contains { $0 != 0 })

  let analytic = model.encoder.gradientBlocks.flatMap { Array($0.row(t)) }
  let values = UnsafeMutableBufferPointer(
    start: model.parameters.baseAddress, count: model.encoderParameterCount)
  let result = kinkAwareCheck(values, analytic, loss: loss)
  #expect(result.worst < 1e-2, "\(view): \(result)")
  #expect(result.checked >= 150, "\(view): \(result)")
}

/// The invariance task changes no other task's loss or gradient: the other heads read the
/// view rows alone.
@Test func invarianceLeavesOtherTasksAlone() {
  let problem = TwinRowsProblem()
  let with = TwinRowsProblem.makeModel(
    tasks: TaskKind.defaultTasks + [.invariance], view: .augmented)
  problem.computeGradients(with)
  let without = MultiTaskModel(
    configuration: with.configuration.removingInvariance, capacity: 8, seed: 3)
  if let target = without.target {
    for i in 0..<target.count { target.baseAddress[i] *= 0.9 }
  }
  problem.labels.withUnsafeBufferPointer { labels in
    without.computeTaskGradients(
      batch: TaskBatch(
        input: problem.input.rows(0..<8), labels: labels.baseAddress!,
        augmentationLabels: problem.augmentationLabels, pairCount: 4))
  }
  for t in 0..<without.taskCount {
    let task = without.configuration.tasks[t]
    #expect(abs(with.losses[t] - without.losses[t]) <= 1e-6 * abs(without.losses[t]), "\(task)")
    let a = with.encoder.gradientBlocks.flatMap { Array($0.row(t)) }
    let b = without.encoder.gradientBlocks.flatMap { Array($0.row(t)) }
    let scale = max(b.map(abs).max() ?? 0, 1e-12)
    let error = zip(a, b).map { abs($0 - $1) }.max()! / scale
    #expect(error < 1e-5, "\(task) encoder gradient differs by \(error)")
  }
}

/// Every task belongs to at least one group, and only the supervised task to both.
@Test func taskGroupsTable() {
  for task in TaskKind.allCases {
    #expect(!task.groups.isEmpty, "\(task)")
  }
  #expect(TaskKind.supervised.groups == [.invariant, .sensitive])
  #expect(TaskKind.augpred.groups == [.sensitive])
  for task in [TaskKind.simclr, .byol, .invariance] {
    #expect(task.groups == [.invariant], "\(task)")
  }
}

extension ModelConfiguration {
  fileprivate var removingInvariance: ModelConfiguration {
    var copy = self
    copy.tasks.removeAll { $0 == .invariance }
    return copy
  }
}
