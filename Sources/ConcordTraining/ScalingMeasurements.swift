import Foundation

/// The measurements of a scaling benchmark, read from the records that `launch/bench-scaling`
/// writes, one JSON object per line.
///
/// Each record has a `"kind"`:
/// - `"machine"`: `cores`, and free-form facts such as `cpu`, `kernel` and `mpi`.
/// - `"network"`: a link profile: `name`, `delay_ms`, `rate` and `mechanism`.
/// - `"step"`: one `concord bench step --json` run in `result`, with `network`, `hosts`,
///   `scaling` (`strong` or `weak`), `label` (the options, `default` when none) and `repeat`.
/// - `"allreduce"`: one message size of `concord bench allreduce --json` in `result`, with
///   `network` and `hosts`.
/// - `"accuracy"`: one training run's `eval.json` in `result`, with `label`, `ranks` and
///   `epochs`.
public struct ScalingMeasurements: Sendable {
  /// A step configuration and its repeated runs.
  public struct StepPoint: Sendable {
    /// The network between the ranks: `local` for one host, else a link profile's name.
    public var network: String
    /// The hosts that the ranks run on.
    public var hosts: Int
    /// The ranks of the job.
    public var ranks: Int
    /// `strong` (fixed global batch) or `weak` (fixed local batch).
    public var scaling: String
    /// The options of the run, `default` when none.
    public var label: String
    /// The global batch.
    public var batchSize: Int
    /// The bytes that one step allreduces.
    public var allreduceBytes: Double
    /// The median step time of each run, in milliseconds.
    public var stepMilliseconds: [Double]
    /// The phase times of each run, in milliseconds per step.
    public var phases: [[String: Double]]
    /// The allreduce mode that the runs used (`blocking` or `overlap`).
    public var allreduceMode: String

    /// The images per rank.
    public var localBatch: Double { Double(batchSize) / Double(ranks) }
    /// The median over runs of the step time, in milliseconds.
    public var medianMilliseconds: Double { median(stepMilliseconds) }
    /// Returns the median over runs of a phase's time, in milliseconds, or 0 when no run has it.
    public func phase(_ name: String) -> Double { median(phases.map { $0[name] ?? 0 }) }
    /// The throughput of all ranks at the median step time, in images per second.
    public var samplesPerSecond: Double { Double(batchSize) / (medianMilliseconds / 1e3) }
  }

  /// One message size of an allreduce sweep, with the median, 10th and 90th percentile of
  /// each implementation in microseconds.
  public struct AllreducePoint: Sendable {
    /// The network between the ranks.
    public var network: String
    /// The hosts that the ranks run on.
    public var hosts: Int
    /// The ranks.
    public var ranks: Int
    /// The bytes that each rank contributes.
    public var bytes: Double
    /// A plain `MPI_Allreduce`: median, p10, p90.
    public var plain: [Double]
    /// Concord's communicator: median, p10, p90.
    public var concord: [Double]
    /// Concord's bfloat16 allreduce of the same float count: median, p10, p90; empty when
    /// not measured.
    public var bfloat16: [Double]
  }

  /// One training run of a precision study.
  public struct AccuracyPoint: Sendable {
    /// The options of the run.
    public var label: String
    /// The ranks.
    public var ranks: Int
    /// The epochs.
    public var epochs: Int
    /// The test accuracy of the supervised head, when it was trained.
    public var testAccuracy: Double?
    /// The kNN accuracy on the encoder's features.
    public var knnAccuracy: Double
    /// Training and evaluation time, in seconds.
    public var seconds: Double
  }

  /// A link profile of the emulated cluster.
  public struct Network: Sendable {
    /// The profile's name.
    public var name: String
    /// The one-way delay that each host adds, in milliseconds.
    public var delayMilliseconds: Double
    /// The rate of each host's link, as `launch/netns-cluster` takes it (`1gbit`).
    public var rate: String
    /// The emulator of the link: `netem`, `tbf` or `concord-link`.
    public var mechanism: String
  }

  /// Facts about the machine, as recorded.
  public var machine: [String: String] = [:]
  /// The cores of the machine.
  public var cores = 1
  /// The link profiles, in the order recorded.
  public var networks: [Network] = []
  /// The step configurations, in the order first recorded.
  public var steps: [StepPoint] = []
  /// The allreduce sweeps, in the order recorded.
  public var allreduces: [AllreducePoint] = []
  /// The training runs of the precision study.
  public var accuracies: [AccuracyPoint] = []

  /// Creates empty measurements.
  public init() {}

  /// Reads the records of `path`.
  ///
  /// - Throws: ``ScalingMeasurementsError`` naming the line that is not a record.
  public init(contentsOf path: String) throws {
    guard let data = FileManager.default.contents(atPath: path),
      let text = String(data: data, encoding: .utf8)
    else {
      throw ScalingMeasurementsError(
        "cannot read \(path): pass the records file that launch/bench-scaling wrote")
    }
    for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
      do {
        try add(line: String(line))
      } catch let error as ScalingMeasurementsError {
        throw ScalingMeasurementsError("\(path):\(index + 1): \(error.message)")
      }
    }
  }

  /// Adds one record.
  ///
  /// - Throws: ``ScalingMeasurementsError`` when the line is not a record of a known kind.
  public mutating func add(line: String) throws {
    guard let object = try? JSONSerialization.jsonObject(with: Data(line.utf8)),
      let record = object as? [String: Any], let kind = record["kind"] as? String
    else { throw ScalingMeasurementsError("not a JSON object with a \"kind\"") }
    let result = record["result"] as? [String: Any] ?? [:]
    switch kind {
    case "machine":
      cores = try integer(record, "cores")
      for (key, value) in record where key != "kind" { machine[key] = "\(value)" }
    case "network":
      networks.append(
        Network(
          name: try string(record, "name"), delayMilliseconds: try number(record, "delay_ms"),
          rate: try string(record, "rate"), mechanism: try string(record, "mechanism")))
    case "step":
      try addStep(record, result)
    case "allreduce":
      func times(_ key: String) throws -> [Double] {
        guard let entry = result[key] as? [String: Any] else { return [] }
        return try ["median", "p10", "p90"].map { try number(entry, $0) }
      }
      allreduces.append(
        AllreducePoint(
          network: try string(record, "network"), hosts: try integer(record, "hosts"),
          ranks: try integer(result, "ranks"), bytes: try number(result, "bytes"),
          plain: try times("plain_us"), concord: try times("concord_us"),
          bfloat16: try times("bfloat16_us")))
    case "accuracy":
      accuracies.append(
        AccuracyPoint(
          label: try string(record, "label"), ranks: try integer(record, "ranks"),
          epochs: try integer(record, "epochs"), testAccuracy: result["test_accuracy"] as? Double,
          knnAccuracy: try number(result, "knn_accuracy"), seconds: try number(result, "seconds")))
    default:
      throw ScalingMeasurementsError("unknown record kind \"\(kind)\"")
    }
  }

  private mutating func addStep(_ record: [String: Any], _ result: [String: Any]) throws {
    let network = try string(record, "network")
    let hosts = try integer(record, "hosts")
    let scaling = try string(record, "scaling")
    let label = try string(record, "label")
    let ranks = try integer(result, "ranks")
    let batchSize = try integer(result, "batch_size")
    let milliseconds = try number(result, "step_ms")
    let phases = (result["phase_ms"] as? [String: Any] ?? [:]).compactMapValues {
      ($0 as? NSNumber)?.doubleValue
    }
    if let index = steps.firstIndex(where: {
      $0.network == network && $0.hosts == hosts && $0.ranks == ranks && $0.scaling == scaling
        && $0.label == label && $0.batchSize == batchSize
    }) {
      steps[index].stepMilliseconds.append(milliseconds)
      steps[index].phases.append(phases)
    } else {
      steps.append(
        StepPoint(
          network: network, hosts: hosts, ranks: ranks, scaling: scaling, label: label,
          batchSize: batchSize, allreduceBytes: try number(result, "allreduce_bytes"),
          stepMilliseconds: [milliseconds], phases: [phases],
          allreduceMode: result["allreduce_mode"] as? String ?? "blocking"))
    }
  }
}

/// A records file that cannot be read.
public struct ScalingMeasurementsError: Error, CustomStringConvertible {
  /// The problem and what to do instead.
  public let message: String

  init(_ message: String) { self.message = message }

  public var description: String { message }
}

private func string(_ record: [String: Any], _ key: String) throws -> String {
  guard let value = record[key] as? String else {
    throw ScalingMeasurementsError("the record lacks the text field \"\(key)\"")
  }
  return value
}

private func number(_ record: [String: Any], _ key: String) throws -> Double {
  guard let value = (record[key] as? NSNumber)?.doubleValue, value.isFinite else {
    throw ScalingMeasurementsError("the record lacks the number field \"\(key)\"")
  }
  return value
}

private func integer(_ record: [String: Any], _ key: String) throws -> Int {
  let value = try number(record, key)
  guard value == value.rounded(), value >= 0, value < 1e15 else {
    throw ScalingMeasurementsError("the field \"\(key)\" is not a whole number: \(value)")
  }
  return Int(value)
}

/// Returns the median of `values`, 0 when empty.
func median(_ values: [Double]) -> Double {
  values.isEmpty ? 0 : StepBenchmark.percentile(values.sorted(), 0.5)
}
