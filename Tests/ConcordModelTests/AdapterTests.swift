import ConcordTensors
import Testing

@testable import ConcordModel

extension SmallProblem {
  /// Sets every up projection `U` to small random values, so that the adapter path changes
  /// the features, and moves the BYOL target away from the online network.
  func enliven() {
    var stream = RandomStream(seed: 11, purpose: .test)
    for slot in model.layout.slots where slot.name.hasSuffix(".up") {
      for i in slot.offset..<(slot.offset + slot.count) {
        model.parameters.baseAddress[i] = stream.uniform(in: -0.4...0.4)
      }
    }
    model.copyOnlineToTarget()
    if let target = model.target {
      for i in 0..<target.count { target.baseAddress[i] *= 0.9 }
    }
  }

  /// Returns task `t`'s gradient on the shared encoder, in layout order.
  func sharedGradient(task t: Int) -> [Float] {
    model.encoder.gradientBlocks.flatMap { Array($0.row(t)) }
  }

  /// Returns task `t`'s gradient on the adapters, in layout order.
  func adapterGradient(task t: Int) -> [Float] {
    model.adapterGradientBlocks.flatMap { Array($0.row(t)) }
  }
}

/// Every task's gradient on the shared encoder and on the adapters of both groups matches
/// finite differences of that task's loss, through the whole adapted model with live
/// adapter paths.
@Test(arguments: TaskKind.defaultTasks)
func adaptedGradientsMatchFiniteDifferences(task: TaskKind) throws {
  let problem = SmallProblem(adapterRank: 3)
  problem.enliven()
  let model = problem.model
  let t = try #require(model.configuration.tasks.firstIndex(of: task))
  _ = problem.losses()
  let shared = problem.sharedGradient(task: t)
  let adapters = problem.adapterGradient(task: t)
  #expect(adapters.count == model.layout.count - model.adapterParameterStart)

  let sharedValues = UnsafeMutableBufferPointer(
    start: model.parameters.baseAddress, count: model.encoderParameterCount)
  let sharedResult = kinkAwareCheck(sharedValues, shared) { problem.losses()[t] }
  #expect(sharedResult.worst < 1e-2, "\(task) shared: \(sharedResult)")
  #expect(sharedResult.checked >= 150, "\(task) shared: \(sharedResult)")

  let adapterValues = UnsafeMutableBufferPointer(
    start: model.parameters.baseAddress + model.adapterParameterStart, count: adapters.count)
  let adapterResult = kinkAwareCheck(adapterValues, adapters) { problem.losses()[t] }
  #expect(adapterResult.worst < 1e-2, "\(task) adapters: \(adapterResult)")
  #expect(adapterResult.checked >= 150, "\(task) adapters: \(adapterResult)")
}

/// A task's gradient on the adapters of a group that it does not read is exactly zero, and
/// the supervised task, which reads every group, has gradients on both.
@Test func adapterGradientsOfOtherGroupsAreZero() throws {
  let problem = SmallProblem(adapterRank: 3)
  problem.enliven()
  let model = problem.model
  _ = problem.losses()
  let half = model.adapterGradientBlocks.count / 2
  for (t, task) in model.configuration.tasks.enumerated() {
    let invariant = model.adapterGradientBlocks[..<half].flatMap { Array($0.row(t)) }
    let sensitive = model.adapterGradientBlocks[half...].flatMap { Array($0.row(t)) }
    let readsInvariant = task != .augpred
    let readsSensitive = task == .augpred || task == .supervised
    #expect(invariant.contains { $0 != 0 } == readsInvariant, "\(task) invariant adapters")
    #expect(sensitive.contains { $0 != 0 } == readsSensitive, "\(task) sensitive adapters")
  }
}

/// With every up projection `U` at zero, the adapted model matches the model without them.
///
/// As at initialisation, the adapted model then computes the same losses as the model
/// without adapters from the same seed on the same batch. Its
/// gradients on the shared encoder and on the heads are the same too, bit for bit. This holds
/// for every task but supervised, whose head reads the features of both groups side by side,
/// so that its classifier has twice the inputs and its own initial weights.
@Test func zeroAdaptersMatchUnadaptedModel() throws {
  let plain = SmallProblem()
  let adapted = SmallProblem(adapterRank: 4)
  let plainLosses = plain.losses()
  let adaptedLosses = adapted.losses()
  for (t, task) in plain.model.configuration.tasks.enumerated() where task != .supervised {
    #expect(adaptedLosses[t] == plainLosses[t], "\(task) loss")
    #expect(adapted.sharedGradient(task: t) == plain.sharedGradient(task: t), "\(task) shared")
    let plainHead = plain.model.headRanges[t]
    let adaptedHead = adapted.model.headRanges[t]
    #expect(plainHead.count == adaptedHead.count, "\(task) head size")
    let plainStart =
      plain.model.headGradientStart + plainHead.lowerBound
      - plain.model.encoderParameterCount
    let adaptedStart =
      adapted.model.headGradientStart + adaptedHead.lowerBound
      - adapted.model.encoderParameterCount
    let plainGradient = Array(
      UnsafeBufferPointer(
        start: plain.model.reduceBuffer.baseAddress + plainStart, count: plainHead.count))
    let adaptedGradient = Array(
      UnsafeBufferPointer(
        start: adapted.model.reduceBuffer.baseAddress + adaptedStart, count: adaptedHead.count))
    #expect(adaptedGradient == plainGradient, "\(task) head gradient")
  }
  #expect(adaptedLosses[0] != plainLosses[0], "supervised loss, whose head differs")
}

/// The Gram matrix covers the shared encoder alone, and an adapter's update is the sum of the
/// tasks' gradients times their weights.
@Test func balancingLeavesAdaptersOut() {
  let problem = SmallProblem(adapterRank: 3)
  problem.enliven()
  let model = problem.model
  _ = problem.losses()
  let t = model.taskCount
  var gram = [Double](repeating: 0, count: t * t)
  var lastLayer = [Double](repeating: 0, count: t)
  model.taskGram(into: &gram, lastLayerNormSquares: &lastLayer)
  let rows = (0..<t).map { problem.sharedGradient(task: $0).map(Double.init) }
  for i in 0..<t {
    for j in 0..<t {
      let expected = zip(rows[i], rows[j]).map(*).reduce(0, +)
      #expect(abs(gram[i * t + j] - expected) <= 1e-5 * max(abs(expected), 1e-6))
    }
  }

  let coefficients: [Float] = [0.5, 1.5, -0.25, 2]
  let weights: [Float] = [0.7, 1.1, 0.9, 1.3]
  model.formUpdate(coefficients: coefficients, taskWeights: weights)
  var offset = model.adapterParameterStart
  for block in model.adapterGradientBlocks {
    for k in 0..<block.columns {
      var expected: Float = 0
      for task in 0..<t { expected += weights[task] * block[task, k] }
      let actual = model.update.baseAddress[offset + k]
      #expect(abs(actual - expected) <= 1e-5 * (abs(expected) + 1e-3))
    }
    offset += block.columns
  }
  #expect(offset == model.layout.count)
}

/// The BYOL target contains the encoder, the BYOL projector and the invariant adapters, and no
/// sensitive ones, and follows the online network.
@Test func targetCopiesInvariantAdapters() throws {
  let problem = SmallProblem(adapterRank: 2)
  problem.enliven()
  let model = problem.model
  let target = try #require(model.target)
  let names = model.targetLayout.slots.map(\.name)
  #expect(names.contains("target.adapter.invariant.0.down"))
  #expect(names.contains("target.adapter.invariant.1.up"))
  #expect(!names.contains { $0.hasPrefix("target.adapter.sensitive.") })

  model.copyOnlineToTarget()
  for targetSlot in model.targetLayout.slots {
    let online = try #require(model.layout.slot(named: String(targetSlot.name.dropFirst(7))))
    for i in 0..<targetSlot.count {
      #expect(
        target.baseAddress[targetSlot.offset + i]
          == model.parameters.baseAddress[online.offset + i],
        "\(targetSlot.name)")
    }
  }
}

/// The adapters exist only for the groups of the tasks, and the supervised head, which
/// belongs to both groups, reads the features of both.
@Test func adaptersOnlyForPresentGroups() {
  let byol = SmallProblem(tasks: [.byol], adapterRank: 2)
  let names = byol.model.layout.slots.map(\.name)
  #expect(names.contains("adapter.invariant.0.down"))
  #expect(!names.contains { $0.hasPrefix("adapter.sensitive.") })

  let supervised = SmallProblem(tasks: [.supervised], adapterRank: 2)
  let supervisedNames = supervised.model.layout.slots.map(\.name)
  #expect(supervisedNames.contains("adapter.invariant.1.up"))
  #expect(supervisedNames.contains("adapter.sensitive.1.up"))
  let classifier = supervised.model.layout.slot(named: "supervised.classifier.weight")
  #expect(classifier?.shape == [3, 16])
}

/// The invariance task reads the invariant pass on the first views and their twins: its
/// gradient on the shared encoder and on the invariant adapters matches finite differences,
/// and its gradient on the sensitive adapters is zero.
@Test func invarianceReadsInvariantPass() throws {
  let configuration = ModelConfiguration(
    inputSize: 10, hiddenSizes: [12, 8], classCount: 3, augmentationCount: 4,
    tasks: TaskKind.defaultTasks + [.invariance], projectorHiddenSize: 9, projectionSize: 5,
    temperature: 0.5, adapterRank: 3)
  let model = MultiTaskModel(configuration: configuration, capacity: 12, seed: 3)
  var stream = RandomStream(seed: 6, purpose: .test)
  for slot in model.layout.slots where slot.name.hasSuffix(".up") {
    for i in slot.offset..<(slot.offset + slot.count) {
      model.parameters.baseAddress[i] = stream.uniform(in: -0.4...0.4)
    }
  }
  model.copyOnlineToTarget()
  // 4 images: 8 view rows, then 4 invariance twins.
  let input = Matrix(rows: 12, columns: 10, values: (0..<120).map { _ in stream.uniform() })
  let labels: [Int32] = [0, 2, 1, 2, 0, 2, 1, 2, 0, 2, 1, 2]
  let augmentationLabels = Matrix(
    rows: 8, columns: 4, values: (0..<32).map { _ in stream.bernoulli(0.5) ? 1 : 0 })
  let t = model.taskCount - 1
  func loss() -> Float {
    labels.withUnsafeBufferPointer { labels in
      model.computeTaskGradients(
        batch: TaskBatch(
          input: input, labels: labels.baseAddress!, augmentationLabels: augmentationLabels,
          pairCount: 4, invariantRowCount: 4))
    }
    return model.losses[t]
  }
  _ = loss()
  let shared = model.encoder.gradientBlocks.flatMap { Array($0.row(t)) }
  let adapters = model.adapterGradientBlocks.flatMap { Array($0.row(t)) }
  let half = adapters.count / 2
  #expect(adapters[half...].allSatisfy { $0 == 0 }, "sensitive adapters")
  #expect(adapters[..<half].contains { $0 != 0 }, "invariant adapters")

  let sharedValues = UnsafeMutableBufferPointer(
    start: model.parameters.baseAddress, count: model.encoderParameterCount)
  let sharedResult = kinkAwareCheck(sharedValues, shared, loss: loss)
  #expect(sharedResult.worst < 1e-2, "shared: \(sharedResult)")
  #expect(sharedResult.checked >= 150, "shared: \(sharedResult)")
  let adapterValues = UnsafeMutableBufferPointer(
    start: model.parameters.baseAddress + model.adapterParameterStart, count: half)
  let adapterResult = kinkAwareCheck(adapterValues, Array(adapters[..<half]), loss: loss)
  #expect(adapterResult.worst < 1e-2, "invariant adapters: \(adapterResult)")
  #expect(adapterResult.checked >= 100, "invariant adapters: \(adapterResult)")
}
