import ConcordModel
import ConcordTensors
import ConcordTraining

/// One flag of `concord train`: its name, value placeholder, help, and how it sets the
/// configuration.
struct TrainOption: Sendable {
  let name: String
  let value: String
  let help: String
  let apply: @Sendable (inout TrainingConfiguration, String) throws -> Void
}

/// The flags of `concord train`, in the order `--help` lists them.
let trainOptions: [TrainOption] = [
  TrainOption(
    name: "--data", value: "DIR",
    help: "folder of MNIST-format IDX files (default /usr/share/datasets/fashion-mnist)"
  ) { $0.dataDirectory = try nonEmpty($1, "--data") },
  TrainOption(
    name: "--out", value: "DIR",
    help: "run folder for metrics, checkpoints and eval.json (default runs/<UTC timestamp>)"
  ) { $0.outputDirectory = try nonEmpty($1, "--out") },
  TrainOption(
    name: "--epochs", value: "N", help: "passes over the training set (default 30)"
  ) { $0.epochs = try positive($1, "--epochs") },
  TrainOption(
    name: "--steps", value: "N",
    help: "total optimizer steps of the run; a resumed run continues up to N (default: epochs)"
  ) { $0.steps = try positive($1, "--steps") },
  TrainOption(
    name: "--batch-size", value: "N",
    help: "global batch in images, split evenly over the ranks (default 256)"
  ) { $0.batchSize = try positive($1, "--batch-size") },
  TrainOption(
    name: "--lr", value: "X",
    help: "learning rate of the optimizer, after any warm-up (default 0.001)"
  ) { $0.learningRate = Float(try positiveReal($1, "--lr")) },
  TrainOption(
    name: "--optimizer", value: "adam|lars",
    help: "Adam, or LARS: SGD with momentum and a layer-wise trust ratio (default adam)"
  ) { $0.optimizer = try namedCase($1, "--optimizer") },
  TrainOption(
    name: "--momentum", value: "X", help: "LARS momentum, in [0, 1) (default 0.9)"
  ) { $0.momentum = try belowOne($1, "--momentum", example: "0.9") },
  TrainOption(
    name: "--weight-decay", value: "X",
    help: "LARS weight decay of the weights, not the biases (default 1e-6)"
  ) { $0.weightDecay = Float(try nonNegativeReal($1, "--weight-decay")) },
  TrainOption(
    name: "--lars-eta", value: "X", help: "LARS trust coefficient eta (default 0.001)"
  ) { $0.larsEta = Float(try positiveReal($1, "--lars-eta")) },
  TrainOption(
    name: "--lr-schedule", value: "constant|cosine",
    help: "learning rate after the warm-up: constant, or a cosine decay to 0 (default constant)"
  ) { $0.learningRateSchedule = try namedCase($1, "--lr-schedule") },
  TrainOption(
    name: "--warmup-epochs", value: "E",
    help: "linear warm-up of the learning rate from 0 over E epochs, fractions allowed "
      + "(default 0)"
  ) { $0.warmupEpochs = try nonNegativeReal($1, "--warmup-epochs") },
  TrainOption(
    name: "--warmup-steps", value: "N",
    help: "linear warm-up of the learning rate from 0 over N steps (default 0)"
  ) { configuration, value in
    guard let steps = Int(value), steps >= 0 else {
      throw UsageError("invalid --warmup-steps \(value): pass a whole number >= 0")
    }
    configuration.warmupSteps = steps
  },
  TrainOption(
    name: "--tasks", value: "LIST",
    help: "comma-separated tasks: supervised, simclr, byol, augpred (default all four)"
  ) { $0.tasks = try taskList($1) },
  TrainOption(
    name: "--supervised-view", value: "augmented|clean|both|light",
    help: "images of the supervised head: the two augmented views, the un-augmented image, "
      + "all three, or the image flipped half the time (default augmented)"
  ) { $0.supervisedView = try namedCase($1, "--supervised-view") },
  TrainOption(
    name: "--sensitive", value: "LIST",
    help: "comma-separated augmentation kinds whose labels augpred predicts: crop, flip, "
      + "colorJitter, blur, noise, erasing (default: every kind not in --invariant)"
  ) { $0.sensitiveKinds = try TrainingConfiguration.augmentationKinds($1, flag: "--sensitive") },
  TrainOption(
    name: "--invariant", value: "LIST",
    help: "comma-separated augmentation kinds that the invariance task teaches the encoder to "
      + "ignore; adds the task invariance after the others (default none)"
  ) { $0.invariantKinds = try TrainingConfiguration.augmentationKinds($1, flag: "--invariant") },
  TrainOption(
    name: "--balancer", value: "NAME",
    help: "equal, gradnorm, pcgrad or pcgrad+gradnorm (default pcgrad+gradnorm)"
  ) { configuration, value in
    let names = ["equal", "gradnorm", "pcgrad", "pcgrad+gradnorm"]
    guard names.contains(value) else {
      throw UsageError(
        "invalid --balancer \(value): pass one of \(names.joined(separator: ", "))")
    }
    configuration.balancer = value
  },
  TrainOption(name: "--seed", value: "N", help: "seed of every random stream (default 0)") {
    guard let seed = UInt64($1) else {
      throw UsageError("invalid --seed \($1): pass a whole number from 0 to \(UInt64.max)")
    }
    $0.seed = seed
  },
  TrainOption(
    name: "--log-every", value: "N", help: "steps between metrics lines (default 50)"
  ) { $0.logEvery = try positive($1, "--log-every") },
  TrainOption(
    name: "--checkpoint-every", value: "N",
    help: "steps between checkpoints; the last step is always saved (default 1000)"
  ) { $0.checkpointEvery = try positive($1, "--checkpoint-every") },
  TrainOption(
    name: "--keep", value: "N", help: "checkpoints to keep, newest first (default 3)"
  ) { $0.keep = try positive($1, "--keep") },
  TrainOption(
    name: "--resume", value: "PATH|latest",
    help: "continue from a checkpoint, or from the newest one of the run folder"
  ) { $0.resume = try nonEmpty($1, "--resume") },
  TrainOption(
    name: "--hidden", value: "LIST", help: "encoder widths, comma-separated (default 512,256)"
  ) { $0.hiddenSizes = try positiveList($1, "--hidden", of: "widths", example: "512,256") },
  TrainOption(
    name: "--encoder", value: "mlp|conv",
    help: "encoder: fully connected (--hidden) or convolutional (--conv-channels) (default mlp)"
  ) { $0.encoder = try namedCase($1, "--encoder") },
  TrainOption(
    name: "--conv-channels", value: "LIST",
    help: "channels of the conv encoder's 3x3 blocks, comma-separated (default 32,64)"
  ) {
    $0.convChannels = try positiveList($1, "--conv-channels", of: "channels", example: "32,64,128")
  },
  TrainOption(
    name: "--conv-hidden", value: "LIST|none",
    help: "fully connected widths after the conv blocks, or none for global average pooling "
      + "(default 256)"
  ) {
    $0.convHiddenSizes =
      $1 == "none"
      ? [] : try positiveList($1, "--conv-hidden", of: "widths or none", example: "256")
  },
  TrainOption(
    name: "--adapters", value: "none|parallel",
    help:
      "residual adapters per task group (invariant: simclr, byol, invariance; sensitive: augpred) "
      + "beside every MLP encoder layer (default none)"
  ) { $0.adapters = try namedCase($1, "--adapters") },
  TrainOption(
    name: "--adapter-rank", value: "R",
    help: "rank of each adapter's low-rank path, with --adapters parallel "
      + "(default \(TrainingConfiguration.defaultAdapterRank))"
  ) { $0.adapterRank = try positive($1, "--adapter-rank") },
  TrainOption(
    name: "--temperature", value: "X", help: "SimCLR NT-Xent temperature (default 0.5)"
  ) { $0.temperature = Float(try positiveReal($1, "--temperature")) },
  TrainOption(
    name: "--label-smoothing", value: "X",
    help: "label smoothing of the supervised cross-entropy, in [0, 1), as PyTorch's "
      + "CrossEntropyLoss takes it (default 0)"
  ) { $0.labelSmoothing = try belowOne($1, "--label-smoothing", example: "0.1") },
  TrainOption(
    name: "--simclr-negatives", value: "local|global",
    help: "NT-Xent negatives from the rank's own batch or, through an allgather, from the "
      + "global batch (default local)"
  ) { $0.simclrNegatives = try namedCase($1, "--simclr-negatives") },
  TrainOption(
    name: "--target-decay", value: "X",
    help: "BYOL target network moving-average decay, in [0, 1) (default 0.99)"
  ) { $0.targetDecay = try belowOne($1, "--target-decay", example: "0.99") },
  TrainOption(
    name: "--target-decay-schedule", value: "constant|cosine",
    help: "BYOL target decay: constant, or from --target-decay up to 1 along a cosine "
      + "(default constant)"
  ) { $0.targetDecaySchedule = try namedCase($1, "--target-decay-schedule") },
  TrainOption(
    name: "--gradnorm-alpha", value: "X", help: "GradNorm asymmetry alpha (default 1.5)"
  ) { configuration, value in
    guard let alpha = Double(value), alpha >= 0, alpha.isFinite else {
      throw UsageError("invalid --gradnorm-alpha \(value): pass a number >= 0 such as 1.5")
    }
    configuration.gradNormAlpha = alpha
  },
  TrainOption(
    name: "--gradnorm-lr", value: "X", help: "GradNorm task-weight learning rate (default 0.025)"
  ) { $0.gradNormLearningRate = try positiveReal($1, "--gradnorm-lr") },
  TrainOption(
    name: "--gradnorm-layer", value: "last|shared",
    help: "GradNorm norms on the last shared layer's weight or on all shared parameters"
  ) { configuration, value in
    guard value == "last" || value == "shared" else {
      throw UsageError("invalid --gradnorm-layer \(value): pass last or shared")
    }
    configuration.gradNormLayer = value
  },
  TrainOption(
    name: "--dump-gradients", value: "STEP",
    help: "write the balancer's inputs at STEP (from 0) to OUT/gradients-step-STEP.safetensors"
  ) { configuration, value in
    guard let step = Int(value), step >= 0 else {
      throw UsageError("invalid --dump-gradients \(value): pass a step number >= 0")
    }
    configuration.dumpGradientsStep = step
  },
  TrainOption(
    name: "--allreduce", value: "auto|overlap|blocking",
    help: "reduce gradients during the backward pass on a thread, or after it (default auto)"
  ) { configuration, value in
    guard let mode = AllreduceMode(rawValue: value) else {
      throw UsageError("invalid --allreduce \(value): pass auto, overlap or blocking")
    }
    configuration.allreduceMode = mode
  },
  TrainOption(
    name: "--allreduce-fusion", value: "all|per-task",
    help: "one allreduce of every task's gradients, or one per task after the backward pass "
      + "(default all)"
  ) { $0.allreduceFusion = try namedCase($1, "--allreduce-fusion") },
  TrainOption(
    name: "--allreduce-precision", value: "float32|bfloat16",
    help: "number format of the gradients in the allreduce; losses stay float32 "
      + "(default float32)"
  ) { $0.allreducePrecision = try namedCase($1, "--allreduce-precision") },
  TrainOption(
    name: "--blas-threads", value: "N",
    help: "OpenBLAS threads per rank (default: cores of the host / ranks on it)"
  ) { configuration, value in
    let threads = try positive(value, "--blas-threads")
    guard threads <= BLAS.maximumThreadCount else {
      throw UsageError(
        "invalid --blas-threads \(value): this OpenBLAS runs at most "
          + "\(BLAS.maximumThreadCount) threads, so pass 1 to \(BLAS.maximumThreadCount)")
    }
    configuration.blasThreads = threads
  },
  TrainOption(
    name: "--train-limit", value: "N", help: "use only the first N training images (default all)"
  ) { $0.trainLimit = try positive($1, "--train-limit") },
  TrainOption(
    name: "--test-limit", value: "N", help: "evaluate on only the first N test images (default all)"
  ) { $0.testLimit = try positive($1, "--test-limit") },
  TrainOption(
    name: "--knn", value: "K",
    help: "neighbours of the kNN evaluation (default 200, or the training images if fewer)"
  ) { $0.knnNeighbours = try positive($1, "--knn") },
  TrainOption(
    name: "--knn-temperature", value: "T",
    help: "temperature of the kNN vote weights exp(similarity / T) (default 0.1)"
  ) { $0.knnTemperature = Float(try positiveReal($1, "--knn-temperature")) },
  TrainOption(
    name: "--linear-probe", value: "",
    help: "after training, also train and test a linear probe on the frozen features"
  ) { configuration, value in
    guard value.isEmpty else {
      throw UsageError("--linear-probe takes no value, got \(value): pass --linear-probe alone")
    }
    configuration.linearProbe = true
  },
  TrainOption(
    name: "--probe-epochs", value: "N",
    help: "passes of the linear probe over the training features (default 10)"
  ) { $0.probeEpochs = try positive($1, "--probe-epochs") },
  TrainOption(
    name: "--trace", value: "FILE",
    help: "write every rank's step phases to FILE as a Chrome trace for Perfetto"
  ) { $0.tracePath = try nonEmpty($1, "--trace") },
  TrainOption(
    name: "--loss-bound", value: "X",
    help: "stop when a task's loss exceeds X times max(its first-step loss, 1) (default 10000)"
  ) { $0.lossBound = try positiveReal($1, "--loss-bound") },
  TrainOption(
    name: "--verify-every", value: "N",
    help: "steps between rank state comparisons; 0: only before checkpoints (default 0)"
  ) { configuration, value in
    guard let steps = Int(value), steps >= 0 else {
      throw UsageError("invalid --verify-every \(value): pass a whole number >= 0")
    }
    configuration.verifyEvery = steps
  },
  TrainOption(
    name: ConfigurationFile.flag, value: "FILE",
    help: "read settings from a JSON object keyed by flag names; command-line flags win"
  ) { _, _ in
    // parseTrainArguments applies the file before every other flag.
  },
]

/// Parses the arguments of `concord train` (without the subcommand).
///
/// - Parameter commandKeys: keys that a `--config` file may contain besides the flags of
///   `concord train`, read by the calling command itself.
func parseTrainArguments(_ arguments: [String], commandKeys: [String] = []) throws
  -> TrainingConfiguration
{
  var configuration = TrainingConfiguration()
  try applyConfigurationFile(in: arguments, to: &configuration, commandKeys: commandKeys)
  var index = 0
  while index < arguments.count {
    var flag = arguments[index]
    var value: String? = nil
    if let equals = flag.firstIndex(of: "="), flag.hasPrefix("--") {
      value = String(flag[flag.index(after: equals)...])
      flag = String(flag[..<equals])
    }
    guard let option = trainOptions.first(where: { $0.name == flag }) else {
      throw UsageError(unknownFlagMessage(flag))
    }
    // A switch such as --linear-probe takes no value.
    if value == nil && option.value.isEmpty {
      value = ""
    }
    if value == nil {
      index += 1
      guard index < arguments.count else {
        throw UsageError("\(flag) needs a value: pass \(flag) \(option.value)")
      }
      value = arguments[index]
    }
    try option.apply(&configuration, value!)
    index += 1
  }
  configuration.addInvarianceTask()
  return configuration
}

/// Returns the usage text of `concord train`.
func trainUsage() -> String {
  var lines = [
    "usage: concord train [FLAGS]",
    "",
    "Trains one shared encoder on several tasks; run under mpirun for several ranks.",
    "",
    "flags:",
  ]
  for option in trainOptions {
    let left = "  \(option.name) \(option.value)"
    lines.append(
      left.padding(toLength: max(left.count + 2, 30), withPad: " ", startingAt: 0) + option.help)
  }
  lines.append("  --help".padding(toLength: 30, withPad: " ", startingAt: 0) + "print this text")
  return lines.joined(separator: "\n")
}

private func unknownFlagMessage(_ flag: String) -> String {
  guard flag.hasPrefix("-") else {
    return "unexpected argument \(flag): concord train takes flags, each with its value, such "
      + "as --steps 100, and a switch such as --linear-probe takes no value"
  }
  let names = trainOptions.map(\.name) + ["--help"]
  let nearest = names.min { editDistance($0, flag) < editDistance($1, flag) }!
  if editDistance(nearest, flag) <= max(2, flag.count / 3) {
    return "unknown flag \(flag): did you mean \(nearest)? (concord train --help lists all)"
  }
  return "unknown flag \(flag): concord train --help lists the flags"
}

private func positive(_ value: String, _ flag: String) throws -> Int {
  guard let number = Int(value), number > 0 else {
    if Int(value) == nil, !value.isEmpty, value.allSatisfy({ ("0"..."9").contains($0) }) {
      throw UsageError(
        "invalid \(flag) \(value): too large, pass a whole number from 1 to \(Int.max)")
    }
    throw UsageError("invalid \(flag) \(value): pass a whole number greater than 0")
  }
  return number
}

/// Returns `value` as a decay rate in `[0, 1)`.
///
/// - Throws: ``UsageError`` naming `flag` and `value`, with `example` as a valid value.
private func belowOne(_ value: String, _ flag: String, example: String) throws -> Float {
  guard let number = Float(value), number >= 0, number < 1 else {
    if let exact = Double(value), exact >= 0, exact < 1 {
      throw UsageError(
        "invalid \(flag) \(value): it rounds to 1 in single precision, so pass at most "
          + "\(1 - Float.ulpOfOne / 2)")
    }
    throw UsageError("invalid \(flag) \(value): pass a number in [0, 1) such as \(example)")
  }
  return number
}

private func nonNegativeReal(_ value: String, _ flag: String) throws -> Double {
  guard let number = Double(value), number >= 0, number.isFinite else {
    throw UsageError("invalid \(flag) \(value): pass a number >= 0")
  }
  return number
}

/// Returns the comma-separated whole numbers of `value`, each greater than 0.
///
/// - Throws: ``UsageError`` naming `flag` and `value`, with `example` as a valid list of `noun`.
private func positiveList(_ value: String, _ flag: String, of noun: String, example: String)
  throws -> [Int]
{
  let numbers = value.split(separator: ",", omittingEmptySubsequences: false).map { Int($0) }
  guard !numbers.isEmpty, numbers.allSatisfy({ ($0 ?? 0) > 0 }) else {
    throw UsageError("invalid \(flag) \(value): pass positive \(noun) such as \(example)")
  }
  return numbers.map { $0! }
}

private func positiveReal(_ value: String, _ flag: String) throws -> Double {
  guard let number = Double(value), number > 0, number.isFinite else {
    throw UsageError("invalid \(flag) \(value): pass a finite number greater than 0")
  }
  return number
}

/// Returns the case of `Choice` whose raw value is `value`.
///
/// - Throws: ``UsageError`` naming `flag` and `value` and listing the valid names.
private func namedCase<Choice: CaseIterable & RawRepresentable>(_ value: String, _ flag: String)
  throws -> Choice where Choice.RawValue == String
{
  guard let choice = Choice(rawValue: value) else {
    let names = Choice.allCases.map(\.rawValue)
    let list = names.dropLast().joined(separator: ", ") + " or " + (names.last ?? "")
    throw UsageError("invalid \(flag) \(value): pass \(list)")
  }
  return choice
}

private func nonEmpty(_ value: String, _ flag: String) throws -> String {
  guard !value.isEmpty else { throw UsageError("\(flag) needs a non-empty value") }
  return value
}

private func taskList(_ value: String) throws -> [TaskKind] {
  guard !value.isEmpty else {
    let defaults = TaskKind.defaultTasks.map(\.rawValue).joined(separator: ",")
    throw UsageError("--tasks is empty: pass at least one task, such as --tasks \(defaults)")
  }
  let names = value.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
  var tasks: [TaskKind] = []
  for name in names {
    guard let task = TaskKind(rawValue: name) else {
      let valid = TaskKind.allCases.map(\.rawValue).joined(separator: ", ")
      throw UsageError("invalid task '\(name)' in --tasks \(value): pass a list of \(valid)")
    }
    guard !tasks.contains(task) else {
      throw UsageError("task \(name) appears twice in --tasks \(value): list each task once")
    }
    tasks.append(task)
  }
  return tasks
}
