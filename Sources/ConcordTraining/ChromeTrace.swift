import ConcordDistributed
import ConcordTensors
import Foundation

/// The phases of every rank's steps as one Chrome trace event file, which Perfetto
/// (ui.perfetto.dev) and `chrome://tracing` open.
///
/// The file is `{"traceEvents": [...], "displayTimeUnit": "ms"}`. Each phase interval is a
/// complete event (`"ph": "X"`) with `ts` and `dur` in microseconds, `pid` 0, `tid` the rank
/// and the step under `args`. Metadata events (`"ph": "M"`) name process 0 `concord` and
/// thread r `rank r`. Times count from a barrier at the start of training, which every rank
/// leaves within the barrier's latency of the others, so intervals of different ranks line
/// up to about that latency.
enum ChromeTrace {
  /// Returns the room for the intervals of a run of `steps` steps with `taskCount` tasks:
  /// data, forward, one per task, encoder backward, allreduce, balancing and optimizer per
  /// step, and the checkpoints.
  ///
  /// The room covers at most a million steps. A longer traced run grows its buffer as it
  /// goes, so that it does not reserve memory for all of it at the start.
  static func capacity(steps: Int, taskCount: Int, checkpointEvery: Int) -> Int {
    let reserved = min(steps, 1_000_000)
    return reserved * (6 + taskCount) + reserved / max(checkpointEvery, 1) + 1
  }

  /// Returns the name of `phase` on the timeline, such as `task supervised`.
  static func name(of phase: StepPhase, taskNames: [String]) -> String {
    switch phase {
    case .data: return "data"
    case .forward: return "forward"
    case .task(let index):
      return "task " + (taskNames.indices.contains(index) ? taskNames[index] : String(index))
    case .encoderBackward: return "encoder backward"
    case .allreduce: return "allreduce"
    case .balancing: return "balancing"
    case .optimizer: return "optimizer"
    case .checkpoint: return "checkpoint"
    }
  }

  /// Returns one rank's complete events as JSON objects separated by commas.
  ///
  /// - Parameters:
  ///   - intervals: The rank's intervals, in nanoseconds since `recorderOrigin`.
  ///   - recorderOrigin: The monotonic time the intervals count from.
  ///   - start: The monotonic time on this rank right after the starting barrier.
  static func events(
    _ intervals: [StepRecorder.Interval], recorderOrigin: UInt64, start: UInt64, rank: Int,
    taskNames: [String]
  ) -> String {
    let names = intervals.map { name(of: $0.phase, taskNames: taskNames) }
    return zip(intervals, names).map { interval, name in
      // Signed, because an interval recorded before the barrier starts before 0.
      let begin = Int64(bitPattern: recorderOrigin &+ interval.start &- start)
      let duration = interval.end - interval.start
      return "{\"name\": \(JSONLine.quote(name)), \"cat\": \"step\", \"ph\": \"X\", "
        + "\"ts\": \(microseconds(begin)), \"dur\": \(microseconds(Int64(duration))), "
        + "\"pid\": 0, \"tid\": \(rank), \"args\": {\"step\": \(interval.step)}}"
    }.joined(separator: ",\n")
  }

  /// Returns the trace file from every rank's events, indexed by rank.
  static func document(rankEvents: [String]) -> String {
    var parts = [
      "{\"name\": \"process_name\", \"ph\": \"M\", \"pid\": 0, \"args\": {\"name\": \"concord\"}}"
    ]
    for rank in rankEvents.indices {
      parts.append(
        "{\"name\": \"thread_name\", \"ph\": \"M\", \"pid\": 0, \"tid\": \(rank), "
          + "\"args\": {\"name\": \"rank \(rank)\"}}")
      parts.append(
        "{\"name\": \"thread_sort_index\", \"ph\": \"M\", \"pid\": 0, \"tid\": \(rank), "
          + "\"args\": {\"sort_index\": \(rank)}}")
    }
    parts += rankEvents.filter { !$0.isEmpty }
    return "{\"traceEvents\": [\n" + parts.joined(separator: ",\n")
      + "\n], \"displayTimeUnit\": \"ms\"}\n"
  }

  /// Formats nanoseconds as microseconds with three decimals, exact to the nanosecond.
  private static func microseconds(_ nanoseconds: Int64) -> String {
    let sign = nanoseconds < 0 ? "-" : ""
    let magnitude = nanoseconds.magnitude
    return sign + String(magnitude / 1000) + "." + String(format: "%03d", Int(magnitude % 1000))
  }
}

extension Trainer {
  /// Starts the common clock of `--trace`: after a barrier, every rank reads its monotonic clock,
  /// and trace times count from that reading.
  ///
  /// Returns nil without `--trace`.
  ///
  /// Every rank must call it, at the same point.
  func startTraceClock() throws -> UInt64? {
    guard configuration.tracePath != nil else { return nil }
    try communicator.barrier()
    return StepRecorder.now()
  }

  /// Sends every rank's phase intervals to rank 0, which writes the `--trace` file.
  ///
  /// Every rank must call it, at the same point; it does nothing without `--trace`.
  ///
  /// - Throws: ``CollectiveFailure`` on every rank when rank 0 cannot write the file.
  func writeTrace(start: UInt64?) throws {
    guard let path = configuration.tracePath, let start else { return }
    let events = ChromeTrace.events(
      recorder.intervals, recorderOrigin: recorder.origin, start: start,
      rank: communicator.rank, taskNames: configuration.tasks.map(\.rawValue))
    let gathered = try communicator.gather(Array(events.utf8), root: 0)
    try collectively(communicator) {
      guard communicator.isRoot else { return }
      let document = ChromeTrace.document(
        rankEvents: gathered.map { String(decoding: $0, as: UTF8.self) })
      do {
        try AtomicFile.write(Array(document.utf8), to: path)
      } catch {
        throw TrainingError("--trace \(path): \(error); pass a writable path")
      }
    }
    log.print("concord: wrote the phase timeline of \(communicator.size) rank(s) to \(path)")
  }
}
