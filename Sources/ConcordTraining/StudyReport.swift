import ConcordBalancing
import ConcordTensors
import Foundation

/// The results of a ``StudyPlan``, read back from its runs' `eval.json` and `metrics.jsonl`.
///
/// Per balancer it contains the mean and the sample standard deviation over the seeds of the
/// test accuracy, the kNN accuracy, the augpred accuracy, each task's final GradNorm weight
/// and the wall time. It also contains the mean over the seeds of each task's loss curve. A
/// value that a run lacks (`null` in its files) leaves the statistic without a value.
public struct StudyReport {
  /// A mean over seeds and its spread.
  public struct Statistic: Sendable, Equatable {
    /// The mean, or nil when a run lacks the value.
    public var mean: Double?
    /// The sample standard deviation (dividing by `n - 1`), or nil with fewer than two runs or
    /// when a run lacks the value.
    public var standardDeviation: Double?

    /// Computes the statistic of `values`, one per seed.
    init(_ values: [Double?]) {
      let present = values.compactMap { $0 }.filter(\.isFinite)
      guard !present.isEmpty, present.count == values.count else { return }
      let mean = present.reduce(0, +) / Double(present.count)
      self.mean = mean
      guard present.count >= 2 else { return }
      let squares = present.map { ($0 - mean) * ($0 - mean) }.reduce(0, +)
      standardDeviation = (squares / Double(present.count - 1)).squareRoot()
    }
  }

  /// The statistics of one balancer over its seeds.
  public struct BalancerResult: Sendable {
    /// The balancer.
    public var balancer: BalancerKind
    /// The run folders, relative to the study folder, one per seed.
    public var runs: [String]
    /// The supervised head's test accuracy.
    public var testAccuracy: Statistic
    /// The kNN accuracy of the representation.
    public var knnAccuracy: Statistic
    /// The augpred head's per-label accuracy.
    public var augpredAccuracy: Statistic
    /// Each task's GradNorm weight at the last logged step, in the order of ``StudyReport/tasks``.
    public var finalWeights: [Statistic]
    /// The wall time of training and evaluation, in seconds.
    public var seconds: Statistic
    /// Each task's loss at each of ``StudyReport/steps``, the mean over the seeds that logged
    /// that step; NaN where none did.
    public var meanLosses: [[Double]]
  }

  /// The tasks of the runs.
  public var tasks: [String]
  /// The seeds of every balancer.
  public var seeds: [UInt64]
  /// The logged steps of the runs, ascending.
  public var steps: [Int]
  /// One result per balancer, in the order of the plan.
  public var results: [BalancerResult]

  /// Reads the runs of `plan` from their run folders.
  ///
  /// - Throws: ``StudyReportError`` or ``MetricsFileError`` naming the file that is missing
  ///   or malformed.
  public init(plan: StudyPlan) throws {
    tasks = plan.training.tasks.map(\.rawValue)
    seeds = (0..<plan.seedCount).map { plan.seedBase + UInt64($0) }
    var runs: [(setting: StudyPlan.Setting, evaluation: [String: Any], metrics: RunMetrics)] = []
    for setting in plan.settings {
      let directory = plan.runDirectory(setting)
      runs.append(
        (
          setting, try Self.readEvaluation(directory + "/eval.json"),
          try RunMetrics(contentsOf: directory + "/metrics.jsonl")
        ))
    }
    let steps = Set(runs.flatMap(\.metrics.steps)).sorted()
    let tasks = self.tasks
    self.steps = steps

    results = plan.balancers.map { balancer in
      let group = runs.filter { $0.setting.balancer == balancer }
      func statistic(_ key: String) -> Statistic {
        Statistic(group.map { $0.evaluation[key] as? Double })
      }
      let finalWeights = tasks.map { task in
        Statistic(
          group.map { run in
            run.metrics.taskNames.firstIndex(of: task).flatMap { run.metrics.weights[$0].last }
          })
      }
      let meanLosses = tasks.map { task in
        steps.map { step in
          let values = group.compactMap { run -> Double? in
            guard let t = run.metrics.taskNames.firstIndex(of: task),
              let point = run.metrics.steps.firstIndex(of: step)
            else { return nil }
            let loss = run.metrics.losses[t][point]
            return loss.isFinite ? loss : nil
          }
          return values.isEmpty ? .nan : values.reduce(0, +) / Double(values.count)
        }
      }
      return BalancerResult(
        balancer: balancer, runs: group.map(\.setting.folderName),
        testAccuracy: statistic("test_accuracy"), knnAccuracy: statistic("knn_accuracy"),
        augpredAccuracy: statistic("augpred_accuracy"), finalWeights: finalWeights,
        seconds: statistic("seconds"), meanLosses: meanLosses)
    }
  }

  /// Reads `path` as the JSON object of an `eval.json`.
  private static func readEvaluation(_ path: String) throws -> [String: Any] {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw StudyReportError(
        "\(path): file not found or unreadable; run the study again to finish that run")
    }
    guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
      object["knn_accuracy"] is NSNumber
    else {
      throw StudyReportError(
        "\(path): not an eval.json object with knn_accuracy; remove the file and run the "
          + "study again to evaluate that run")
    }
    return object
  }

  /// The accuracies that the task mix has: the test accuracy with the supervised task, the
  /// kNN accuracy always, and the augpred accuracy with the augpred task.
  var accuracyColumns: [(key: String, title: String, value: (BalancerResult) -> Statistic)] {
    var columns: [(key: String, title: String, value: (BalancerResult) -> Statistic)] = []
    if tasks.contains("supervised") {
      columns.append(("test_accuracy", "test accuracy", \.testAccuracy))
    }
    columns.append(("knn_accuracy", "kNN accuracy", \.knnAccuracy))
    if tasks.contains("augpred") {
      columns.append(("augpred_accuracy", "augpred accuracy", \.augpredAccuracy))
    }
    return columns
  }

  /// Writes `study.md`, `study.json` and `study.svg` into `directory`, each atomically.
  ///
  /// - Returns: the paths written.
  /// - Throws: ``AtomicFileError`` naming the file and the fix.
  public func write(toDirectory directory: String) throws -> [String] {
    let outputs = [
      ("study.md", markdown), ("study.json", json + "\n"), ("study.svg", svg),
    ]
    for (name, text) in outputs {
      try AtomicFile.write(Array(text.utf8), to: directory + "/" + name)
    }
    return outputs.map { directory + "/" + $0.0 }
  }
}

/// A study run folder whose files cannot be read into the report.
public struct StudyReportError: Error, CustomStringConvertible {
  /// The message, one line: the file, what is wrong and what to do.
  public let description: String

  init(_ description: String) {
    self.description = description
  }
}
