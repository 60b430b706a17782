import ConcordTensors
import Foundation
import Testing

/// Flags of a quick `concord train --encoder conv` run on a subset of Fashion-MNIST, ending
/// in a global average pool or, with `hidden`, in fully connected layers.
private func convRun(out: String, steps: Int, hidden: String = "none", extra: [String] = [])
  -> [String]
{
  [
    "train", "--encoder", "conv", "--conv-channels", "8,16", "--conv-hidden", hidden, "--out",
    out, "--steps",
    String(steps), "--train-limit", "256", "--test-limit", "64", "--batch-size", "16",
    "--log-every", "1", "--checkpoint-every", "3",
  ] + extra
}

@Suite(.serialized, .enabled(if: hasFashionMNIST, "Fashion-MNIST is not installed"))
struct ConvEncoderEndToEndTests {
  /// Batch normalisation over the global batch makes 2 ranks reduce the gradients that 1 rank
  /// computes on the same global batch, up to rounding: per-sample tasks, after one update.
  @Test(arguments: ["none", "12"])
  func twoRanksReduceOneRankGradients(hidden: String) throws {
    var dumps: [SafeTensors] = []
    for ranks in [1, 2] {
      let out = try makeTemporaryDirectory()
      let flags = ["--tasks", "supervised,augpred", "--dump-gradients", "1"]
      let result = try mpirun(
        ranks: ranks, convRun(out: out, steps: 2, hidden: hidden, extra: flags))
      #expect(result.status == 0, "\(ranks) rank(s): \(result.standardError)")
      dumps.append(try SafeTensors.read(path: out + "/gradients-step-1.safetensors"))
    }
    let oneRank = try dumps[0].floats("gradients")
    let twoRanks = try dumps[1].floats("gradients")
    #expect(oneRank.count == twoRanks.count)
    let relative = relativeDifference(oneRank, twoRanks)
    #expect(relative <= 1e-5, "relative difference of the reduced gradients \(relative)")
    let losses = zip(try dumps[0].doubles("losses"), try dumps[1].doubles("losses"))
    for (a, b) in losses { #expect(abs(a - b) <= 1e-5 * abs(a), "losses \(a) and \(b)") }
    print(
      "conv gradients, 1 vs 2 ranks: \(oneRank.count) values, relative difference \(relative)")
  }

  /// 6 steps in one run and 3 + 3 with `--resume latest` end in bit-identical checkpoints,
  /// running statistics included: all four tasks, two ranks.
  @Test(arguments: ["none", "12"])
  func resumeIsBitIdentical(hidden: String) throws {
    let whole = try makeTemporaryDirectory()
    let parts = try makeTemporaryDirectory()
    let description = "conv 8,16" + (hidden == "none" ? "" : " hidden \(hidden)")
    let uninterrupted = try mpirun(ranks: 2, convRun(out: whole, steps: 6, hidden: hidden))
    #expect(uninterrupted.status == 0, "\(uninterrupted.standardError)")
    #expect(uninterrupted.standardOutput.contains("encoder \(description)"))
    #expect(try mpirun(ranks: 2, convRun(out: parts, steps: 3, hidden: hidden)).status == 0)
    let resumed = try mpirun(
      ranks: 2, convRun(out: parts, steps: 6, hidden: hidden, extra: ["--resume", "latest"]))
    #expect(resumed.status == 0, "\(resumed.standardError)")

    let a = try SafeTensors.read(path: checkpointPath(whole, step: 6))
    let b = try SafeTensors.read(path: checkpointPath(parts, step: 6))
    #expect(a.tensors.map(\.name) == b.tensors.map(\.name))
    #expect(a.tensor(named: "encoder.norm.1.running_var") != nil)
    #expect(a.metadata["encoder"] == description)
    #expect(hidden == "none" || a.tensor(named: "encoder.fc.0.weight")?.shape == [12, 7 * 7 * 16])
    var differing: [String] = []
    for (x, y) in zip(a.tensors, b.tensors) where x.bytes != y.bytes { differing.append(x.name) }
    #expect(differing.isEmpty, "tensors that differ after resuming: \(differing)")
    let mean = try a.floats("encoder.norm.0.running_mean")
    #expect(mean.contains { $0 != 0 }, "training moved the running mean")
  }

  /// A checkpoint of one encoder refuses to resume or be evaluated as the other, and
  /// `inspect` and `eval` read it.
  @Test func otherEncoderIsRejected() throws {
    let out = try makeTemporaryDirectory()
    #expect(try mpirun(ranks: 1, convRun(out: out, steps: 3)).status == 0)
    let checkpoint = checkpointPath(out, step: 3)

    let resumed = try mpirun(
      ranks: 1,
      convRun(out: out, steps: 6, extra: ["--resume", "latest"]).filter { $0 != "conv" }
        .map { $0 == "--encoder" ? "--encoder=mlp" : $0 })
    #expect(resumed.status == 2, "\(resumed.standardError)")
    #expect(resumed.standardError.contains("--encoder conv"), "\(resumed.standardError)")
    #expect(!resumed.standardError.contains("--hidden"), "\(resumed.standardError)")

    let widened = try mpirun(
      ranks: 1, convRun(out: out, steps: 6, hidden: "12", extra: ["--resume", "latest"]))
    #expect(widened.status == 2, "\(widened.standardError)")
    #expect(
      widened.standardError.contains("--conv-hidden none, this run has --conv-hidden 12"),
      "\(widened.standardError)")

    let evaluated = try run(
      concordBinary(), ["eval", "--checkpoint", checkpoint, "--encoder", "mlp", "--out", out])
    #expect(evaluated.status == 2, "\(evaluated.standardError)")
    #expect(evaluated.standardError.contains("pass --encoder conv"), "\(evaluated.standardError)")

    let evaluation = try run(concordBinary(), ["eval", "--checkpoint", checkpoint, "--out", out])
    #expect(evaluation.status == 0, "\(evaluation.standardError)")
    let inspection = try run(concordBinary(), ["inspect", checkpoint])
    #expect(inspection.status == 0, "\(inspection.standardError)")
    #expect(inspection.standardOutput.contains("encoder.norm.0.running_mean F32 [8]"))
    #expect(inspection.standardOutput.contains("a complete Concord checkpoint at step 3"))
  }

  /// Evaluation normalises with the running statistics, so a checkpoint evaluated on 1 rank
  /// gives the accuracies that training reported on 2, augpred's included.
  @Test func evaluationIgnoresRankCount() throws {
    let out = try makeTemporaryDirectory()
    #expect(try mpirun(ranks: 2, convRun(out: out, steps: 3)).status == 0)
    let other = try makeTemporaryDirectory()
    let alone = try run(
      concordBinary(), ["eval", "--checkpoint", checkpointPath(out, step: 3), "--out", other])
    #expect(alone.status == 0, "\(alone.standardError)")

    func accuracies(_ folder: String) throws -> [Double?] {
      let data = try Data(contentsOf: URL(fileURLWithPath: folder + "/eval.json"))
      let object = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
      return ["test_accuracy", "knn_accuracy", "augpred_accuracy"].map { object[$0] as? Double }
    }
    let trained = try accuracies(out)
    #expect(trained[2] != nil)
    #expect(try accuracies(other) == trained)
  }

  /// Settings that the conv encoder cannot run with are usage errors (exit 2).
  @Test(arguments: [
    (["--allreduce", "overlap"], "--allreduce overlap cannot run with --encoder conv"),
    (["--conv-channels", "4,4,4,4,4,4"], "--conv-channels 4,4,4,4,4,4 has 6 blocks"),
    (["--conv-channels", "8,0"], "invalid --conv-channels 8,0"),
    (["--conv-channels", "100000"], "--conv-channels 100000 needs about"),
    (["--conv-hidden", "0"], "invalid --conv-hidden 0"),
    (
      ["--conv-channels", "4,4,4,4,4", "--conv-hidden", "8"],
      "--conv-channels 4,4,4,4,4 has 5 blocks, but 28x28 images, halved after every block when "
        + "--conv-hidden is given, allow at most 4"
    ),
  ])
  func invalidSettingsAreUsageErrors(flags: [String], message: String) throws {
    let out = try makeTemporaryDirectory()
    let result = try mpirun(ranks: 2, convRun(out: out, steps: 1, extra: flags))
    #expect(result.status == 2, "\(result.standardError)")
    #expect(result.standardError.contains(message), "\(result.standardError)")
  }
}
