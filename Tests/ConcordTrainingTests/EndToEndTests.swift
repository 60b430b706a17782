import ConcordTensors
import Foundation
import Testing

/// Flags of a small, quick run on a subset of Fashion-MNIST.
private func smallRun(out: String, steps: Int, extra: [String] = []) -> [String] {
  [
    "train", "--out", out, "--steps", String(steps), "--train-limit", "1024", "--test-limit",
    "400", "--batch-size", "64", "--hidden", "128,64", "--log-every", "2",
    "--checkpoint-every", "3",
  ] + extra
}

private func checkpoint(_ out: String, step: Int) throws -> SafeTensors {
  try SafeTensors.read(path: String(format: "%@/checkpoints/step-%07d.safetensors", out, step))
}

/// Every tensor of `a` that is not an optimizer moment, with its values.
private func parameterTensors(_ file: SafeTensors) -> [SafeTensors.Tensor] {
  file.tensors.filter { $0.dtype == .f32 && !$0.name.hasPrefix("adam.") }
}

@Suite(.serialized, .enabled(if: hasFashionMNIST, "Fashion-MNIST is not installed"))
struct EndToEndTests {
  @Test func twoRanksTrainAndEvaluate() throws {
    let out = try makeTemporaryDirectory()
    let result = try mpirun(ranks: 2, smallRun(out: out, steps: 6))
    #expect(result.status == 0, "\(result.standardError)")
    #expect(result.standardOutput.contains("identical on all 2 ranks"), "\(result.standardOutput)")

    let metrics = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8)
      .split(separator: "\n")
    #expect(metrics.count == 3)
    let first = try JSONSerialization.jsonObject(with: Data(metrics[0].utf8)) as! [String: Any]
    for key in [
      "step", "epoch", "loss", "weight", "grad_norm", "projections", "lr", "samples_per_second",
    ] {
      #expect(first[key] != nil, "metrics line lacks \(key)")
    }
    let losses = first["loss"] as! [String: Double]
    #expect(Set(losses.keys) == ["supervised", "simclr", "byol", "augpred"])

    let evaluation =
      try JSONSerialization.jsonObject(
        with: Data(contentsOf: URL(fileURLWithPath: out + "/eval.json"))) as! [String: Any]
    #expect(evaluation["steps"] as? Int == 6)
    let accuracy = try #require(evaluation["test_accuracy"] as? Double)
    #expect(accuracy > 0.1 && accuracy <= 1)
    let knn = try #require(evaluation["knn_accuracy"] as? Double)
    #expect(knn > 0.1 && knn <= 1)
    #expect(evaluation["seconds"] as? Double != nil)

    let names = try FileManager.default.contentsOfDirectory(atPath: out + "/checkpoints").sorted()
    #expect(names == ["step-0000003.safetensors", "step-0000006.safetensors"])
  }

  /// For per-sample losses the reduced gradient equals the global batch's gradient, so the
  /// world size changes the parameters only by rounding.
  @Test func oneAndTwoRanksAgree() throws {
    let one = try makeTemporaryDirectory()
    let two = try makeTemporaryDirectory()
    let tasks = ["--tasks", "supervised,augpred"]
    let single = try mpirun(ranks: 1, smallRun(out: one, steps: 5, extra: tasks))
    #expect(single.status == 0, "\(single.standardError)")
    let double = try mpirun(ranks: 2, smallRun(out: two, steps: 5, extra: tasks))
    #expect(double.status == 0, "\(double.standardError)")

    let a = try checkpoint(one, step: 5)
    let b = try checkpoint(two, step: 5)
    for tensor in parameterTensors(a) {
      let x = try a.floats(tensor.name)
      let y = try b.floats(tensor.name)
      // Relative to the tensor's norm: summation order differs between the world sizes.
      let difference = zip(x, y).map { Double($0 - $1) * Double($0 - $1) }.reduce(0, +)
      let norm = x.map { Double($0) * Double($0) }.reduce(0, +)
      let relative = (difference / max(norm, 1e-30)).squareRoot()
      #expect(relative <= 1e-5, "\(tensor.name): relative difference \(relative)")
    }
  }

  /// A run stopped at step 3 and resumed to step 6 ends exactly where an uninterrupted run
  /// ends.
  @Test func resumeMatchesUninterruptedRun() throws {
    let whole = try makeTemporaryDirectory()
    let parts = try makeTemporaryDirectory()
    #expect(try mpirun(ranks: 2, smallRun(out: whole, steps: 6)).status == 0)
    #expect(try mpirun(ranks: 2, smallRun(out: parts, steps: 3)).status == 0)
    let resumed = try mpirun(
      ranks: 2, smallRun(out: parts, steps: 6, extra: ["--resume", "latest"]))
    #expect(resumed.status == 0, "\(resumed.standardError)")
    #expect(resumed.standardOutput.contains("resumed from"))

    let a = try checkpoint(whole, step: 6)
    let b = try checkpoint(parts, step: 6)
    #expect(a.tensors.map(\.name) == b.tensors.map(\.name))
    for (x, y) in zip(a.tensors, b.tensors) {
      #expect(x.bytes == y.bytes, "\(x.name) differs after resuming")
    }
  }

  @Test func runsAloneWithoutMPIRun() throws {
    let out = try makeTemporaryDirectory()
    let result = try run(concordBinary(), smallRun(out: out, steps: 4))
    #expect(result.status == 0, "\(result.standardError)")
    #expect(result.standardOutput.contains("1 rank(s)"))
    #expect(FileManager.default.fileExists(atPath: out + "/eval.json"))
  }

  @Test(arguments: [
    (["--bogus", "1"], "--bogus"),
    (["--batch-size", "63"], "--batch-size 63"),
    (["--tasks", "supervised,jigsaw"], "jigsaw"),
    (["--balancer", "mgda"], "mgda"),
    (["--lr", "-1"], "--lr -1"),
    (["--steps", "0"], "--steps 0"),
    (["--log-every"], "--log-every"),
  ])
  func badFlagsExitWithUsageError(flags: [String], named: String) throws {
    let out = try makeTemporaryDirectory()
    let result = try mpirun(ranks: 2, ["train", "--out", out + "/run"] + flags, timeout: 60)
    #expect(result.status == 2, "\(result.standardError)")
    let lines = result.standardError.split(separator: "\n").filter { $0.hasPrefix("concord") }
    #expect(lines.count == 1, "\(result.standardError)")
    #expect(lines.first?.contains(named) == true, "\(result.standardError)")
    #expect(!FileManager.default.fileExists(atPath: out + "/run/checkpoints"))
  }

  @Test func missingDataFolderFailsOnEveryRank() throws {
    let out = try makeTemporaryDirectory()
    let result = try mpirun(
      ranks: 2, ["train", "--out", out, "--data", out + "/nowhere", "--steps", "2"], timeout: 60)
    #expect(result.status == 1, "\(result.standardError)")
    #expect(result.standardError.contains(out + "/nowhere"))
  }
}
