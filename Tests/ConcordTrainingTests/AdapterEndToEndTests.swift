import ConcordTensors
import Foundation
import Testing

/// Flags of a quick `concord train --adapters parallel` run on a subset of Fashion-MNIST.
private func adapterRun(out: String, steps: Int, extra: [String] = []) -> [String] {
  [
    "train", "--adapters", "parallel", "--adapter-rank", "4", "--hidden", "32,16", "--out", out,
    "--steps", String(steps), "--train-limit", "256", "--test-limit", "64", "--batch-size", "16",
    "--log-every", "1", "--checkpoint-every", "3",
  ] + extra
}

@Suite(.serialized, .enabled(if: hasFashionMNIST, "Fashion-MNIST is not installed"))
struct AdapterEndToEndTests {
  /// Two ranks end with bit-identical state under every allreduce mode.
  ///
  /// The allreduce runs blocking, overlapped with the backward pass, or once per task. Each
  /// mode reduces the adapters' gradients in
  /// its own regions, so a region left out would leave the ranks apart.
  @Test(arguments: [
    ["--allreduce", "blocking"], ["--allreduce", "overlap"], ["--allreduce-fusion", "per-task"],
  ])
  func twoRanksStayIdentical(flags: [String]) throws {
    let out = try makeTemporaryDirectory()
    let result = try mpirun(ranks: 2, adapterRun(out: out, steps: 3, extra: flags))
    #expect(result.status == 0, "\(result.standardError)")
    #expect(result.standardOutput.contains("adapters parallel rank 4"), "\(result.standardOutput)")
    #expect(
      result.standardOutput.contains("identical on all 2 ranks"), "\(result.standardOutput)")
  }

  /// 6 steps in one run and 3 + 3 with `--resume latest` end in bit-identical checkpoints.
  ///
  /// The checkpoints contain the adapters, their optimizer state and the BYOL target's
  /// invariant adapters. A resume with other adapters is a usage error.
  @Test func resumeIsBitIdentical() throws {
    let whole = try makeTemporaryDirectory()
    let parts = try makeTemporaryDirectory()
    let uninterrupted = try mpirun(ranks: 2, adapterRun(out: whole, steps: 6))
    #expect(uninterrupted.status == 0, "\(uninterrupted.standardError)")
    #expect(try mpirun(ranks: 2, adapterRun(out: parts, steps: 3)).status == 0)
    let resumed = try mpirun(
      ranks: 2, adapterRun(out: parts, steps: 6, extra: ["--resume", "latest"]))
    #expect(resumed.status == 0, "\(resumed.standardError)")

    let a = try SafeTensors.read(path: checkpointPath(whole, step: 6))
    let b = try SafeTensors.read(path: checkpointPath(parts, step: 6))
    #expect(a.tensors.map(\.name) == b.tensors.map(\.name))
    for name in [
      "adapter.invariant.0.down", "adapter.sensitive.1.up",
      "adam.first_moment.adapter.sensitive.0.up",
      "target.adapter.invariant.1.up",
    ] {
      #expect(a.tensor(named: name) != nil, "\(name)")
    }
    #expect(a.tensor(named: "target.adapter.sensitive.0.down") == nil)
    #expect(a.tensor(named: "supervised.classifier.weight")?.shape == [10, 32])
    let up = try a.floats("adapter.invariant.1.up")
    #expect(up.contains { $0 != 0 }, "training moved the up projection from zero")
    var differing: [String] = []
    for (x, y) in zip(a.tensors, b.tensors) where x.bytes != y.bytes { differing.append(x.name) }
    #expect(differing.isEmpty, "tensors that differ after resuming: \(differing)")

    let withoutAdapters = try mpirun(
      ranks: 2,
      adapterRun(out: parts, steps: 9, extra: ["--resume", "latest"]).filter {
        $0 != "--adapter-rank" && $0 != "4"
      }.map { $0 == "parallel" ? "none" : $0 })
    #expect(withoutAdapters.status == 2, "\(withoutAdapters.standardError)")
    #expect(
      withoutAdapters.standardError.contains(
        "was written with --adapters parallel, this run has --adapters none"),
      "\(withoutAdapters.standardError)")
  }

  /// With adapters, eval.json contains the kNN and probe accuracies of the concatenated features
  /// and of each group's features, the console line shows them, and `concord eval` of the
  /// checkpoint on 1 rank gives the accuracies that training reported on 2.
  @Test func evaluationReportsEachGroup() throws {
    let out = try makeTemporaryDirectory()
    let trained = try mpirun(
      ranks: 2, adapterRun(out: out, steps: 3, extra: ["--linear-probe", "--probe-epochs", "2"]))
    #expect(trained.status == 0, "\(trained.standardError)")
    #expect(
      trained.standardOutput.contains("kNN accuracy invariant "), "\(trained.standardOutput)")
    #expect(
      trained.standardOutput.contains("linear probe accuracy invariant "),
      "\(trained.standardOutput)")

    let keys = [
      "knn_accuracy", "knn_accuracy_invariant", "knn_accuracy_sensitive",
      "linear_probe_accuracy", "linear_probe_accuracy_invariant",
      "linear_probe_accuracy_sensitive", "test_accuracy", "augpred_accuracy",
    ]
    func accuracies(_ folder: String) throws -> [Double?] {
      let data = try Data(contentsOf: URL(fileURLWithPath: folder + "/eval.json"))
      let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
      return keys.map { object[$0] as? Double }
    }
    let reported = try accuracies(out)
    for (key, value) in zip(keys, reported) {
      #expect(value != nil, "\(key) in eval.json")
      #expect(value.map { (0...1).contains($0) } ?? false, "\(key) \(String(describing: value))")
    }

    let other = try makeTemporaryDirectory()
    let evaluated = try run(
      concordBinary(),
      [
        "eval", "--checkpoint", checkpointPath(out, step: 3), "--out", other, "--linear-probe",
        "--probe-epochs", "2",
      ])
    #expect(evaluated.status == 0, "\(evaluated.standardError)")
    #expect(try accuracies(other) == reported)
  }

  /// `concord bench step --adapters parallel` times the adapted step and counts the adapters'
  /// buffers in its analytic memory.
  @Test func benchStepTimesAdapters() throws {
    func report(_ extra: [String]) throws -> [String: Any] {
      let arguments =
        [
          "bench", "step", "--steps", "2", "--warmup", "1", "--batch-size", "32", "--hidden",
          "64,32", "--json",
        ] + extra
      let result = try mpirun(ranks: 2, arguments, timeout: 120)
      try #require(result.status == 0, "\(result.standardError)")
      let line = try #require(result.standardOutput.split(separator: "\n").last)
      return try #require(
        try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    }
    let plain = try report([])
    let adapted = try report(["--adapters", "parallel", "--adapter-rank", "8"])
    #expect(plain["adapters"] as? String == "none")
    #expect(adapted["adapters"] as? String == "parallel rank 8")
    let plainMegabytes = try #require(plain["analytic_mb"] as? Double)
    let adaptedMegabytes = try #require(adapted["analytic_mb"] as? Double)
    #expect(adaptedMegabytes > plainMegabytes, "\(adaptedMegabytes) vs \(plainMegabytes)")
  }
}
