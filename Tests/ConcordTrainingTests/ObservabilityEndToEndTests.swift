import Foundation
import Testing

#if canImport(FoundationXML)
  import FoundationXML
#endif

@testable import ConcordTraining

/// Scalars by tag and step: `scalars["loss/supervised"][4]`.
typealias ScalarTable = [String: [Int: Double]]

/// The run folder of one small two-rank run with `--trace`, shared by the tests below: six
/// steps logged every two, so metrics.jsonl, the event file, the plot and the trace all
/// come from the same run.
private let observedRun: Result<String, any Error> = Result {
  let out = try makeTemporaryDirectory()
  let result = try mpirun(
    ranks: 2,
    [
      "train", "--out", out, "--steps", "6", "--train-limit", "512", "--test-limit", "200",
      "--batch-size", "64", "--hidden", "128,64", "--log-every", "2", "--checkpoint-every", "3",
      "--trace", out + "/trace.json",
    ])
  guard result.status == 0 else {
    throw RunFailed(description: "exit \(result.status): \(result.standardError)")
  }
  return out
}

private struct RunFailed: Error, CustomStringConvertible {
  var description: String
}

/// The scalars that the event file must hold: every number of metrics.jsonl but `step`, tagged
/// `key` or `key/member` (with `/` in members as `-`), and the accuracies of eval.json as
/// `eval/...` at the last step, each augmentation kind's as `eval/augpred_accuracy_per_kind/KIND`.
///
/// A `null` has no scalar.
func expectedScalars(runDirectory: String) throws -> ScalarTable {
  var table: ScalarTable = [:]
  let text = try String(contentsOfFile: runDirectory + "/metrics.jsonl", encoding: .utf8)
  for line in text.split(separator: "\n") {
    let object = try #require(
      try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    let step = try #require(object["step"] as? Int)
    for (key, value) in object where key != "step" {
      if let number = value as? NSNumber {
        table[key, default: [:]][step] = number.doubleValue
      } else if let members = value as? [String: Any] {
        for (member, inner) in members {
          guard let number = inner as? NSNumber else { continue }
          let tag = key + "/" + member.replacingOccurrences(of: "/", with: "-")
          table[tag, default: [:]][step] = number.doubleValue
        }
      }
    }
  }
  let evaluation = try #require(
    try JSONSerialization.jsonObject(
      with: Data(contentsOf: URL(fileURLWithPath: runDirectory + "/eval.json")))
      as? [String: Any])
  let steps = try #require(evaluation["steps"] as? Int)
  for key in ["test_accuracy", "knn_accuracy", "augpred_accuracy"] {
    if let number = evaluation[key] as? NSNumber {
      table["eval/" + key, default: [:]][steps] = number.doubleValue
    }
  }
  for (kind, value) in evaluation["augpred_accuracy_per_kind"] as? [String: Any] ?? [:] {
    guard let number = value as? NSNumber else { continue }
    table["eval/augpred_accuracy_per_kind/" + kind, default: [:]][steps] = number.doubleValue
  }
  return table
}

/// Checks that `actual` has exactly the tags and steps of `expected`, with values equal up
/// to float32 rounding and the 7 significant digits of metrics.jsonl.
func expectSameScalars(_ actual: ScalarTable, _ expected: ScalarTable) {
  #expect(Set(actual.keys) == Set(expected.keys))
  for (tag, points) in expected {
    let found = actual[tag] ?? [:]
    #expect(Set(found.keys) == Set(points.keys), "steps of \(tag)")
    for (step, value) in points {
      guard let other = found[step] else { continue }
      #expect(
        abs(other - value) <= 2e-6 * max(abs(value), 1e-6),
        "\(tag) at step \(step): event file \(other), metrics.jsonl \(value)")
    }
  }
}

/// Returns the path of the single event file of a run folder.
func eventFile(runDirectory: String) throws -> String {
  let names = try FileManager.default.contentsOfDirectory(atPath: runDirectory + "/tb")
  let events = names.filter { $0.hasPrefix("events.out.tfevents.") }
  try #require(events.count == 1, "tb/ holds \(names)")
  return runDirectory + "/tb/" + events[0]
}

@Suite(.serialized, .enabled(if: hasFashionMNIST, "Fashion-MNIST is not installed"))
struct ObservabilityEndToEndTests {
  @Test func eventFileMatchesMetrics() throws {
    let out = try observedRun.get()
    let bytes = [UInt8](
      try Data(contentsOf: URL(fileURLWithPath: try eventFile(runDirectory: out))))
    let events = try EventFileReader.records(bytes).map(EventFileReader.event)
    #expect(events.first?.fileVersion == "brain.Event:2")
    #expect(events.allSatisfy { ($0.wallTime ?? 0) > 1_600_000_000 })

    var actual: ScalarTable = [:]
    for event in events.dropFirst() {
      for (tag, value) in event.scalars {
        actual[tag, default: [:]][Int(event.step)] = Double(value)
      }
    }
    expectSameScalars(actual, try expectedScalars(runDirectory: out))
    #expect(actual["loss/supervised"]?.count == 3)
    #expect(actual["cosine/supervised-simclr"] != nil)
  }

  /// TensorBoard's own reader returns the scalars of metrics.jsonl.
  @Test func tensorBoardReadsSameScalars() throws {
    let out = try observedRun.get()
    let python = try tensorBoardPython()
    let script = try makeTemporaryDirectory() + "/read_events.py"
    try """
    import json, sys
    from tensorboard.backend.event_processing import event_accumulator
    accumulator = event_accumulator.EventAccumulator(
        sys.argv[1], size_guidance={event_accumulator.SCALARS: 0})
    accumulator.Reload()
    print(json.dumps({tag: [[e.step, e.value] for e in accumulator.Scalars(tag)]
                      for tag in accumulator.Tags()["scalars"]}))
    """.write(toFile: script, atomically: true, encoding: .utf8)
    let result = try run(python, [script, out + "/tb"], timeout: 120)
    try #require(result.status == 0, "\(result.standardError)")
    let output = try #require(
      try JSONSerialization.jsonObject(with: Data(result.standardOutput.utf8))
        as? [String: [[Double]]])
    var actual: ScalarTable = [:]
    for (tag, points) in output {
      for point in points { actual[tag, default: [:]][Int(point[0])] = point[1] }
    }
    expectSameScalars(actual, try expectedScalars(runDirectory: out))
  }

  @Test func traceHasEveryRank() throws {
    let out = try observedRun.get()
    let document = try #require(
      try JSONSerialization.jsonObject(
        with: Data(contentsOf: URL(fileURLWithPath: out + "/trace.json"))) as? [String: Any])
    #expect(document["displayTimeUnit"] as? String == "ms")
    let events = try #require(document["traceEvents"] as? [[String: Any]])
    let complete = events.filter { $0["ph"] as? String == "X" }
    let threadNames = events.filter { $0["name"] as? String == "thread_name" }
      .compactMap { ($0["args"] as? [String: Any])?["name"] as? String }
    #expect(Set(threadNames) == ["rank 0", "rank 1"])

    for rank in 0..<2 {
      let mine = complete.filter { $0["tid"] as? Int == rank }
      let names = Set(mine.compactMap { $0["name"] as? String })
      let phases: Set<String> = [
        "data", "forward", "task supervised", "task simclr", "task byol", "task augpred",
        "encoder backward", "allreduce", "balancing", "optimizer",
      ]
      #expect(phases.isSubset(of: names), "rank \(rank) has \(names)")
      // Six steps, each with every phase.
      #expect(mine.filter { $0["name"] as? String == "allreduce" }.count == 6)
      let steps = Set(mine.compactMap { ($0["args"] as? [String: Any])?["step"] as? Int })
      #expect(steps == Set(0..<6))
    }
    // Only rank 0 writes checkpoints.
    let checkpointRanks = complete.filter { $0["name"] as? String == "checkpoint" }
      .compactMap { $0["tid"] as? Int }
    #expect(Set(checkpointRanks) == [0])
    for event in complete {
      #expect(event["pid"] as? Int == 0)
      // Every phase is recorded after the starting barrier, where the clocks read 0.
      let start = try #require(event["ts"] as? Double)
      let duration = try #require(event["dur"] as? Double)
      #expect(start >= 0, "\(event)")
      #expect(duration >= 0, "\(event)")
    }
  }

  @Test func plotCommandDrawsEverySeries() throws {
    let out = try observedRun.get()
    let page = out + "/page.svg"
    let result = try run(concordBinary(), ["plot", out, "--out", page], timeout: 60)
    #expect(result.status == 0, "\(result.standardError)")
    #expect(result.standardOutput.contains(page))
    let counter = try SVGElementCounter(path: page)
    // Four losses, four weights, the conflict rate and the throughput.
    #expect(counter.counts["path"] == 10)
    #expect(counter.root == "svg")
    #expect(counter.counts["script"] == nil)
    #expect(counter.texts.contains("Loss per task"))
    #expect(counter.texts.contains("GradNorm task weights"))
  }

  @Test func plotDefaultsToRunFolder() throws {
    let out = try observedRun.get()
    let result = try run(concordBinary(), ["plot", out], timeout: 60)
    #expect(result.status == 0, "\(result.standardError)")
    #expect(FileManager.default.fileExists(atPath: out + "/plot.svg"))
  }

  @Test func plotRejectsMissingMetrics() throws {
    let folder = try makeTemporaryDirectory()
    let result = try run(concordBinary(), ["plot", folder], timeout: 60)
    #expect(result.status == 2)
    let lines = result.standardError.split(separator: "\n")
    #expect(lines.count == 1, "\(result.standardError)")
    #expect(lines.first?.contains(folder + "/metrics.jsonl") == true)
  }

  @Test func plotRejectsMalformedMetrics() throws {
    let folder = try makeTemporaryDirectory()
    try "{\"step\": 2, \"loss\": {}, \"weight\": {}}\nnot json\n".write(
      toFile: folder + "/metrics.jsonl", atomically: true, encoding: .utf8)
    let result = try run(concordBinary(), ["plot", folder], timeout: 60)
    #expect(result.status == 2)
    let lines = result.standardError.split(separator: "\n")
    #expect(lines.count == 1, "\(result.standardError)")
    #expect(lines.first?.contains("line 2") == true, "\(result.standardError)")
    #expect(!FileManager.default.fileExists(atPath: folder + "/plot.svg"))
  }
}

/// Counts the elements of an XML file by name and collects its text, with Foundation's `XMLParser`.
///
/// Creating it throws for a document that is not well-formed XML.
final class SVGElementCounter: NSObject, XMLParserDelegate {
  private(set) var counts: [String: Int] = [:]
  private(set) var root: String?
  private(set) var texts: [String] = []
  private var text = ""

  struct NotWellFormed: Error, CustomStringConvertible {
    var description: String
  }

  init(path: String) throws {
    super.init()
    let parser = try #require(XMLParser(contentsOf: URL(fileURLWithPath: path)))
    parser.delegate = self
    guard parser.parse() else {
      throw NotWellFormed(
        description: "\(path): \(parser.parserError.map { "\($0)" } ?? "unknown error") "
          + "at line \(parser.lineNumber)")
    }
  }

  func parser(
    _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?,
    qualifiedName: String?, attributes: [String: String] = [:]
  ) {
    if root == nil { root = elementName }
    counts[elementName, default: 0] += 1
    text = ""
  }

  func parser(_ parser: XMLParser, foundCharacters string: String) {
    text += string
  }

  func parser(
    _ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?,
    qualifiedName: String?
  ) {
    if elementName == "text" { texts.append(text) }
    text = ""
  }
}

/// Returns the Python of a virtual environment with TensorBoard, created once under
/// `.build/python-venv-tensorboard` with pip from PyPI.
///
/// Cancels the test, which reports it as skipped, when python3, its venv module or the network is
/// missing.
func tensorBoardPython() throws -> String {
  let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
    .deletingLastPathComponent().deletingLastPathComponent()
  let environment = root.appendingPathComponent(".build/python-venv-tensorboard").path
  let python = environment + "/bin/python"
  if FileManager.default.isExecutableFile(atPath: python),
    try run(python, ["-c", "import tensorboard"], timeout: 60).status == 0
  {
    return python
  }
  guard try run("/usr/bin/env", ["python3", "--version"], timeout: 60).status == 0 else {
    try Test.cancel(
      Comment(rawValue: "python3 is not installed, so TensorBoard cannot read the event file"))
  }
  let venv = try run(
    "/usr/bin/env", ["python3", "-m", "venv", "--clear", environment], timeout: 120)
  guard venv.status == 0 else {
    try Test.cancel(
      Comment(
        rawValue: "python3 -m venv failed (install python3-venv): "
          + lastLine(venv.standardError)))
  }
  let install = try run(
    environment + "/bin/pip",
    ["install", "--disable-pip-version-check", "--timeout", "30", "--retries", "1", "tensorboard"],
    timeout: 600)
  guard install.status == 0 else {
    try Test.cancel(
      Comment(
        rawValue: "pip could not install tensorboard from PyPI (no network?): "
          + lastLine(install.standardError)))
  }
  return python
}

private func lastLine(_ text: String) -> String {
  text.split(separator: "\n").last.map(String.init) ?? "no output"
}
