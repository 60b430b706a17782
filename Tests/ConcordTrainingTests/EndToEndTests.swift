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

/// Returns the `F32` tensors of `file` other than the optimizer moments.
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
    #expect(accuracy > 0.1)
    #expect(accuracy <= 1)
    let knn = try #require(evaluation["knn_accuracy"] as? Double)
    #expect(knn > 0.1)
    #expect(knn <= 1)
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

  @Test func missingDataFolderFailsOnEveryRank() throws {
    let out = try makeTemporaryDirectory()
    let result = try mpirun(
      ranks: 2, ["train", "--out", out, "--data", out + "/nowhere", "--steps", "2"], timeout: 60)
    #expect(result.status == 1, "\(result.standardError)")
    #expect(result.standardError.contains(out + "/nowhere"))
  }
}

@Suite(.serialized, .enabled(if: hasFashionMNIST, "Fashion-MNIST is not installed"))
struct BalancingEndToEndTests {
  /// Four tasks on two ranks form bit-identical update directions, and the dumped step
  /// replays to the weights the run logged.
  @Test func dumpedStepReplaysOnEveryBalancer() throws {
    let out = try makeTemporaryDirectory()
    let result = try mpirun(
      ranks: 2, smallRun(out: out, steps: 4, extra: ["--dump-gradients", "2", "--log-every", "1"]))
    #expect(result.status == 0, "\(result.standardError)")
    #expect(
      result.standardOutput.contains("update direction checksum")
        && result.standardOutput.contains("identical on all 2 ranks"), "\(result.standardOutput)")
    let dump = out + "/gradients-step-2.safetensors"
    #expect(FileManager.default.fileExists(atPath: dump))

    // The line logged after 4 steps has the weights used by step 3 (counting from 0):
    // those that step 2's GradNorm update produced.
    let lines = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8)
      .split(separator: "\n")
    let fourth = try JSONSerialization.jsonObject(with: Data(lines[3].utf8)) as! [String: Any]
    let logged = fourth["weight"] as! [String: Double]

    let replay = try run(concordBinary(), ["balance", "--input", dump])
    #expect(replay.status == 0, "\(replay.standardError)")
    let output =
      try JSONSerialization.jsonObject(with: Data(replay.standardOutput.utf8))
      as! [String: Any]
    let weights = output["weights"] as! [Double]
    for (index, task) in ["supervised", "simclr", "byol", "augpred"].enumerated() {
      #expect(abs(weights[index] - logged[task]!) <= 1e-4 * logged[task]!, "\(task)")
    }
    let cosines = output["cosines"] as! [[Double]]
    #expect(cosines.count == 4)
    #expect(cosines.indices.allSatisfy { abs(cosines[$0][$0] - 1) < 1e-6 })

    for balancer in ["equal", "pcgrad", "gradnorm"] {
      let other = try run(concordBinary(), ["balance", "--input", dump, "--balancer", balancer])
      #expect(other.status == 0, "\(balancer): \(other.standardError)")
    }
  }

  /// An exploding learning rate makes the losses non-finite: the run skips those steps,
  /// stops after three in a row, and leaves no checkpoint with NaN or infinity.
  @Test func nonFiniteLossesStopTheRun() throws {
    let out = try makeTemporaryDirectory()
    let result = try mpirun(
      ranks: 2,
      smallRun(out: out, steps: 20, extra: ["--lr", "1e30", "--checkpoint-every", "1"]))
    #expect(result.status == 1, "\(result.standardError)")
    #expect(result.standardError.contains("non-finite"), "\(result.standardError)")
    let names = try FileManager.default.contentsOfDirectory(atPath: out + "/checkpoints")
    for name in names where name.hasSuffix(".safetensors") {
      let file = try SafeTensors.read(path: out + "/checkpoints/" + name)
      for tensor in file.tensors where tensor.dtype == .f32 {
        #expect(try file.floats(tensor.name).allSatisfy(\.isFinite), "\(name): \(tensor.name)")
      }
    }
    #expect(!FileManager.default.fileExists(atPath: out + "/eval.json"))
  }
}
