import Foundation
import Testing

/// `concord bench report` on records made of real `concord bench step` runs, as
/// launch/bench-scaling makes them.
@Suite(.serialized) struct BenchReportEndToEndTests {
  /// Runs `concord bench step --json` on `ranks` ranks and returns the record of its output.
  private func stepRecord(ranks: Int, batch: Int, scaling: String) throws -> String {
    let result = try mpirun(
      ranks: ranks,
      [
        "bench", "step", "--json", "--batch-size", String(batch), "--hidden", "64",
        "--steps", "3", "--warmup", "1", "--allreduce", "blocking",
      ], timeout: 120)
    #expect(result.status == 0, "\(result.standardError)")
    let json = try #require(
      result.standardOutput.split(separator: "\n").last { $0.hasPrefix("{") })
    return #"{"kind":"step","network":"local","hosts":1,"scaling":"\#(scaling)","#
      + #""label":"default","repeat":1,"result":\#(json)}"#
  }

  @Test func reportFitsRealBenchmarkRuns() throws {
    var records = [#"{"kind":"machine","cores":2,"date":"test"}"#]
    for ranks in [1, 2] {
      records.append(try stepRecord(ranks: ranks, batch: 64, scaling: "strong"))
      records.append(try stepRecord(ranks: ranks, batch: 32 * ranks, scaling: "weak"))
    }
    let sweep = try mpirun(
      ranks: 2,
      [
        "bench", "allreduce", "--json", "--min-bytes", "65536", "--max-bytes", "1048576",
        "--repeats", "5", "--warmup", "1",
      ], timeout: 120)
    #expect(sweep.status == 0, "\(sweep.standardError)")
    for line in sweep.standardOutput.split(separator: "\n") where line.hasPrefix("{") {
      records.append(#"{"kind":"allreduce","network":"local","hosts":1,"result":\#(line)}"#)
    }
    let folder = try makeTemporaryDirectory()
    try (records.joined(separator: "\n") + "\n").write(
      toFile: folder + "/records.jsonl", atomically: true, encoding: .utf8)

    let result = try run(
      concordBinary(),
      [
        "bench", "report", "--records", folder + "/records.jsonl", "--json",
        folder + "/results.json", "--markdown", folder + "/BENCHMARKS.md", "--svg",
        folder + "/scaling.svg",
      ], timeout: 60)
    #expect(result.status == 0, "\(result.standardError)")
    #expect(result.standardOutput.contains("step model   4 points"), "\(result.standardOutput)")

    let data = try Data(contentsOf: URL(fileURLWithPath: folder + "/results.json"))
    let document = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
    let model = try #require(document["model"] as? [String: Any])
    #expect(((model["compute_per_sample_s"] as? Double) ?? 0) > 0)
    let steps = try #require(document["steps"] as? [[String: Any]])
    #expect(steps.count == 4)
    #expect(steps.allSatisfy { $0["model_ms"] is Double })

    let page = try String(contentsOfFile: folder + "/BENCHMARKS.md", encoding: .utf8)
    #expect(page.contains("| local | 1 | 2 |"))
    #expect(page.contains("**local, 2 ranks on 1 host(s)**"))
    #expect(try SVGElementCounter(path: folder + "/scaling.svg").root == "svg")
  }

  @Test func reportRejectsMalformedRecords() throws {
    let folder = try makeTemporaryDirectory()
    let path = folder + "/records.jsonl"
    try "{\"kind\":\"machine\",\"cores\":2}\nnot json\n".write(
      toFile: path, atomically: true, encoding: .utf8)
    let result = try run(
      concordBinary(),
      ["bench", "report", "--records", path, "--markdown", folder + "/BENCHMARKS.md"],
      timeout: 60)
    #expect(result.status == 2)
    let lines = result.standardError.split(separator: "\n")
    #expect(lines.count == 1, "\(result.standardError)")
    #expect(lines.first?.contains("\(path):2") == true, "\(result.standardError)")
    #expect(!FileManager.default.fileExists(atPath: folder + "/BENCHMARKS.md"))
  }
}
