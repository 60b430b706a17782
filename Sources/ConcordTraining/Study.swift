import ConcordBalancing
import ConcordDistributed
import Foundation

/// A comparison of gradient balancers: one full training run per balancer and seed, one after
/// the other on the same ranks, each in its own run folder under one study folder.
///
/// Setting `k` of balancer `b` trains with `--balancer b --seed seedBase + k` and otherwise the
/// same settings, into `DIRECTORY/<b>-seed<seed>`. That is a normal run folder, so
/// `concord eval` and `concord plot` work on it. A setting whose folder already contains
/// `eval.json` is skipped, and one that contains a checkpoint resumes from its newest, so a
/// study that was stopped continues where it stopped. At the end rank 0 writes
/// `study.md`, `study.json` and `study.svg` (``StudyReport``).
public struct StudyPlan: Sendable {
  /// The balancers to compare, in the order of the report.
  public var balancers: [BalancerKind]
  /// The number of seeds per balancer.
  public var seedCount: Int
  /// The first seed; the seeds are `seedBase ..< seedBase + seedCount`.
  public var seedBase: UInt64
  /// The study folder.
  public var directory: String
  /// The settings that every run shares; their balancer, seed and run folder are replaced.
  public var training: TrainingConfiguration

  /// Creates a plan of `seedCount` seeds from `seedBase` for each balancer.
  public init(
    balancers: [BalancerKind], seedCount: Int, seedBase: UInt64, directory: String,
    training: TrainingConfiguration
  ) {
    self.balancers = balancers
    self.seedCount = seedCount
    self.seedBase = seedBase
    self.directory = directory
    self.training = training
  }

  /// One run of the study.
  public struct Setting: Sendable, Equatable {
    /// The balancer of the run.
    public var balancer: BalancerKind
    /// The seed of the run.
    public var seed: UInt64

    /// The name of the run folder inside the study folder, `<balancer>-seed<seed>`.
    public var folderName: String { "\(balancer.rawValue)-seed\(seed)" }
  }

  /// Every setting, balancer by balancer, each with its seeds in ascending order.
  public var settings: [Setting] {
    balancers.flatMap { balancer in
      (0..<seedCount).map { Setting(balancer: balancer, seed: seedBase + UInt64($0)) }
    }
  }

  /// Returns the run folder of `setting`.
  public func runDirectory(_ setting: Setting) -> String {
    directory + "/" + setting.folderName
  }

  /// Returns the settings of the run of `setting`, resumed from its newest checkpoint when
  /// `resume` is true.
  func configuration(for setting: Setting, resume: Bool) -> TrainingConfiguration {
    var configuration = training
    configuration.balancer = setting.balancer.rawValue
    configuration.seed = setting.seed
    configuration.outputDirectory = runDirectory(setting)
    configuration.resume = resume ? "latest" : ""
    return configuration
  }
}

/// Runs a ``StudyPlan``.
public enum Study {
  /// The state of a setting's run, as rank 0 finds it in the run folder.
  enum Progress: UInt8 {
    /// No checkpoint yet: train from step 0.
    case fresh = 0
    /// A checkpoint without `eval.json`: resume from the newest checkpoint.
    case interrupted = 1
    /// `eval.json` is there: the run is done.
    case finished = 2
  }

  /// Trains every setting of `plan` that is not finished, then writes the report on rank 0.
  ///
  /// Every rank must call it. Rank 0 prints which setting of how many runs, and each run
  /// prints its usual lines.
  ///
  /// - Throws: ``CollectiveFailure``, agreed on by every rank, around a ``UsageError`` when
  ///   the study folder is a file, around what ``Trainer`` throws, or around a
  ///   ``StudyReportError`` when a finished run's files cannot be read.
  public static func run(_ plan: StudyPlan, communicator: Communicator) throws {
    try collectively(communicator) {
      guard communicator.isRoot else { return }
      try checkStudyDirectory(plan.directory)
    }
    let (trainSet, testSet) = try Trainer.loadDatasets(plan.training, communicator: communicator)

    let settings = plan.settings
    for (index, setting) in settings.enumerated() {
      let directory = plan.runDirectory(setting)
      let progress = try agreeOnProgress(of: directory, communicator: communicator)
      let configuration = plan.configuration(for: setting, resume: progress == .interrupted)
      if progress != .fresh {
        try collectively(communicator) {
          guard communicator.isRoot else { return }
          try checkSameSettings(configuration, directory: directory, trainCount: trainSet.count)
        }
      }
      let heading =
        "concord: study setting \(index + 1) of \(settings.count): balancer "
        + "\(setting.balancer.rawValue), seed \(setting.seed), in \(directory)"
      switch progress {
      case .finished:
        printOnRoot(
          heading + ": skipped, its eval.json exists from an earlier start", communicator)
        continue
      case .interrupted:
        printOnRoot(heading + ": resuming from its newest checkpoint", communicator)
      case .fresh:
        printOnRoot(heading, communicator)
      }
      let trainer = try collectively(communicator) {
        try Trainer(
          configuration: configuration, communicator: communicator, trainSet: trainSet,
          testSet: testSet)
      }
      try collectively(communicator) { try trainer.resumeIfRequested() }
      _ = try trainer.run()
    }

    try collectively(communicator) {
      guard communicator.isRoot else { return }
      let report = try StudyReport(plan: plan)
      let paths = try report.write(toDirectory: plan.directory)
      printOnRoot("concord: wrote \(paths.joined(separator: ", "))", communicator)
    }
  }

  /// Rejects a study folder that is a file, or that lies inside one, before any run starts.
  static func checkStudyDirectory(_ directory: String) throws {
    var isDirectory: ObjCBool = false
    var path = directory
    while !path.isEmpty && path != "/" && path != "." {
      if FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
        guard isDirectory.boolValue else {
          throw UsageError(
            "--out \(directory): \(path) is a file, not a folder: pass a folder for the study")
        }
        return
      }
      path = deletingLastPathComponent(path)
    }
  }

  /// The settings that may differ between a study and the runs already in its folder.
  ///
  /// They change where files go, how often they are written, or how the step runs. What is
  /// trained stays the same up to the rounding of the allreduce. `epochs` is compared as the
  /// resolved `steps`.
  static let settingsFreeAcrossStarts: Set<String> = [
    "outputDirectory", "resume", "tracePath", "logEvery", "checkpointEvery", "keep",
    "verifyEvery", "blasThreads", "allreduceMode", "allreduceFusion", "dumpGradientsStep",
    "epochs",
  ]

  /// Rejects a run folder whose newest checkpoint was trained with other settings than
  /// `configuration`, so that a study started again with other flags does not report old
  /// runs under the new settings.
  ///
  /// - Throws: ``UsageError`` naming the folder, the first setting that differs and both
  ///   values; ``CheckpointError`` when the checkpoint cannot be read.
  static func checkSameSettings(
    _ configuration: TrainingConfiguration, directory: String, trainCount: Int
  ) throws {
    guard let path = Checkpoint.newest(in: directory + "/checkpoints") else { return }
    guard let data = FileManager.default.contents(atPath: path) else {
      throw CheckpointError("\(path): cannot read the checkpoint: check its permissions")
    }
    let file = try Checkpoint.parse(Array(data), path: path)
    let stored = try CheckpointContents.storedConfiguration(file, path: path)
    var expected = configuration
    if expected.steps == 0 {
      expected.steps = expected.epochs * (trainCount / expected.batchSize)
    }
    let differences = expected.differences(from: stored, ignoring: settingsFreeAcrossStarts)
    if let difference = differences.first {
      throw UsageError(
        "\(directory) was trained with \(difference.key) \(difference.old), but this study "
          + "has \(difference.key) \(difference.new): pass the settings the study was started "
          + "with, or another --out for a new study")
    }
  }

  /// Decides on rank 0 whether the run in `directory` is finished, interrupted or not begun,
  /// and sends the decision to every rank, so that all ranks take the same path even when
  /// their file systems differ.
  static func agreeOnProgress(of directory: String, communicator: Communicator) throws
    -> Progress
  {
    var message: [UInt8] = []
    if communicator.isRoot {
      let progress: Progress
      if FileManager.default.fileExists(atPath: directory + "/eval.json") {
        progress = .finished
      } else if Checkpoint.newest(in: directory + "/checkpoints") != nil {
        progress = .interrupted
      } else {
        progress = .fresh
      }
      message = [progress.rawValue]
    }
    try communicator.broadcast(&message, root: 0)
    return Progress(rawValue: message.first ?? 0) ?? .fresh
  }

  private static func printOnRoot(_ line: String, _ communicator: Communicator) {
    guard communicator.isRoot else { return }
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
  }
}
