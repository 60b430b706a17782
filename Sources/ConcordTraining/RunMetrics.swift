import ConcordModel
import Foundation

/// The curves of one run, read back from its `metrics.jsonl`.
///
/// Values that the file has as `null` (a skipped step, a weight before the first balanced
/// step) are NaN. A resumed run logs again the steps after its checkpoint, so for a step
/// that appears more than once the last line wins. The points are sorted by step.
public struct RunMetrics: Sendable {
  /// The logged steps, ascending.
  public var steps: [Int]
  /// The task names, in Concord's task order (supervised, simclr, byol, augpred).
  public var taskNames: [String]
  /// Per task, the mean loss of each logging interval: `losses[task][point]`.
  public var losses: [[Double]]
  /// Per task, the GradNorm weight at each point: `weights[task][point]`.
  public var weights: [[Double]]
  /// At each point, the share of task pairs whose gradients have a negative cosine, in
  /// [0, 1]; NaN when the line has no cosine.
  public var conflictRates: [Double]
  /// At each point, the images per second of all ranks together.
  public var samplesPerSecond: [Double]

  /// Reads `path`, a `metrics.jsonl` file.
  ///
  /// - Throws: ``MetricsFileError`` when the file is missing, empty, or has a line that is
  ///   not a metrics object with `step`, `loss` and `weight`.
  public init(contentsOf path: String) throws {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw MetricsFileError(
        "\(path): file not found or unreadable; pass a run folder written by concord train")
    }
    var records: [Int: [String: Any]] = [:]
    let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
    for (index, line) in lines.enumerated() {
      guard line.contains(where: { $0 != UInt8(ascii: " ") && $0 != UInt8(ascii: "\r") })
      else { continue }
      let object = try? JSONSerialization.jsonObject(with: Data(line))
      guard let record = object as? [String: Any], let step = record["step"] as? Int,
        record["loss"] is [String: Any], record["weight"] is [String: Any]
      else {
        throw MetricsFileError(
          "\(path) line \(index + 1): not a metrics object with step, loss and weight; "
            + "the file is damaged or was not written by concord train")
      }
      records[step] = record
    }
    guard !records.isEmpty else {
      throw MetricsFileError(
        "\(path) has no metrics lines yet: plot the run after its first --log-every steps")
    }

    steps = records.keys.sorted()
    let ordered = steps.map { records[$0]! }
    let names = Set(ordered.flatMap { ($0["loss"] as! [String: Any]).keys })
    taskNames = Self.taskOrder(names)
    losses = taskNames.map { task in ordered.map { Self.member($0, "loss", task) } }
    weights = taskNames.map { task in ordered.map { Self.member($0, "weight", task) } }
    conflictRates = ordered.map { record in
      let cosines = ((record["cosine"] as? [String: Any]) ?? [:]).values.compactMap {
        ($0 as? NSNumber)?.doubleValue
      }
      guard !cosines.isEmpty else { return .nan }
      return Double(cosines.filter { $0 < 0 }.count) / Double(cosines.count)
    }
    samplesPerSecond = ordered.map { ($0["samples_per_second"] as? NSNumber)?.doubleValue ?? .nan }
  }

  /// Sorts task names as ``TaskKind`` lists the tasks, and names it does not know after them.
  private static func taskOrder(_ names: Set<String>) -> [String] {
    let known = TaskKind.allCases.map(\.rawValue)
    return names.sorted { a, b in
      let i = known.firstIndex(of: a) ?? known.count
      let j = known.firstIndex(of: b) ?? known.count
      return i != j ? i < j : a < b
    }
  }

  private static func member(_ record: [String: Any], _ key: String, _ name: String) -> Double {
    ((record[key] as? [String: Any])?[name] as? NSNumber)?.doubleValue ?? .nan
  }
}

/// A `metrics.jsonl` that is missing or malformed; the message names the file and the line.
public struct MetricsFileError: Error, CustomStringConvertible {
  /// The message, one line.
  public let description: String

  init(_ description: String) {
    self.description = description
  }
}
