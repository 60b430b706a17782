import ConcordTensors
import Foundation
import Testing

/// LARS with a cosine schedule after 3 warm-up steps, BYOL's cosine target decay, and the
/// supervised head on the views and the clean images.
private let scheduledFlags = [
  "--optimizer", "lars", "--lr", "2", "--lr-schedule", "cosine", "--warmup-steps", "3",
  "--target-decay-schedule", "cosine", "--supervised-view", "both", "--log-every", "1",
  "--checkpoint-every", "6",
]

/// Returns the JSON object of each line of `OUT/metrics.jsonl`.
private func metricsLines(_ out: String) throws -> [[String: Any]] {
  let text = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8)
  return try text.split(separator: "\n").map {
    try #require(try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any])
  }
}

@Suite(.serialized, .enabled(if: hasFashionMNIST, "Fashion-MNIST is not installed"))
struct OptimizerEndToEndTests {
  /// A run of 12 steps stopped after its checkpoint at step 6 and resumed with
  /// `--resume latest` ends bit-identical to the uninterrupted run, with LARS, both
  /// schedules and clean rows on two ranks, and the metrics log each step's scheduled rate.
  ///
  /// The stopped run keeps `--steps 12`, because the cosine schedules span the run's steps.
  @Test func larsCosineResumeIsBitIdentical() throws {
    let whole = try makeTemporaryDirectory() + "/whole"
    let parts = try makeTemporaryDirectory() + "/parts"
    let uninterrupted = try mpirun(ranks: 2, quickRun(out: whole, steps: 12, extra: scheduledFlags))
    #expect(uninterrupted.status == 0, "\(uninterrupted.standardError)")
    // The folder of a run that stopped after writing its checkpoint of step 6.
    try FileManager.default.copyItem(atPath: whole, toPath: parts)
    try FileManager.default.removeItem(atPath: checkpointPath(parts, step: 12))
    let resumed = try mpirun(
      ranks: 2, quickRun(out: parts, steps: 12, extra: scheduledFlags + ["--resume", "latest"]))
    #expect(resumed.status == 0, "\(resumed.standardError)")
    #expect(resumed.standardOutput.contains("resumed from \(checkpointPath(parts, step: 6))"))

    let a = try SafeTensors.read(path: checkpointPath(whole, step: 12))
    let b = try SafeTensors.read(path: checkpointPath(parts, step: 12))
    #expect(a.tensors.map(\.name) == b.tensors.map(\.name))
    var differing: [String] = []
    for (x, y) in zip(a.tensors, b.tensors) where x.bytes != y.bytes { differing.append(x.name) }
    #expect(differing.isEmpty, "tensors that differ after resuming: \(differing)")
    #expect(a.tensor(named: "lars.momentum.encoder.0.weight") != nil)
    #expect(try a.int64s("lars.step") == [12])
    #expect(a.metadata["format_version"] == "3")
    #expect(!a.tensors.contains { $0.name.hasPrefix("adam.") })

    // The line of step s reports the rate of its last update, the one at step s - 1.
    let rates = try metricsLines(whole).map { try #require($0["lr"] as? Double) }
    #expect(rates.count == 12)
    var expected: [Double] = []
    for k in 0..<12 {
      let cosine = (1 + cos(Double.pi * Double(k - 3) / 9)) / 2
      expected.append(k < 3 ? 2 * Double(k) / 3 : 2 * cosine)
    }
    for step in 0..<min(rates.count, expected.count) {
      let tolerance = 1e-6 * max(expected[step], 1)
      #expect(abs(rates[step] - expected[step]) <= tolerance, "lr of step \(step)")
    }
    #expect(uninterrupted.standardOutput.contains("| lr 2 |"), "\(uninterrupted.standardOutput)")
    print(
      "LARS + cosine, resumed at step 6 vs 12 steps on 2 ranks: \(a.tensors.count) tensors, "
        + "\(differing.count) differ; lr per step \(rates.map { String(format: "%.3g", $0) })")
  }

  /// Resuming a LARS checkpoint with Adam stops with one line that names both optimizers and
  /// changes no file.
  @Test func resumeRejectsOtherOptimizer() throws {
    let out = try makeTemporaryDirectory()
    let lars = try mpirun(ranks: 2, quickRun(out: out, steps: 2, extra: ["--optimizer", "lars"]))
    #expect(lars.status == 0, "\(lars.standardError)")
    let before = try snapshot(of: out)
    let result = try mpirun(
      ranks: 2, quickRun(out: out, steps: 4, extra: ["--resume", "latest"]), timeout: 60)
    #expect(result.status == 2, "\(result.standardError)")
    let lines = concordLines(result.standardError)
    #expect(lines.count == 1, "\(result.standardError)")
    let line = String(lines.first ?? "")
    #expect(line.contains("written with --optimizer lars"), "\(line)")
    #expect(line.contains("this run has --optimizer adam"), "\(line)")
    #expect(try snapshot(of: out) == before)
  }

  /// A run whose supervised head trains on the clean or the lightly augmented images keeps
  /// its 2 ranks identical and checks in `concord inspect`, and `concord eval` of its last
  /// checkpoint gives the accuracies that training reported.
  @Test(arguments: ["clean", "light"])
  func thirdRowViewCheckpointEvaluates(view: String) throws {
    let out = try makeTemporaryDirectory()
    let trained = try mpirun(
      ranks: 2, quickRun(out: out, steps: 4, extra: ["--supervised-view", view]))
    #expect(trained.status == 0, "\(trained.standardError)")
    #expect(trained.standardOutput.contains("identical on all 2 ranks"))
    let path = checkpointPath(out, step: 4)
    let inspected = try run(concordBinary(), ["inspect", path])
    #expect(inspected.status == 0, "\(inspected.standardError)")
    #expect(inspected.standardOutput.contains("a complete Concord checkpoint at step 4"))

    func accuracies(_ path: String) throws -> [String: Double] {
      let data = try Data(contentsOf: URL(fileURLWithPath: path))
      let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
      return object.compactMapValues { $0 as? Double }
    }
    let atEnd = try accuracies(out + "/eval.json")
    let other = try makeTemporaryDirectory() + "/eval"
    let evaluated = try run(concordBinary(), ["eval", "--checkpoint", path, "--out", other])
    #expect(evaluated.status == 0, "\(evaluated.standardError)")
    let again = try accuracies(other + "/eval.json")
    for key in ["test_accuracy", "knn_accuracy"] {
      #expect(again[key] != nil, "\(key) is missing from \(again)")
      #expect(again[key] == atEnd[key], "\(key): \(again) vs \(atEnd)")
    }
  }
}
