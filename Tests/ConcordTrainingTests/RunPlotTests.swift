import ConcordDistributed
import Foundation
import Testing

@testable import ConcordTraining

/// Writes `lines` as a metrics.jsonl in a new folder and returns the file's path.
private func metricsFile(_ lines: [String]) throws -> String {
  let path = try makeTemporaryDirectory() + "/metrics.jsonl"
  try (lines.joined(separator: "\n") + "\n").write(toFile: path, atomically: true, encoding: .utf8)
  return path
}

struct RunMetricsTests {
  @Test func readsCurvesInTaskOrder() throws {
    let path = try metricsFile([
      #"{"step": 2, "loss": {"byol": 0.5, "supervised": 2}, "weight": {"byol": 1, "supervised": 1}, "#
        + #""cosine": {"supervised/byol": -0.25}, "samples_per_second": 100}"#,
      #"{"step": 4, "loss": {"byol": 0.4, "supervised": 1.5}, "weight": {"byol": 0.9, "supervised": 1.1}, "#
        + #""cosine": {"supervised/byol": 0.5}, "samples_per_second": 120}"#,
    ])
    let metrics = try RunMetrics(contentsOf: path)
    #expect(metrics.steps == [2, 4])
    #expect(metrics.taskNames == ["supervised", "byol"])
    #expect(metrics.losses == [[2, 1.5], [0.5, 0.4]])
    #expect(metrics.weights == [[1, 1.1], [1, 0.9]])
    #expect(metrics.conflictRates == [1, 0])
    #expect(metrics.samplesPerSecond == [100, 120])
  }

  /// A resumed run logs steps again; the later line wins and the points stay sorted.
  @Test func laterLineOfRepeatedStepWins() throws {
    let path = try metricsFile([
      #"{"step": 2, "loss": {"augpred": 0.7}, "weight": {"augpred": 1}}"#,
      #"{"step": 4, "loss": {"augpred": 0.6}, "weight": {"augpred": 1}}"#,
      "",
      #"{"step": 4, "loss": {"augpred": 0.65}, "weight": {"augpred": null}}"#,
      #"{"step": 6, "loss": {"augpred": 0.5}, "weight": {"augpred": 1}}"#,
    ])
    let metrics = try RunMetrics(contentsOf: path)
    #expect(metrics.steps == [2, 4, 6])
    #expect(metrics.losses == [[0.7, 0.65, 0.5]])
    #expect(metrics.weights[0][1].isNaN)
    #expect(metrics.conflictRates.allSatisfy { $0.isNaN })
  }

  @Test func emptyFileIsRejected() throws {
    let path = try metricsFile([])
    #expect(throws: MetricsFileError.self) { try RunMetrics(contentsOf: path) }
  }

  @Test func lineWithoutLossIsRejected() throws {
    let path = try metricsFile([#"{"step": 2, "weight": {}}"#])
    let error = #expect(throws: MetricsFileError.self) { try RunMetrics(contentsOf: path) }
    #expect(error?.description.contains("line 1") == true)
  }
}

struct RunPlotTests {
  /// A missing value splits a series into subpaths instead of dropping to zero.
  @Test func missingValueStartsSubpath() throws {
    let path = try metricsFile([
      #"{"step": 1, "loss": {"simclr": 4}, "weight": {"simclr": 1}, "samples_per_second": 10}"#,
      #"{"step": 2, "loss": {"simclr": null}, "weight": {"simclr": 1}, "samples_per_second": 10}"#,
      #"{"step": 3, "loss": {"simclr": 3}, "weight": {"simclr": 1}, "samples_per_second": 10}"#,
    ])
    let svg = RunPlot.svg(try RunMetrics(contentsOf: path), title: "a & b")
    #expect(svg.contains("<title>a &amp; b</title>"))
    let lossPath = try #require(
      svg.split(separator: "\n").first { $0.hasPrefix("<path") && $0.contains("<title>simclr") })
    #expect(lossPath.filter { $0 == "M" }.count == 2)
    #expect(!lossPath.contains("L"))
    // One task has no pairs, so the conflict panel shows a note instead of a line.
    #expect(svg.contains("no data in metrics.jsonl"))
    #expect(!svg.contains("<script"))
  }

  @Test func linearAxisTicksAreRound() {
    let axis = PlotAxis.linear(low: 0.13, high: 4.9)
    #expect(axis.ticks == [0, 1, 2, 3, 4, 5])
    #expect(axis.label(2) == "2")
    #expect(axis.position(axis.low) == 0)
    #expect(axis.position(axis.high) == 1)
    let fine = PlotAxis.linear(low: 0.85, high: 1.08)
    #expect(fine.ticks.map(fine.label) == ["0.8", "0.9", "1.0", "1.1"])
  }

  @Test func logarithmicAxisSpansDecades() {
    let wide = PlotAxis.logarithmic(low: 0.02, high: 4.8)
    #expect(wide.ticks.map(wide.label) == ["0.01", "0.1", "1", "10"])
    // Two decades or fewer get 2 and 5 times each decade too.
    let narrow = PlotAxis.logarithmic(low: 0.3, high: 4.8)
    #expect(narrow.ticks.map(narrow.label) == ["0.1", "0.2", "0.5", "1", "2", "5", "10"])
    #expect(abs(narrow.position(1) - 0.5) < 1e-12)
    #expect(RunPlot.prefersLogarithmicScale([0.05, 4.8]))
    #expect(!RunPlot.prefersLogarithmicScale([0.5, 4.8]))
    #expect(!RunPlot.prefersLogarithmicScale([-1, 4.8]))
  }
}

struct ChromeTraceTests {
  @Test func eventsCountFromBarrier() throws {
    let intervals = [
      StepRecorder.Interval(step: 0, phase: .task(1), start: 1_000, end: 3_500),
      StepRecorder.Interval(step: 1, phase: .encoderBackward, start: 500, end: 900),
    ]
    // Recorder created at 10 000 ns, barrier left at 11 000 ns.
    let text = ChromeTrace.events(
      intervals, recorderOrigin: 10_000, start: 11_000, rank: 3,
      taskNames: ["supervised", "simclr"])
    let document = ChromeTrace.document(rankEvents: ["", "", "", text])
    let parsed = try #require(
      try JSONSerialization.jsonObject(with: Data(document.utf8)) as? [String: Any])
    let events = try #require(parsed["traceEvents"] as? [[String: Any]])
    let complete = events.filter { $0["ph"] as? String == "X" }
    #expect(complete.count == 2)
    #expect(complete[0]["name"] as? String == "task simclr")
    #expect(complete[0]["ts"] as? Double == 0)
    #expect(complete[0]["dur"] as? Double == 2.5)
    #expect(complete[0]["tid"] as? Int == 3)
    #expect(complete[1]["name"] as? String == "encoder backward")
    #expect(complete[1]["ts"] as? Double == -0.5)
    #expect(complete[1]["dur"] as? Double == 0.4)
    let threads = events.filter { $0["name"] as? String == "thread_name" }
    #expect(threads.count == 4)
  }

  @Test func singleProcessGatherReturnsOwnBytes() throws {
    #expect(try SingleProcessCommunicator().gather([1, 2, 3], root: 0) == [[1, 2, 3]])
  }
}
