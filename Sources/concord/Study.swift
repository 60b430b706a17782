import ConcordBalancing
import ConcordTraining
import Foundation

/// The usage text of `concord study`.
let studyUsage = """
  usage: concord study --out DIR [--balancers LIST] [--seeds N] [--seed-base K] [TRAIN FLAGS]

  Compares gradient balancers: trains one full run per balancer and seed, one after the
  other on the same ranks, each in its own run folder DIR/<balancer>-seed<seed>. A setting
  whose folder already contains eval.json is skipped, and one with a checkpoint resumes from
  it, so running the same command again continues a study that was stopped. Then writes
  DIR/study.md (a table of the mean and standard deviation over the seeds of each
  balancer's accuracies, final task weights and wall time), DIR/study.json and
  DIR/study.svg (each task's loss, mean over the seeds, one line per balancer).

    --out DIR          the study folder (required)
    --balancers LIST   comma-separated balancers: equal, gradnorm, pcgrad, pcgrad+gradnorm
                       (default all four)
    --seeds N          runs per balancer, with seeds K to K + N - 1 (default 3)
    --seed-base K      the first seed (default 0)

  Every other flag is a flag of concord train (concord train --help) and applies to every
  run, except --balancer, --seed, --resume and --trace, which the study sets per run. A
  --config FILE may hold the study's flags as well, as "out", "balancers", "seeds" and
  "seed-base"; the command line wins over it.
  """

/// The flags of `concord train` that `concord study` sets itself for each run.
private let flagsSetPerRun = ["--balancer", "--seed", "--resume", "--trace"]

/// The largest `--seeds`: 10,000 runs per balancer is far beyond any study that finishes,
/// and the bound keeps the list of settings small.
private let maximumSeedCount = 10_000

/// The flags of `concord study` itself, which a `--config` file may also set by their names
/// without the dashes.
private let studyFlags = ["--out", "--balancers", "--seeds", "--seed-base"]

/// The values of `concord study`'s own flags, from the settings file and then the command
/// line.
private struct StudySettings {
  var balancers = BalancerKind.allCases
  var seedCount = 3
  var seedBase: UInt64 = 0
  var directory: String?

  /// Applies the value `text` of the study flag `flag`.
  mutating func apply(_ flag: String, _ text: String) throws {
    switch flag {
    case "--out":
      guard !text.isEmpty else { throw UsageError("--out needs a non-empty folder") }
      directory = text
    case "--balancers":
      balancers = try balancerList(text)
    case "--seeds":
      guard let count = Int(text), count > 0 else {
        throw UsageError("invalid --seeds \(text): pass a whole number greater than 0")
      }
      guard count <= maximumSeedCount else {
        throw UsageError(
          "invalid --seeds \(text): pass at most \(maximumSeedCount) seeds, each a full training run"
        )
      }
      seedCount = count
    default:
      guard let base = UInt64(text) else {
        throw UsageError("invalid --seed-base \(text): pass a whole number from 0")
      }
      seedBase = base
    }
  }
}

/// Parses the arguments of `concord study` (without the subcommand).
///
/// A `--config` file may set the study's own flags too (`out`, `balancers`, `seeds`,
/// `seed-base`), and the command line wins over it.
func parseStudyArguments(_ arguments: [String]) throws -> StudyPlan {
  var settings = StudySettings()
  let commandKeys = studyFlags.map { String($0.dropFirst(2)) }
  let settingsFile = try configurationFilePath(in: arguments)
  if let path = settingsFile {
    for (key, value) in try readConfigurationFile(path, commandKeys: commandKeys)
    where commandKeys.contains(key) {
      do {
        try settings.apply("--" + key, value)
      } catch let error as UsageError {
        throw UsageError("\(ConfigurationFile.flag) \(path): key \"\(key)\": \(error)")
      }
    }
  }

  var trainArguments: [String] = []
  var index = 0
  while index < arguments.count {
    let argument = arguments[index]
    var flag = argument
    var value: String?
    if argument.hasPrefix("--"), let equals = argument.firstIndex(of: "=") {
      flag = String(argument[..<equals])
      value = String(argument[argument.index(after: equals)...])
    }
    guard studyFlags.contains(flag) else {
      if flag == "--trace" {
        throw UsageError(
          "concord study does not take --trace, because one trace file cannot hold several "
            + "runs: remove --trace, and trace a single run with concord train --trace FILE")
      }
      if flagsSetPerRun.contains(flag) {
        throw UsageError(
          "concord study sets \(flag) for each run itself: remove \(flag) and pass "
            + "--balancers LIST, --seeds N or --seed-base K instead")
      }
      let isTrainFlag = trainOptions.contains { $0.name == flag }
      if flag.hasPrefix("--"), !isTrainFlag,
        let nearest = studyFlags.min(by: { editDistance($0, flag) < editDistance($1, flag) }),
        editDistance(nearest, flag) <= 2
      {
        throw UsageError(
          "unknown flag \(flag): did you mean \(nearest)? (concord study --help lists all)")
      }
      trainArguments.append(argument)
      index += 1
      continue
    }
    if value == nil {
      guard index + 1 < arguments.count else {
        throw UsageError("\(flag) needs a value (concord study --help)")
      }
      index += 1
      value = arguments[index]
    }
    try settings.apply(flag, value!)
    index += 1
  }
  guard let directory = settings.directory else {
    throw UsageError(
      "concord study needs --out DIR, the study folder, on the command line or as \"out\" in "
        + "its --config file (concord study --help)")
  }
  let seedCount = settings.seedCount
  let seedBase = settings.seedBase
  guard seedBase <= UInt64.max - UInt64(seedCount - 1) else {
    throw UsageError(
      "--seed-base \(seedBase) with --seeds \(seedCount) passes the largest seed "
        + "\(UInt64.max): pass a smaller --seed-base"
        + (settingsFile.map(settingsFileClause) ?? ""))
  }

  let training = try parseTrainArguments(trainArguments, commandKeys: commandKeys)
  if let settingsFile {
    try checkConfigurationFileLeavesRunsToStudy(training, path: settingsFile)
  }
  return StudyPlan(
    balancers: settings.balancers, seedCount: seedCount, seedBase: seedBase,
    directory: directory, training: training)
}

/// Rejects a `--config` file at `path` that sets what the study decides per run, which the
/// command line check cannot see.
private func checkConfigurationFileLeavesRunsToStudy(
  _ training: TrainingConfiguration, path: String
) throws {
  let defaults = TrainingConfiguration()
  let flag = ConfigurationFile.flag
  if training.tracePath != defaults.tracePath {
    throw UsageError(
      "\(flag) \(path) sets \"trace\", but one trace file cannot hold the runs of a study: "
        + "remove the key, and trace a single run with concord train --trace FILE")
  }
  let keys = [
    ("balancer", training.balancer != defaults.balancer, "and set \"balancers\" instead"),
    ("seed", training.seed != defaults.seed, "and set \"seeds\" or \"seed-base\" instead"),
    (
      "resume", training.resume != defaults.resume,
      "because the study resumes its interrupted runs itself"
    ),
  ]
  if let (key, _, advice) = keys.first(where: \.1) {
    throw UsageError(
      "\(flag) \(path) sets \"\(key)\", which concord study sets for each run itself: remove "
        + "the key from the file \(advice)")
  }
}

/// Parses a comma-separated list of balancers, each once.
private func balancerList(_ text: String) throws -> [BalancerKind] {
  let valid = BalancerKind.allCases.map(\.rawValue).joined(separator: ", ")
  var balancers: [BalancerKind] = []
  for name in text.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
    guard let balancer = BalancerKind(rawValue: name) else {
      throw UsageError(
        "invalid balancer '\(name)' in --balancers \(text): pass a list of \(valid)")
    }
    guard !balancers.contains(balancer) else {
      throw UsageError(
        "balancer \(name) appears twice in --balancers \(text): list each balancer once")
    }
    balancers.append(balancer)
  }
  return balancers
}

/// Runs `concord study` on this rank and returns the exit code.
func study(arguments: [String]) -> Int32 {
  if arguments.contains("--help") || arguments.contains("-h") {
    print(studyUsage)
    return 0
  }
  // Parse first, but report only once MPI is up, so that every rank exits alike and only
  // rank 0 prints.
  let parsed = Result { try parseStudyArguments(arguments) }
  let settingsFile = (try? configurationFilePath(in: arguments)) ?? nil
  return runOnEveryRank(parsed, blasThreads: \.training.blasThreads, settingsFile: settingsFile) {
    plan, communicator in
    try Study.run(plan, communicator: communicator)
  }
}
