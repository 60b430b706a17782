import ConcordBalancing
import ConcordData
import ConcordDistributed
import ConcordModel
import ConcordTensors
import Foundation

/// The outcome of a run, as `eval.json` records it.
public struct RunSummary: Sendable {
  /// Accuracy of the supervised head on the test set, or nil without the supervised task.
  public var testAccuracy: Double?
  /// kNN accuracy of the representation on the test set, with the training set as memory.
  public var knnAccuracy: Double
  /// The kNN neighbour count, after shrinking to the training set size.
  public var knnK = 0
  /// The temperature of the kNN vote weights.
  public var knnTemperature: Float = 0
  /// Test accuracy of the linear probe, or nil when none was trained.
  public var linearProbeAccuracy: Double? = nil
  /// Per-label accuracy of the augmentation prediction head on augmented test views, or nil
  /// without the augpred task.
  public var augpredAccuracy: Double? = nil
  /// Accuracy of the augmentation prediction head on the label of each kind that it predicts,
  /// keyed by the kind's name; empty without the augpred task.
  public var augpredAccuracyPerKind: [(kind: String, accuracy: Double)] = []
  /// The kNN accuracy and the probe's accuracy (nil without a probe) of each task group's
  /// features alone, keyed by the group's name; empty without adapters.
  public var groupAccuracies: [(group: String, knn: Double, linearProbe: Double?)] = []
  /// The step the run ended at.
  public var steps: Int
  /// Wall time of training and evaluation, in seconds.
  public var seconds: Double
}

/// One training run on every rank: data, model, balancing, optimizer, logs and checkpoints.
///
/// Every rank builds the same trainer from the same configuration. Each step, every rank
/// computes its local per-task gradients, one allreduce makes them global, and from there on
/// every rank computes the same thing from the same bytes, which keeps parameters,
/// optimizer state and task weights bit-identical across ranks. Only rank 0 writes files.
public final class Trainer {
  let configuration: TrainingConfiguration
  let communicator: Communicator
  let runDirectory: String
  let resumePath: String
  let trainSet: Dataset
  let testSet: Dataset
  let prefetcher: BatchPrefetcher
  let model: MultiTaskModel
  /// Sums the convolutional encoder's batch statistics over the ranks.
  let statisticsReducer: CommunicatorStatisticsReducer
  var balancer: any GradientBalancer
  let optimizer: any Optimizer
  /// The learning rate of each step.
  let learningRateSchedule: LearningRateSchedule
  /// BYOL's target decay at each step.
  let targetDecaySchedule: TargetDecaySchedule
  let totalSteps: Int
  let stepsPerEpoch: Int
  var step = 0
  let log: MetricsLog
  /// Rank 0's TensorBoard event file under `tb/`; nil on other ranks and after a failed write.
  var tensorBoard: TensorBoardWriter?

  // Balancing work space, reused every step.
  private var gram: [Double]
  private var normSquares: [Double]
  private var lossValues: [Double]
  private var taskOrder: [[Int]]
  private var balancing: BalancingResult
  private let coefficients: UnsafeMutablePointer<Float>
  private let taskWeights: UnsafeMutablePointer<Float>
  var consecutiveSkips = 0
  /// The phase timer of every step.
  public let recorder: StepRecorder
  private let reducer: GradientReducer
  /// The allreduce mode of this run, with ``AllreduceMode/auto`` resolved.
  public var allreduceMode: AllreduceMode { reducer.mode }
  /// The number of allreduce calls of the last step.
  public var allreduceCallsPerStep: Int { reducer.allreduce.callCount }
  /// The bytes of the allreduce's staging buffers.
  var allreduceStagingBytes: Int { reducer.allreduce.stagingBytes }
  /// Rank 0's lock on the run folder, held while the trainer lives; nil on other ranks.
  private var runLock: RunDirectoryLock?
  /// The paths in the run folder that rank 0 made, removed again when `--resume` fails.
  var createdPaths: [String] = []
  /// The `CONCORD_FAULT_RANK` testing aid, or nil.
  let faultInjection: FaultInjection?
  /// The exchange of SimCLR projections with `--simclr-negatives global`, or nil.
  private var projectionExchange: CommunicatorProjectionExchange?

  /// Builds the trainer: loads the data, creates or restores the model, and prepares the
  /// run folder on rank 0.
  ///
  /// - Throws: ``TrainingError`` naming the file, flag or value at fault.
  public convenience init(configuration: TrainingConfiguration, communicator: Communicator)
    throws
  {
    let (trainSet, testSet) = try Self.loadDatasets(configuration, communicator: communicator)
    try self.init(
      configuration: configuration, communicator: communicator, trainSet: trainSet,
      testSet: testSet)
  }

  /// Builds the trainer on datasets already in memory.
  public init(
    configuration: TrainingConfiguration, communicator: Communicator, trainSet: Dataset,
    testSet: Dataset
  ) throws {
    self.configuration = configuration
    self.communicator = communicator
    let c = configuration
    guard c.batchSize % communicator.size == 0 else {
      throw UsageError(
        "--batch-size \(c.batchSize) does not divide by \(communicator.size) ranks: "
          + "pass a multiple of \(communicator.size)")
    }

    (runDirectory, resumePath) = try Self.resolvePaths(c, communicator)
    guard testSet.height == trainSet.height && testSet.width == trainSet.width else {
      throw TrainingError(
        "--data \(c.dataDirectory): the test images are \(testSet.height)x\(testSet.width) "
          + "but the training images are \(trainSet.height)x\(trainSet.width); pass a folder "
          + "whose two splits have the same image size")
    }
    try Self.checkMemory(c, inputSize: trainSet.height * trainSet.width, ranks: communicator.size)
    self.trainSet = trainSet
    self.testSet = testSet
    guard c.batchSize <= trainSet.count else {
      throw UsageError(
        "--batch-size \(c.batchSize) exceeds the \(trainSet.count) training images: pass at "
          + "most \(trainSet.count)")
    }
    try Self.checkSettings(c, trainCount: trainSet.count, ranks: communicator.size)
    try c.checkAugmentationGroups()
    faultInjection = try FaultInjection.fromEnvironment()
    let sampler = try ShardedSampler(
      datasetCount: trainSet.count, globalBatchSize: c.batchSize, worldSize: communicator.size,
      rank: communicator.rank, seed: c.seed)
    stepsPerEpoch = sampler.stepsPerEpoch
    prefetcher = BatchPrefetcher(
      dataset: trainSet, sampler: sampler, seed: c.seed,
      inBackground: HostCores.hasSpareCore, hasCleanRows: c.supervisedView != .augmented,
      sensitiveKinds: c.augpredKinds, invariantKinds: c.invariantKinds,
      lightKinds: c.supervisedView == .light ? [.flip] : [])
    totalSteps = c.steps > 0 ? c.steps : c.epochs * stepsPerEpoch
    guard c.dumpGradientsStep < totalSteps else {
      throw UsageError(
        "--dump-gradients \(c.dumpGradientsStep) is not a step of this run, which ends at step "
          + "\(totalSteps): pass a step below \(totalSteps)")
    }
    try Self.checkOptimizationSettings(c, stepsPerEpoch: stepsPerEpoch, totalSteps: totalSteps)
    try Self.checkAdapterSettings(c)

    let localBatch = c.batchSize / communicator.size
    let modelConfiguration = c.modelConfiguration(
      height: trainSet.height, width: trainSet.width, classCount: trainSet.classCount,
      augmentationCount: c.augpredKinds.count)
    try Self.checkConvShape(modelConfiguration)
    statisticsReducer = CommunicatorStatisticsReducer(communicator: communicator)
    model = MultiTaskModel(
      configuration: modelConfiguration, capacity: c.rowsPerImage * localBatch,
      seed: c.seed, supervisedView: c.supervisedView,
      statisticsReducer: statisticsReducer)
    if let head = model.heads.lazy.compactMap({ $0 as? SupervisedHead }).first {
      head.labelSmoothing = c.labelSmoothing
    }
    if c.simclrNegatives == .global,
      let head = model.heads.lazy.compactMap({ $0 as? SimCLRHead }).first
    {
      let exchange = CommunicatorProjectionExchange(communicator: communicator)
      head.useGlobalNegatives(exchange)
      projectionExchange = exchange
    }
    guard let kind = BalancerKind(rawValue: c.balancer) else {
      throw UsageError(
        "unknown balancer \(c.balancer): pass one of "
          + BalancerKind.allCases.map(\.rawValue).joined(separator: ", "))
    }
    balancer = kind.makeBalancer(
      taskCount: c.tasks.count, alpha: c.gradNormAlpha,
      weightLearningRate: c.gradNormLearningRate)
    optimizer = Self.makeOptimizer(c, layout: model.layout)
    learningRateSchedule = Self.makeLearningRateSchedule(
      c, stepsPerEpoch: stepsPerEpoch, totalSteps: totalSteps)
    targetDecaySchedule = TargetDecaySchedule(
      kind: c.targetDecaySchedule, baseDecay: c.targetDecay, totalSteps: totalSteps)

    let t = c.tasks.count
    gram = Array(repeating: 0, count: t * t)
    normSquares = Array(repeating: 0, count: t)
    lossValues = Array(repeating: 0, count: t)
    taskOrder = PCGrad.taskOrder(seed: c.seed, step: 0, taskCount: t)
    balancing = BalancingResult(taskCount: t)
    recorder = StepRecorder(
      keepsIntervals: c.tracePath != nil,
      capacity: ChromeTrace.capacity(
        steps: totalSteps, taskCount: t, checkpointEvery: c.checkpointEvery))
    reducer = try GradientReducer(
      communicator: communicator, model: model, mode: c.allreduceMode,
      fusion: c.allreduceFusion, precision: c.allreducePrecision)
    coefficients = .allocate(capacity: t)
    taskWeights = .allocate(capacity: t)

    let metricsPath = runDirectory + "/metrics.jsonl"
    if communicator.isRoot {
      (runLock, createdPaths) = try Self.prepareRunDirectory(runDirectory)
      if !FileManager.default.fileExists(atPath: metricsPath) { createdPaths.append(metricsPath) }
    }
    log = try MetricsLog(
      isRoot: communicator.isRoot, path: communicator.isRoot ? runDirectory + "/metrics.jsonl" : nil
    )
    if communicator.isRoot {
      for name in try Checkpoint.removeInterruptedWrites(in: runDirectory + "/checkpoints") {
        log.print("concord: removed \(name), left by an interrupted checkpoint write")
      }
    }
  }

  /// Restores the checkpoint named by `--resume`, if any.
  ///
  /// Every rank must call it.
  public func resumeIfRequested() throws {
    guard !resumePath.isEmpty else { return }
    do {
      try restore(from: resumePath)
    } catch {
      removeCreatedPaths()
      throw error
    }
  }

  /// Decides the run folder and the checkpoint to resume from, on rank 0, and sends both to
  /// every rank, so that all ranks agree even when their clocks or file systems differ.
  ///
  /// An empty `--out` means `runs/<UTC timestamp>`, or with `--resume latest` the newest
  /// folder in `runs/`, or with `--resume PATH` the run folder that contains `PATH`.
  static func resolvePaths(_ c: TrainingConfiguration, _ communicator: Communicator) throws
    -> (runDirectory: String, resumePath: String)
  {
    var message: [UInt8] = []
    if communicator.isRoot {
      var text: String
      do {
        let (directory, resume) = try resolvePathsOnRoot(c)
        try checkOutputPaths(c, directory: directory)
        text = "ok\n\(directory)\n\(resume)"
      } catch let error as UsageError {
        text = "usage\n\(error)"
      } catch {
        text = "error\n\(error)"
      }
      message = Array(text.utf8)
    }
    try communicator.broadcast(&message, root: 0)
    let parts = String(decoding: message, as: UTF8.self).split(
      separator: "\n", omittingEmptySubsequences: false
    ).map(String.init)
    guard parts.count == 3, parts[0] == "ok" else {
      let message = parts.dropFirst().joined(separator: " ")
      if parts[0] == "usage" { throw UsageError(message) }
      throw TrainingError(message)
    }
    return (parts[1], parts[2])
  }

  private static func resolvePathsOnRoot(_ c: TrainingConfiguration) throws -> (String, String) {
    var directory = c.outputDirectory
    switch c.resume {
    case "":
      if directory.isEmpty {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd-HHmmss"
        directory = "runs/" + formatter.string(from: Date())
      }
      try RunDirectoryLock.checkNotHeld(directory: directory)
      // A new run must not mix its checkpoints and metrics with those of an earlier one, and
      // --keep would delete the earlier checkpoints.
      if Checkpoint.newest(in: directory + "/checkpoints") != nil {
        throw UsageError(
          "--out \(directory) already contains a run: pass --resume latest to continue it, or "
            + "another --out")
      }
      if FileManager.default.fileExists(atPath: directory + "/metrics.jsonl") {
        // A run that ended before its first checkpoint cannot be resumed.
        throw UsageError(
          "--out \(directory) already contains a run that wrote no checkpoint: remove "
            + "\(directory) to start again there, or pass another --out")
      }
      if let trace = c.tracePath {
        let folder = deletingLastPathComponent(trace)
        guard AtomicFile.canWrite(inFolderOf: trace) else {
          throw UsageError(
            "--trace \(trace): the folder \(folder) does not exist or is not writable; "
              + "pass a path in a writable folder")
        }
      }
      return (directory, "")
    case "latest":
      if directory.isEmpty {
        let runs = (try? FileManager.default.contentsOfDirectory(atPath: "runs")) ?? []
        guard
          let newest = runs.sorted().last(where: {
            Checkpoint.newest(in: "runs/\($0)/checkpoints") != nil
          })
        else {
          throw TrainingError(
            "--resume latest found no checkpoint under runs/: pass --out RUN_DIR or --resume PATH")
        }
        directory = "runs/" + newest
      }
      try RunDirectoryLock.checkNotHeld(directory: directory)
      guard let path = Checkpoint.newest(in: directory + "/checkpoints") else {
        throw TrainingError(
          "--resume latest found no checkpoint in \(directory)/checkpoints: start without --resume")
      }
      return (directory, path)
    default:
      guard FileManager.default.fileExists(atPath: c.resume) else {
        throw TrainingError(
          "--resume \(c.resume): file not found; pass a checkpoint path or latest")
      }
      if directory.isEmpty { directory = Checkpoint.runDirectory(containing: c.resume) }
      return (directory, c.resume)
    }
  }

  /// Reads the checkpoint on rank 0, sends its bytes to every rank, and restores it everywhere.
  private func restore(from path: String) throws {
    let bytes = try Checkpoint.readOnRoot(path, communicator: communicator)
    let stored = try Checkpoint.restore(self, from: bytes, path: path)
    guard step <= totalSteps else {
      throw UsageError(
        "--steps \(totalSteps) is below step \(step) of \(path): pass --steps above \(step) "
          + "to continue the run")
    }
    try log.truncate(afterStep: step)
    log.print("concord: resumed from \(path) at step \(step)")
    // Settings left out on the command line take their defaults, not the checkpoint's values.
    let changed = configuration.differences(
      from: stored, ignoring: ["outputDirectory", "resume", "steps", "epochs", "tracePath"])
    if !changed.isEmpty {
      log.print(
        "concord: settings that differ from the checkpoint's: "
          + changed.map { "\($0.key) \($0.old) -> \($0.new)" }.joined(separator: ", "))
    }
  }

  /// Rejects encoder widths whose training state alone would not fit in this host's memory:
  /// parameters, update, the optimizer's state, the BYOL target and T per-task gradients,
  /// and the encoder's activations and deltas for the local batch.
  static func checkMemory(_ c: TrainingConfiguration, inputSize: Int, ranks: Int) throws {
    if c.encoder == .conv { return try checkConvMemory(c, inputSize: inputSize, ranks: ranks) }
    let widths = [inputSize] + c.hiddenSizes
    var parameters = 0.0
    for (inputs, outputs) in zip(widths, widths.dropFirst()) {
      parameters += Double(inputs + 1) * Double(outputs)
    }
    var bytes = parameters * 4 * Double(3 + c.optimizer.stateNames.count + c.tasks.count)
    // Each layer keeps the activations of the online and the target encoder and T deltas,
    // for the two views and, with --supervised-view clean or both, the clean image. With
    // adapters, each task group's pass keeps its own (an overestimate for the target).
    let rows = Double(c.rowsPerImage * (c.batchSize / max(ranks, 1)))
    let passes = c.adapters == .parallel ? TaskGroup.present(in: c.tasks).count : 1
    bytes +=
      rows * Double(c.hiddenSizes.reduce(0, +)) * 4 * Double(2 + c.tasks.count) * Double(passes)
    try checkFits(
      bytes: bytes, ranks: ranks,
      setting: "--hidden \(c.hiddenSizes.map(String.init).joined(separator: ","))",
      fix: "pass smaller widths or a smaller --batch-size")
  }

  /// Throws a usage error naming `setting` when `bytes` per rank exceed this host's memory
  /// shared by `ranks` ranks.
  private static func checkFits(bytes: Double, ranks: Int, setting: String, fix: String) throws {
    let available = Double(ProcessInfo.processInfo.physicalMemory) / Double(max(ranks, 1))
    guard bytes < available else {
      throw UsageError(
        "\(setting) needs about \(Int(bytes / 1e9)) GB per rank for the encoder alone, more "
          + "than this host's \(Int(available / 1e9)) GB per rank: \(fix)")
    }
  }

  /// Rejects a convolutional encoder whose buffers would not fit in this host's memory.
  ///
  /// The estimate takes each block's patch matrix, its outputs before and after batch
  /// normalisation, pooling and ReLU, and T deltas, then each fully connected layer's
  /// outputs and T deltas of its input and output, for every row of the online and the target
  /// encoder, on a square image of `inputSize` pixels.
  static func checkConvMemory(_ c: TrainingConfiguration, inputSize: Int, ranks: Int) throws {
    var side = Double(inputSize).squareRoot()
    var inputs = 1.0
    var floatsPerRow = 0.0
    var parameters = 0.0
    for channels in c.convChannels.map(Double.init) {
      floatsPerRow += side * side * (9 * inputs + channels * Double(4 + c.tasks.count))
      parameters += 9 * inputs * channels + 2 * channels
      inputs = channels
      side = (side / 2).rounded(.down)
    }
    var widths = c.convHiddenSizes.isEmpty ? [] : [side * side * inputs]
    widths += c.convHiddenSizes.map(Double.init)
    for (inputs, outputs) in zip(widths, widths.dropFirst()) {
      floatsPerRow += inputs * Double(c.tasks.count) + outputs * Double(2 + c.tasks.count)
      parameters += inputs * outputs + outputs
    }
    let rows = Double(c.rowsPerImage * (c.batchSize / max(ranks, 1)))
    var bytes = 2 * rows * floatsPerRow * 4
    bytes += parameters * 4 * Double(3 + c.optimizer.stateNames.count + c.tasks.count)
    try checkFits(
      bytes: bytes, ranks: ranks,
      setting: "--conv-channels \(c.convChannels.map(String.init).joined(separator: ","))",
      fix: "pass fewer channels or a smaller --batch-size")
  }

  deinit {
    coefficients.deallocate()
    taskWeights.deallocate()
  }

  static func makeDirectory(_ path: String) throws {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
      guard isDirectory.boolValue else {
        throw TrainingError("\(path) exists and is not a folder: pass another --out")
      }
      return
    }
    do {
      try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    } catch {
      throw TrainingError(
        "cannot create folder \(path): \(systemErrorDescription(error)); pass another --out")
    }
  }

  /// Trains to the configured step, writes the final checkpoint and evaluates.
  public func run() throws -> RunSummary {
    let start = Date()
    let c = configuration
    // The event file is made only now, once a resumed checkpoint has loaded, so that a run
    // that fails to start leaves the run folder as it was.
    tensorBoard = try collectively(communicator) {
      communicator.isRoot ? try TensorBoardWriter(directory: runDirectory + "/tb") : nil
    }
    printStart()

    var interval = IntervalStatistics(taskCount: c.tasks.count)
    var intervalStart = Date()
    let localBatch = c.batchSize / communicator.size
    let progress = ProgressLine(
      taskNames: c.tasks.map(\.rawValue), batchSize: c.batchSize, totalSteps: totalSteps,
      stepsPerEpoch: stepsPerEpoch)
    let traceStart = try startTraceClock()
    while step < totalSteps {
      let result = try trainStep(localBatch: localBatch)
      step += 1
      injectFaultIfRequested()
      interval.add(losses: lossValues, result: result)
      if log.isTerminal, let text = progress.add(step: step, losses: lossValues, result: result) {
        log.showProgress(text)
      }

      let isLast = step == totalSteps
      if (c.logEvery > 0 && step % c.logEvery == 0) || isLast {
        let seconds = Date().timeIntervalSince(intervalStart)
        report(interval: interval, seconds: seconds, result: result)
        interval = IntervalStatistics(taskCount: c.tasks.count)
        intervalStart = Date()
      }
      let isCheckpointStep = (c.checkpointEvery > 0 && step % c.checkpointEvery == 0) || isLast
      try verifyRanksAgreeIfDue(isCheckpointStep: isCheckpointStep)
      if isCheckpointStep { try saveCheckpoint() }
    }
    log.endProgress()

    try writeTrace(start: traceStart)
    try verifyRanksAgree()
    let evaluation = try Evaluation.run(
      model: model, trainSet: trainSet, testSet: testSet, communicator: communicator,
      settings: c.evaluationSettings)
    let summary = RunSummary(
      evaluation: evaluation, knnTemperature: c.knnTemperature, steps: step,
      seconds: Date().timeIntervalSince(start))
    try writeSummary(summary)
    return summary
  }

  /// Hands the head gradients and the losses, the tail of the reduce buffer, to the reducer.
  private func submitHeadGradients() {
    let reduce = model.reduceBuffer
    let start = model.headGradientStart
    reducer.gradientsReady(reduce.baseAddress + start, count: reduce.count - start)
  }

  /// Allreduces the reduce buffer as a step does, in the same regions and order, without the
  /// backward pass around it; benchmarks time it.
  ///
  /// Every rank must call it.
  func reduceAsInStep() throws {
    reducer.begin()
    submitHeadGradients()
    model.encoder.reportRegions(to: reducer)
    try reducer.finish()
  }

  /// Runs one optimizer step: local gradients, allreduce, balancing, the optimizer, BYOL
  /// target.
  func trainStep(localBatch b: Int) throws -> BalancingResult? {
    recorder.step = step
    defer { recorder.end() }
    optimizer.learningRate = learningRateSchedule.rate(atStep: step)
    recorder.begin(.data)
    let slot = prefetcher.batch(step: step, next: step + 1 < totalSteps ? step + 1 : nil)
    let batch = slot.batch
    recorder.begin(.forward)
    let features = model.forward(batch: batch)
    for t in 0..<model.taskCount {
      recorder.begin(.task(t))
      model.computeHeadGradients(task: t, features: features, batch: batch)
    }
    try projectionExchange?.throwFailure()

    // The heads' gradients and the losses are final now: they start the allreduce, and the
    // encoder's gradients follow layer by layer as the backward pass makes them.
    reducer.begin()
    submitHeadGradients()
    recorder.begin(.encoderBackward)
    model.backwardEncoder(rows: batch.input.rows, observer: reducer)
    try statisticsReducer.throwIfFailed()

    // The allreduce carries every task's gradients and losses: in one call, or one per task
    // (--allreduce-fusion per-task), and with bfloat16 gradients one more for the float32
    // losses. The mean over ranks equals the gradient of the global batch because every rank
    // has the same number of images.
    recorder.begin(.allreduce)
    try reducer.finish()
    let reduce = model.reduceBuffer
    BLAS.scale(reduce.baseAddress, by: 1 / Float(communicator.size), count: reduce.count)

    // From here on every rank computes the same values from the same bytes.
    recorder.begin(.balancing)
    for t in 0..<model.taskCount { lossValues[t] = Double(model.losses[t]) }
    model.taskGram(into: &gram, lastLayerNormSquares: &normSquares)
    if configuration.gradNormLayer == "shared" {
      for t in 0..<model.taskCount { normSquares[t] = gram[t * model.taskCount + t] }
    }
    // A NaN or infinity anywhere in a task's gradient makes its Gram row non-finite, so this
    // test covers every reduced gradient and loss. Every rank has the same reduced values
    // and skips alike.
    guard lossValues.allSatisfy(\.isFinite), gram.allSatisfy(\.isFinite) else {
      consecutiveSkips += 1
      if communicator.isRoot {
        warn(
          rank: communicator.rank,
          "step \(step): non-finite loss or gradient (losses \(lossValues)); step skipped on "
            + "every rank")
      }
      if consecutiveSkips >= 3 {
        throw TrainingError(
          "steps \(step - 2) to \(step) had non-finite losses or gradients: "
            + "\(configuration.divergenceAdvice) or check the data, then resume from the newest checkpoint in "
            + "\(runDirectory)/checkpoints, if there is one",
          isCollective: true)
      }
      return nil
    }
    consecutiveSkips = 0
    try checkLossBound(lossValues)

    // The PCGrad order comes from (seed, step), never from the rank, so every rank
    // projects in the same order, and a resumed run in the order of an uninterrupted one.
    PCGrad.writeTaskOrder(into: &taskOrder, seed: configuration.seed, step: step)
    let input = BalancingInput(
      taskCount: model.taskCount, gram: gram, gradNormSquares: normSquares, losses: lossValues,
      taskOrder: taskOrder)
    let weightsBefore = balancer.taskWeights
    let initialLossesBefore = balancer.initialLosses ?? lossValues
    balancer.balance(input, into: &balancing)
    let result = balancing
    for t in 0..<model.taskCount {
      coefficients[t] = Float(result.coefficients[t])
      taskWeights[t] = Float(result.taskWeights[t])
    }
    model.formUpdate(coefficients: coefficients, taskWeights: taskWeights)
    if step == configuration.dumpGradientsStep {
      try dumpGradients(input: input, weights: weightsBefore, initialLosses: initialLossesBefore)
    }
    recorder.begin(.optimizer)
    optimizer.update(
      parameters: model.parameters.baseAddress, gradients: model.update.baseAddress,
      count: model.layout.count)
    model.updateTarget(decay: targetDecaySchedule.decay(atStep: step))
    return result
  }

  /// Writes the balancer's inputs of this step for `concord balance` (rank 0), and checks
  /// that every rank formed the same update direction.
  private func dumpGradients(input: BalancingInput, weights: [Double], initialLosses: [Double])
    throws
  {
    let blocks = model.encoder.gradientBlocks
    let lastWeight = model.encoder.lastWeightBlockIndex
    let lastWeightStart = blocks.prefix(lastWeight).reduce(0) { $0 + $1.columns }
    let range =
      configuration.gradNormLayer == "shared"
      ? 0..<model.encoderParameterCount
      : lastWeightStart..<(lastWeightStart + blocks[lastWeight].columns)
    let path = "\(runDirectory)/gradients-step-\(step).safetensors"
    try collectively(communicator) {
      guard communicator.isRoot else { return }
      try GradientDump.write(
        model: model, input: input, weights: weights, initialLosses: initialLosses,
        gradNormRange: range, configuration: configuration, step: step, to: path)
    }
    var checksum = StateChecksum()
    checksum.add(model.update)
    let all = try communicator.allgather(Int64(bitPattern: checksum.value))
    guard all.allSatisfy({ $0 == all[0] }) else {
      throw TrainingError(
        "step \(step): the update direction differs between ranks", isCollective: true)
    }
    log.print(
      "concord: wrote \(path); update direction checksum "
        + "\(String(format: "%016llx", checksum.value)) identical on all \(communicator.size) ranks"
    )
  }

  private func printStart() {
    let c = configuration
    log.print(
      "concord: \(communicator.size) rank(s), \(BLAS.threadCount) BLAS thread(s) per rank, "
        + "\(reducer.mode.rawValue) allreduce (fusion \(c.allreduceFusion.rawValue), "
        + "\(c.allreducePrecision.rawValue)), "
        + "tasks \(c.tasks.map(\.rawValue).joined(separator: ",")), balancer \(c.balancer), "
        + optimizationSummary)
    log.print(
      "concord: \(trainSet.count) training images, global batch \(c.batchSize) "
        + "(\(c.batchSize / communicator.size) per rank), \(stepsPerEpoch) steps per epoch, "
        + "steps \(step)..<\(totalSteps), \(model.layout.count) parameters"
        + (c.encoder == .conv ? ", encoder \(c.encoderDescription)" : "")
        + (c.adapters == .none ? "" : ", adapters \(c.adapterDescription)"))
    log.print("concord: writing to \(runDirectory)")
  }

  private func report(interval: IntervalStatistics, seconds: Double, result: BalancingResult?) {
    let c = configuration
    let samplesPerSecond = Double(interval.steps * c.batchSize) / max(seconds, 1e-9)
    let secondsLeft = Double(totalSteps - step) * seconds / Double(max(interval.steps, 1))
    let names = c.tasks.map(\.rawValue)
    let losses = interval.meanLosses
    let weights = result?.taskWeights ?? Array(repeating: .nan, count: names.count)
    let norms = result?.gradNorms ?? normSquares.map { $0.squareRoot() }
    let targets = result?.targets ?? Array(repeating: .nan, count: names.count)
    var cosines: [(String, Double)] = []
    for i in 0..<names.count {
      for j in (i + 1)..<names.count {
        let value = result?.cosineSimilarities[i * names.count + j] ?? .nan
        cosines.append(("\(names[i])/\(names[j])", value))
      }
    }

    var line = JSONLine()
    line.add("step", step)
    line.add("epoch", step == 0 ? 0 : (step - 1) / stepsPerEpoch)
    line.add("loss", Array(zip(names, losses)))
    line.add("weight", Array(zip(names, weights)))
    line.add("grad_norm", Array(zip(names, norms)))
    line.add("target", Array(zip(names, targets)))
    line.add("cosine", cosines)
    line.add("projections", interval.projections)
    line.add("skipped", interval.skipped)
    line.add("lr", Double(optimizer.learningRate))
    line.add("samples_per_second", samplesPerSecond)
    line.add("seconds_left", secondsLeft)
    log.record(line)
    addTensorBoardScalars(step: step, line.scalars.filter { $0.tag != "step" })
    // A terminal shows the progress line instead.
    guard !log.isTerminal else { return }

    let lossText = zip(names, losses).map { "\($0) \(String(format: "%.4f", $1))" }
      .joined(separator: " ")
    let weightText = weights.map { String(format: "%.3f", $0) }.joined(separator: " ")
    log.print(
      "step \(step)/\(totalSteps) epoch \(step == 0 ? 0 : (step - 1) / stepsPerEpoch) | loss \(lossText) "
        + "| weights \(weightText) | lr \(String(format: "%.3g", Double(optimizer.learningRate))) "
        + "| \(String(format: "%.0f", samplesPerSecond)) samples/s "
        + "| eta \(formatDuration(secondsLeft))")
  }

  func saveCheckpoint() throws {
    // Every rank has the same parameters, so every rank reaches the same verdict.
    guard model.parameters.elements.allSatisfy(\.isFinite) else {
      throw TrainingError(
        "step \(step): the parameters hold NaN or infinity, so no checkpoint was written: "
          + configuration.divergenceAdvice, isCollective: true)
    }
    let path = String(format: "%@/checkpoints/step-%07d.safetensors", runDirectory, step)
    // Every rank learns whether rank 0's write failed, so that all of them stop alike.
    try collectively(communicator) {
      guard communicator.isRoot else { return }
      recorder.begin(.checkpoint)
      defer { recorder.end() }
      try Checkpoint.save(trainer: self, to: path)
    }
  }

  /// Returns the kNN and probe accuracies of each task group's features, as TensorBoard
  /// scalars; none without adapters.
  private func groupScalars(_ summary: RunSummary) -> [(String, Double)] {
    var scalars: [(String, Double)] = []
    for (group, knn, probe) in summary.groupAccuracies {
      scalars.append(("eval/knn_accuracy_" + group, knn))
      scalars.append(("eval/linear_probe_accuracy_" + group, probe ?? .nan))
    }
    return scalars
  }

  private func writeSummary(_ summary: RunSummary) throws {
    addTensorBoardScalars(
      step: summary.steps,
      [
        ("eval/test_accuracy", summary.testAccuracy ?? .nan),
        ("eval/knn_accuracy", summary.knnAccuracy),
        ("eval/linear_probe_accuracy", summary.linearProbeAccuracy ?? .nan),
        ("eval/augpred_accuracy", summary.augpredAccuracy ?? .nan),
      ] + summary.augpredAccuracyPerKind.map { ("eval/augpred_accuracy_per_kind/" + $0, $1) }
        + groupScalars(summary))
    log.print(summary.consoleLine)
    if let line = summary.perKindConsoleLine { log.print(line) }
    guard communicator.isRoot else { return }
    try summary.write(toDirectory: runDirectory)
  }
}

/// Sums over the steps of one logging interval.
struct IntervalStatistics {
  var steps = 0
  var skipped = 0
  var projections = 0
  var lossSums: [Double]

  init(taskCount: Int) {
    lossSums = Array(repeating: 0, count: taskCount)
  }

  mutating func add(losses: [Double], result: BalancingResult?) {
    steps += 1
    guard let result else {
      skipped += 1
      return
    }
    projections += result.projectionCount
    for t in 0..<losses.count { lossSums[t] += losses[t] }
  }

  /// The mean loss of each task over the steps that were not skipped, NaN (`null` in
  /// metrics.jsonl) when every step of the interval was skipped.
  var meanLosses: [Double] {
    guard steps > skipped else { return lossSums.map { _ in .nan } }
    return lossSums.map { $0 / Double(steps - skipped) }
  }
}
