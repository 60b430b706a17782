import Foundation
import Testing

#if canImport(FoundationXML)
  import FoundationXML
#endif

/// Returns the arguments of a tiny study: 2 balancers times 2 seeds of 20 steps each.
private func tinyStudy(out: String) -> [String] {
  [
    "study", "--balancers", "equal,gradnorm", "--seeds", "2", "--out", out, "--steps", "20",
    "--train-limit", "512", "--test-limit", "256", "--hidden", "64,32", "--batch-size", "64",
    "--log-every", "5",
  ]
}

/// Reads `path` as a JSON object.
private func jsonObject(_ path: String) throws -> [String: Any] {
  let data = try Data(contentsOf: URL(fileURLWithPath: path))
  return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
}

/// Returns the mean and the sample standard deviation of `values`.
private func meanAndDeviation(_ values: [Double]) -> (Double, Double) {
  let mean = values.reduce(0, +) / Double(values.count)
  let squares = values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +)
  return (mean, (squares / Double(values.count - 1)).squareRoot())
}

/// Returns the last line of `path`, a `metrics.jsonl`, as a JSON object.
private func lastMetricsLine(_ path: String) throws -> [String: Any] {
  let lines = try String(contentsOfFile: path, encoding: .utf8).split(separator: "\n")
  let last = try #require(lines.last)
  return try #require(try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
}

/// Counts the elements of an XML document by name, and whether the document is well-formed.
private final class ElementCounter: NSObject, XMLParserDelegate {
  var counts: [String: Int] = [:]

  func parser(
    _ parser: XMLParser, didStartElement name: String, namespaceURI: String?,
    qualifiedName: String?, attributes: [String: String] = [:]
  ) {
    counts[name, default: 0] += 1
  }
}

@Suite(.serialized, .enabled(if: hasFashionMNIST, "Fashion-MNIST is not installed"))
struct StudyTests {
  /// A study under 2 ranks writes a run folder per setting and a report whose table and JSON
  /// contain the means and deviations of the runs' own files.
  ///
  /// Running it again skips every run.
  @Test func tinyStudyReportsAndResumes() throws {
    let out = try makeTemporaryDirectory() + "/study"
    let result = try mpirun(ranks: 2, tinyStudy(out: out))
    try #require(result.status == 0, "\(result.standardError)")
    #expect(result.standardOutput.contains("study setting 1 of 4: balancer equal, seed 0"))
    #expect(result.standardOutput.contains("study setting 4 of 4: balancer gradnorm, seed 1"))

    let runs = ["equal-seed0", "equal-seed1", "gradnorm-seed0", "gradnorm-seed1"]
    for run in runs {
      #expect(FileManager.default.fileExists(atPath: "\(out)/\(run)/eval.json"), "\(run)")
      #expect(FileManager.default.fileExists(atPath: "\(out)/\(run)/metrics.jsonl"), "\(run)")
    }

    // The table's cells and the JSON match the statistics of the runs' eval.json files.
    let table = try String(contentsOfFile: out + "/study.md", encoding: .utf8)
      .split(separator: "\n").filter { $0.hasPrefix("| ") && !$0.hasPrefix("| ---") }.map {
        $0.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
      }
    try #require(table.count == 3, "\(table)")
    let header = table[0]
    let report = try jsonObject(out + "/study.json")
    let balancers = try #require(report["balancers"] as? [[String: Any]])
    #expect(balancers.map { $0["balancer"] as? String } == ["equal", "gradnorm"])

    for (row, balancer) in ["equal", "gradnorm"].enumerated() {
      let cells = table[row + 1]
      #expect(cells[0] == balancer)
      #expect(cells[1] == "2")
      let evaluations = try (0..<2).map { try jsonObject("\(out)/\(balancer)-seed\($0)/eval.json") }
      let columns = [
        ("test_accuracy", "test accuracy"), ("knn_accuracy", "kNN accuracy"),
        ("augpred_accuracy", "augpred accuracy"),
      ]
      for (key, title) in columns {
        let values = try evaluations.map { try #require($0[key] as? Double, "\(key)") }
        let (mean, deviation) = meanAndDeviation(values)
        let column = try #require(header.firstIndex(of: title), "\(header)")
        let parts = cells[column].components(separatedBy: " ± ").compactMap(Double.init)
        try #require(parts.count == 2, "\(cells[column])")
        #expect(abs(parts[0] - mean) <= 5.1e-5, "\(balancer) \(key) mean \(parts[0]) vs \(mean)")
        #expect(abs(parts[1] - deviation) <= 5.1e-5, "\(balancer) \(key) deviation")

        let statistic = try #require(balancers[row][key] as? [String: Double], "\(key)")
        #expect(abs(statistic["mean"]! - mean) <= 1e-6 * max(mean, 1), "\(balancer) \(key)")
        #expect(abs(statistic["std"]! - deviation) <= 1e-6, "\(balancer) \(key) std")
      }

      // The final weights are those of the runs' last metrics lines.
      let weights = try (0..<2).map {
        try #require(
          try lastMetricsLine("\(out)/\(balancer)-seed\($0)/metrics.jsonl")["weight"]
            as? [String: Double])
      }
      let finals = try #require(balancers[row]["final_weights"] as? [String: [String: Double]])
      for task in ["supervised", "simclr", "byol", "augpred"] {
        let (mean, _) = meanAndDeviation(weights.map { $0[task]! })
        #expect(abs(finals[task]!["mean"]! - mean) <= 1e-6, "\(balancer) weight of \(task)")
      }
      if balancer == "gradnorm" {
        #expect(weights.allSatisfy { $0["supervised"] != 1 }, "GradNorm left the weights at 1")
      }
    }

    // The SVG is well-formed XML with one panel per task and one line per balancer in each.
    let parser = XMLParser(data: try Data(contentsOf: URL(fileURLWithPath: out + "/study.svg")))
    let counter = ElementCounter()
    parser.delegate = counter
    #expect(parser.parse(), "\(String(describing: parser.parserError))")
    #expect(counter.counts["svg"] == 1)
    #expect(counter.counts["path"] == 4 * 2)
    #expect(
      try String(contentsOfFile: out + "/study.svg", encoding: .utf8).contains("Loss of byol"))

    // A second start skips every finished run and writes the same table.
    let before = try String(contentsOfFile: out + "/study.md", encoding: .utf8)
    let again = try mpirun(ranks: 2, tinyStudy(out: out))
    try #require(again.status == 0, "\(again.standardError)")
    #expect(again.standardOutput.components(separatedBy: "skipped").count - 1 == 4)
    #expect(!again.standardOutput.contains("state checksum"), "a finished run trained again")
    #expect(try String(contentsOfFile: out + "/study.md", encoding: .utf8) == before)
  }

  /// A `--config` file sets the study's own flags, and the command line wins over it.
  @Test func configurationFileSetsStudyFlags() throws {
    let root = try makeTemporaryDirectory()
    let settings = """
      {"out": "\(root)/from-file", "balancers": ["pcgrad", "equal"], "seeds": 2, "seed-base": 5,
       "steps": 2, "train-limit": 256, "test-limit": 64, "hidden": [16], "batch-size": 32}
      """
    try settings.write(toFile: root + "/study.json", atomically: true, encoding: .utf8)

    let result = try mpirun(ranks: 2, ["study", "--config", root + "/study.json", "--seeds", "1"])
    try #require(result.status == 0, "\(result.standardError)")
    #expect(result.standardOutput.contains("study setting 1 of 2: balancer pcgrad, seed 5"))
    #expect(result.standardOutput.contains("study setting 2 of 2: balancer equal, seed 5"))
    let folders = try FileManager.default.contentsOfDirectory(atPath: root + "/from-file")
    #expect(
      Set(folders)
        == ["pcgrad-seed5", "equal-seed5", "study.md", "study.json", "study.svg"])
  }

  /// A study started again with other settings rejects its finished runs instead of
  /// reporting them under the new settings, but accepts a new logging interval.
  @Test func restartWithOtherSettingsIsRejected() throws {
    let out = try makeTemporaryDirectory() + "/study"
    func study(steps: Int) -> [String] {
      [
        "study", "--balancers", "equal", "--seeds", "1", "--out", out, "--steps", String(steps),
        "--train-limit", "256", "--test-limit", "64", "--hidden", "16", "--batch-size", "32",
      ]
    }
    let arguments = study(steps: 2)
    let first = try mpirun(ranks: 2, arguments)
    try #require(first.status == 0, "\(first.standardError)")

    let smoothed = try mpirun(ranks: 2, arguments + ["--label-smoothing", "0.3"])
    #expect(smoothed.status == 2, "\(smoothed.standardError)")
    let line = concordLines(smoothed.standardError).first ?? ""
    #expect(line.contains("equal-seed0 was trained with labelSmoothing 0"), "\(line)")
    #expect(line.contains("another --out"), "\(line)")

    let longer = try mpirun(ranks: 2, study(steps: 3))
    #expect(longer.status == 2, "\(longer.standardError)")

    let logged = try mpirun(ranks: 2, arguments + ["--log-every", "1"])
    #expect(logged.status == 0, "\(logged.standardError)")
    #expect(logged.standardOutput.contains("skipped"), "\(logged.standardOutput)")
  }

  /// A study stopped after a run's checkpoint and before its eval.json resumes that run from
  /// the checkpoint.
  @Test func interruptedRunResumes() throws {
    let out = try makeTemporaryDirectory() + "/study"
    let arguments = [
      "study", "--balancers", "pcgrad", "--seeds", "1", "--out", out, "--steps", "6",
      "--train-limit", "512", "--test-limit", "128", "--hidden", "32", "--batch-size", "64",
      "--checkpoint-every", "3",
    ]
    let first = try mpirun(ranks: 2, arguments)
    try #require(first.status == 0, "\(first.standardError)")
    try FileManager.default.removeItem(atPath: out + "/pcgrad-seed0/eval.json")
    try FileManager.default.removeItem(
      atPath: out + "/pcgrad-seed0/checkpoints/step-0000006.safetensors")

    let second = try mpirun(ranks: 2, arguments)
    try #require(second.status == 0, "\(second.standardError)")
    #expect(second.standardOutput.contains("resuming from its newest checkpoint"))
    #expect(second.standardOutput.contains("resumed from"), "\(second.standardOutput)")
    #expect(FileManager.default.fileExists(atPath: out + "/pcgrad-seed0/eval.json"))
    #expect(FileManager.default.fileExists(atPath: out + "/study.md"))
  }
}
