import ConcordTensors
import Testing

@testable import ConcordModel

/// 4 images of 10 pixels: 8 view rows, then the 4 clean images, through a 10-12-8 encoder.
private struct CleanRowsProblem {
  static let configuration = ModelConfiguration(
    inputSize: 10, hiddenSizes: [12, 8], classCount: 3, augmentationCount: 4,
    projectorHiddenSize: 9, projectionSize: 5, temperature: 0.5)

  let input: Matrix
  /// The label of each of the 12 rows: the 4 images' labels, repeated for each view and the
  /// clean image.
  let labels: [Int32]
  let augmentationLabels: Matrix

  init() {
    var stream = RandomStream(seed: 5, purpose: .test)
    input = Matrix(rows: 12, columns: 10, values: (0..<120).map { _ in stream.uniform() })
    let imageLabels: [Int32] = [0, 2, 1, 2]
    labels = imageLabels + imageLabels + imageLabels
    augmentationLabels = Matrix(
      rows: 8, columns: 4, values: (0..<32).map { _ in stream.bernoulli(0.5) ? 1 : 0 })
  }

  /// Returns a model whose BYOL target has moved away from the online network.
  static func makeModel(
    tasks: [TaskKind] = TaskKind.defaultTasks, capacity: Int, view: SupervisedView = .augmented
  ) -> MultiTaskModel {
    var configuration = Self.configuration
    configuration.tasks = tasks
    let model = MultiTaskModel(
      configuration: configuration, capacity: capacity, seed: 3, supervisedView: view)
    if let target = model.target {
      for i in 0..<target.count { target.baseAddress[i] *= 0.9 }
    }
    return model
  }

  /// Computes every task's gradients on `rows` of the input, as a batch of `pairCount`
  /// images with `cleanRowCount` clean rows.
  func computeGradients(
    _ model: MultiTaskModel, rows: Range<Int>, pairCount: Int, cleanRowCount: Int = 0
  ) {
    labels.withUnsafeBufferPointer { labels in
      model.computeTaskGradients(
        batch: TaskBatch(
          input: input.rows(rows), labels: labels.baseAddress! + rows.lowerBound,
          augmentationLabels: augmentationLabels, pairCount: pairCount,
          cleanRowCount: cleanRowCount))
    }
  }
}

/// Returns task `t`'s gradient on the encoder, in layout order.
private func encoderGradient(_ model: MultiTaskModel, task t: Int) -> [Float] {
  model.encoder.gradientBlocks.flatMap { Array($0.row(t)) }
}

/// Returns task `t`'s gradient on its head.
private func headGradient(_ model: MultiTaskModel, task t: Int) -> [Float] {
  let range = model.headRanges[t]
  let start = model.headGradientStart + range.lowerBound - model.encoderParameterCount
  return Array(
    UnsafeBufferPointer(start: model.reduceBuffer.baseAddress + start, count: range.count))
}

/// Returns the largest difference between `a` and `b` relative to the largest magnitude of `b`.
private func relativeDifference(_ a: [Float], _ b: [Float]) -> Float {
  precondition(a.count == b.count, "\(a.count) vs \(b.count) values")
  let scale = max(b.map(abs).max() ?? 0, 1e-12)
  return zip(a, b).map { abs($0 - $1) }.max().map { $0 / scale } ?? 0
}

/// Checks that task `t` has the same loss, encoder gradient and head gradient in `model` as
/// task `r` in `reference`, to rounding.
private func expectSameTask(
  _ model: MultiTaskModel, _ t: Int, as reference: MultiTaskModel, _ r: Int
) {
  let task = model.configuration.tasks[t]
  let loss = reference.losses[r]
  #expect(abs(model.losses[t] - loss) <= 1e-6 * abs(loss), "\(task) loss \(model.losses[t])")
  let encoderError = relativeDifference(
    encoderGradient(model, task: t), encoderGradient(reference, task: r))
  #expect(encoderError < 1e-5, "\(task) encoder gradient differs by \(encoderError)")
  let headError = relativeDifference(headGradient(model, task: t), headGradient(reference, task: r))
  #expect(headError < 1e-5, "\(task) head gradient differs by \(headError)")
}

/// With `clean`, the supervised loss and gradients are those of the clean rows alone.
///
/// The other tasks' gradients are those of the view rows alone, because the clean rows add nothing
/// to them, and their gradient with respect to the clean rows' features is zero.
@Test func cleanViewSeparatesTheRows() {
  let problem = CleanRowsProblem()
  let clean = CleanRowsProblem.makeModel(capacity: 12, view: .clean)
  problem.computeGradients(clean, rows: 0..<12, pairCount: 4, cleanRowCount: 4)

  // The supervised task alone on the 4 clean rows, read as 2 images of two views each.
  let supervised = CleanRowsProblem.makeModel(tasks: [.supervised], capacity: 4)
  problem.computeGradients(supervised, rows: 8..<12, pairCount: 2)
  expectSameTask(clean, 0, as: supervised, 0)

  // Every task on the 8 view rows alone.
  let views = CleanRowsProblem.makeModel(capacity: 8)
  problem.computeGradients(views, rows: 0..<8, pairCount: 4)
  for t in 1..<clean.taskCount {
    let task = clean.configuration.tasks[t]
    expectSameTask(clean, t, as: views, t)
    let onCleanRows = clean.encoder.featuresGradient(task: t, rows: 12).rows(8..<12).array
    #expect(onCleanRows.allSatisfy { $0 == 0 }, "\(task) has a gradient on the clean rows")
  }
  let onViewRows = clean.encoder.featuresGradient(task: 0, rows: 12).rows(0..<8).array
  #expect(onViewRows.allSatisfy { $0 == 0 }, "supervised has a gradient on the view rows")
}

/// With `both`, the supervised loss is the mean over all 12 rows: the same as the supervised
/// task alone on 12 rows read as 6 images of two views each.
@Test func bothViewAveragesOverAllRows() {
  let problem = CleanRowsProblem()
  let both = CleanRowsProblem.makeModel(capacity: 12, view: .both)
  problem.computeGradients(both, rows: 0..<12, pairCount: 4, cleanRowCount: 4)
  let supervised = CleanRowsProblem.makeModel(tasks: [.supervised], capacity: 12)
  problem.computeGradients(supervised, rows: 0..<12, pairCount: 6)
  expectSameTask(both, 0, as: supervised, 0)
}

/// Every task's gradient matches finite differences of its loss on a batch with clean rows.
@Test(arguments: [SupervisedView.clean, .both], TaskKind.defaultTasks)
func cleanRowGradientsMatchFiniteDifferences(view: SupervisedView, task: TaskKind) {
  let problem = CleanRowsProblem()
  let model = CleanRowsProblem.makeModel(capacity: 12, view: view)
  let t = model.configuration.tasks.firstIndex(of: task)!
  func loss() -> Float {
    problem.computeGradients(model, rows: 0..<12, pairCount: 4, cleanRowCount: 4)
    return model.losses[t]
  }
  _ = loss()
  let analytic = encoderGradient(model, task: t)
  let headAnalytic = headGradient(model, task: t)

  let encoderValues = UnsafeMutableBufferPointer(
    start: model.parameters.baseAddress, count: model.encoderParameterCount)
  let encoderResult = kinkAwareCheck(encoderValues, analytic, loss: loss)
  #expect(encoderResult.worst < 1e-2, "\(view) \(task) encoder: \(encoderResult)")
  #expect(encoderResult.checked >= 150, "\(view) \(task) encoder: \(encoderResult)")

  let range = model.headRanges[t]
  let headValues = UnsafeMutableBufferPointer(
    start: model.parameters.baseAddress + range.lowerBound, count: range.count)
  let headResult = kinkAwareCheck(headValues, headAnalytic, loss: loss)
  #expect(headResult.worst < 1e-2, "\(view) \(task) head: \(headResult)")
  #expect(
    headResult.checked >= min(range.count, 200) * 3 / 4, "\(view) \(task) head: \(headResult)")
}
