import ConcordTensors
import Foundation
import Testing

@Suite(.serialized, .enabled(if: hasFashionMNIST, "Fashion-MNIST is not installed"))
struct CheckpointResumeTests {
  /// 40 steps in one run and 20 + 20 with `--resume latest` end in bit-identical checkpoints:
  /// all four tasks, PCGrad with GradNorm, two ranks.
  @Test func resumeIsBitIdenticalAfterTwentySteps() throws {
    let whole = try makeTemporaryDirectory()
    let parts = try makeTemporaryDirectory()
    let flags = ["--checkpoint-every", "10", "--balancer", "pcgrad+gradnorm"]
    let uninterrupted = try mpirun(ranks: 2, quickRun(out: whole, steps: 40, extra: flags))
    #expect(uninterrupted.status == 0, "\(uninterrupted.standardError)")
    let first = try mpirun(ranks: 2, quickRun(out: parts, steps: 20, extra: flags))
    #expect(first.status == 0, "\(first.standardError)")
    let resumed = try mpirun(
      ranks: 2, quickRun(out: parts, steps: 40, extra: flags + ["--resume", "latest"]))
    #expect(resumed.status == 0, "\(resumed.standardError)")
    #expect(resumed.standardOutput.contains("resumed from \(checkpointPath(parts, step: 20))"))

    let a = try SafeTensors.read(path: checkpointPath(whole, step: 40))
    let b = try SafeTensors.read(path: checkpointPath(parts, step: 40))
    #expect(a.tensors.map(\.name) == b.tensors.map(\.name))
    var differing: [String] = []
    for (x, y) in zip(a.tensors, b.tensors) where x.bytes != y.bytes { differing.append(x.name) }
    #expect(differing.isEmpty, "tensors that differ after resuming: \(differing)")
    for key in ["step", "epoch", "data_crc32", "model"] {
      #expect(a.metadata[key] == b.metadata[key], "metadata \(key)")
    }
    print(
      "resume 20+20 vs 40 steps: \(a.tensors.count) tensors, \(differing.count) differ, "
        + "data_crc32 \(a.metadata["data_crc32"] ?? "?") and \(b.metadata["data_crc32"] ?? "?")")
  }

  /// A run of 2 ranks stopped at step 3 resumes on 1 or 3 ranks with the same global batch.
  ///
  /// It ends within rounding of an uninterrupted run: the tasks have per-sample losses, so the
  /// rank count changes only the order of summation.
  @Test(arguments: [1, 3])
  func resumeOnAnotherRankCount(ranks: Int) throws {
    let whole = try makeTemporaryDirectory()
    let parts = try makeTemporaryDirectory()
    let flags = ["--batch-size", "96", "--tasks", "supervised,augpred", "--checkpoint-every", "3"]
    #expect(try mpirun(ranks: 2, quickRun(out: whole, steps: 6, extra: flags)).status == 0)
    #expect(try mpirun(ranks: 2, quickRun(out: parts, steps: 3, extra: flags)).status == 0)
    let resumed = try mpirun(
      ranks: ranks, quickRun(out: parts, steps: 6, extra: flags + ["--resume", "latest"]))
    #expect(resumed.status == 0, "\(resumed.standardError)")
    #expect(resumed.standardOutput.contains("\(ranks) rank(s)"))

    let a = try SafeTensors.read(path: checkpointPath(whole, step: 6))
    let b = try SafeTensors.read(path: checkpointPath(parts, step: 6))
    #expect(a.tensors.map(\.name) == b.tensors.map(\.name))
    var largest = (name: "", value: 0.0)
    for tensor in a.tensors where tensor.dtype == .f32 {
      let relative = relativeDifference(try a.floats(tensor.name), try b.floats(tensor.name))
      #expect(relative <= 1e-5, "\(tensor.name): relative difference \(relative)")
      if relative > largest.value { largest = (tensor.name, relative) }
    }
    #expect(b.metadata["world_size"] == String(ranks))
    #expect(try b.int64s("step") == [6])
    print(
      "resume 2 ranks x 3 steps, then \(ranks) rank(s) to step 6, vs 2 ranks x 6 steps: "
        + "largest relative difference \(largest.value) (\(largest.name))")
  }

  /// Resuming with another task list, encoder or balancer stops with one line that names
  /// the flag and both values, and changes no file.
  @Test(arguments: [
    (["--tasks", "supervised,simclr"], "--tasks supervised,simclr,byol,augpred"),
    (["--hidden", "64,32"], "--hidden 128,64"),
    (["--balancer", "pcgrad"], "--balancer pcgrad+gradnorm"),
  ])
  func resumeRejectsOtherSettings(flags: [String], saved: String) throws {
    let out = try makeTemporaryDirectory()
    #expect(try mpirun(ranks: 2, quickRun(out: out, steps: 2)).status == 0)
    let before = try snapshot(of: out)
    let result = try mpirun(
      ranks: 2, quickRun(out: out, steps: 4, extra: ["--resume", "latest"] + flags), timeout: 60)
    #expect(result.status == 2, "\(result.standardError)")
    let lines = concordLines(result.standardError)
    #expect(lines.count == 1, "\(result.standardError)")
    let line = String(lines.first ?? "")
    #expect(line.contains("written with \(saved)"), "\(line)")
    #expect(line.contains("this run has \(flags.joined(separator: " "))"), "\(line)")
    #expect(try snapshot(of: out) == before)
  }

  /// `--keep` removes only checkpoints older than the new one.
  ///
  /// So a run resumed from an earlier checkpoint leaves the later ones alone. The temporary file of an interrupted
  /// write is removed at the start.
  @Test func keepRemovesOnlyOlderCheckpoints() throws {
    let out = try makeTemporaryDirectory()
    let first = try mpirun(
      ranks: 2, quickRun(out: out, steps: 6, extra: ["--checkpoint-every", "1", "--keep", "10"]))
    #expect(first.status == 0, "\(first.standardError)")
    let stray = out + "/checkpoints/.step-0000007.safetensors.tmp-4242"
    #expect(FileManager.default.createFile(atPath: stray, contents: Data([1, 2, 3])))

    let resumed = try mpirun(
      ranks: 2,
      quickRun(
        out: out, steps: 3,
        extra: [
          "--checkpoint-every", "1", "--keep", "2", "--resume", checkpointPath(out, step: 2),
        ]))
    #expect(resumed.status == 0, "\(resumed.standardError)")
    #expect(resumed.standardOutput.contains("removed .step-0000007.safetensors.tmp-4242"))
    let names = try FileManager.default.contentsOfDirectory(atPath: out + "/checkpoints").sorted()
    #expect(names == (2...6).map { String(format: "step-%07d.safetensors", $0) })
  }

  /// `concord eval` on the final checkpoint gives the accuracies that training reported,
  /// alone and under mpirun, and writes eval.json into the run folder by default.
  @Test func evalReproducesEndOfTraining() throws {
    let out = try makeTemporaryDirectory()
    #expect(try mpirun(ranks: 2, quickRun(out: out, steps: 4)).status == 0)
    let trained = try evalJSON(out + "/eval.json")
    try FileManager.default.removeItem(atPath: out + "/eval.json")

    let path = checkpointPath(out, step: 4)
    let underMPI = try mpirun(ranks: 2, ["eval", "--checkpoint", path])
    #expect(underMPI.status == 0, "\(underMPI.standardError)")
    let evaluated = try evalJSON(out + "/eval.json")
    let other = try makeTemporaryDirectory() + "/alone"
    let alone = try run(concordBinary(), ["eval", "--checkpoint", path, "--out", other])
    #expect(alone.status == 0, "\(alone.standardError)")
    let single = try evalJSON(other + "/eval.json")

    for result in [evaluated, single] {
      #expect(result["steps"] as? Int == 4)
      #expect(result["test_accuracy"] as? Double == trained["test_accuracy"] as? Double)
      #expect(result["knn_accuracy"] as? Double == trained["knn_accuracy"] as? Double)
      #expect(result["seconds"] as? Double != nil)
    }
  }

  /// A resumed run names the settings that differ from the checkpoint's, a setting left out
  /// on the command line included, and names none when every setting is the same.
  @Test func resumeNamesChangedSettings() throws {
    let out = try makeTemporaryDirectory()
    let flags = ["--checkpoint-every", "2", "--label-smoothing", "0.1"]
    #expect(try mpirun(ranks: 2, quickRun(out: out, steps: 2, extra: flags)).status == 0)

    let same = try mpirun(
      ranks: 2, quickRun(out: out, steps: 4, extra: flags + ["--resume", "latest"]))
    #expect(same.status == 0, "\(same.standardError)")
    #expect(!same.standardOutput.contains("differ from the checkpoint"), "\(same.standardOutput)")

    let changed = try mpirun(
      ranks: 2,
      quickRun(out: out, steps: 6, extra: ["--checkpoint-every", "2", "--resume", "latest"]))
    #expect(changed.status == 0, "\(changed.standardError)")
    #expect(
      changed.standardOutput.contains(
        "settings that differ from the checkpoint's: labelSmoothing 0.1 -> 0"),
      "\(changed.standardOutput)")
  }

  /// `concord eval` rejects an `--out` that is a file and a `--knn` above the training images
  /// before it evaluates, with exit 2.
  @Test func evalRejectsBadOutAndNeighbours() throws {
    let out = try makeTemporaryDirectory()
    #expect(try mpirun(ranks: 2, quickRun(out: out, steps: 2)).status == 0)
    let path = checkpointPath(out, step: 2)
    try "a file".write(toFile: out + "/file", atomically: true, encoding: .utf8)

    let file = try mpirun(ranks: 2, ["eval", "--checkpoint", path, "--out", out + "/file"])
    #expect(file.status == 2, "\(file.standardError)")
    #expect(!file.standardOutput.contains("test accuracy"), "evaluated before the check")
    #expect(concordLines(file.standardError).first?.contains("--out \(out)/file") == true)

    let knn = try mpirun(
      ranks: 2, ["eval", "--checkpoint", path, "--out", out + "/eval", "--knn", "100000"])
    #expect(knn.status == 2, "\(knn.standardError)")
    #expect(concordLines(knn.standardError).first?.contains("--knn 100000") == true)
    #expect(!FileManager.default.fileExists(atPath: out + "/eval/eval.json"))
  }

  @Test func evalRejectsMissingCheckpoint() throws {
    let out = try makeTemporaryDirectory()
    let result = try mpirun(ranks: 2, ["eval", "--checkpoint", out + "/none.safetensors"])
    #expect(result.status == 2, "\(result.standardError)")
    let lines = concordLines(result.standardError)
    #expect(lines.count == 1, "\(result.standardError)")
    #expect(lines.first?.contains(out + "/none.safetensors") == true)
  }

  /// `concord inspect` lists the metadata, one line per tensor and a summary.
  @Test func inspectListsCheckpoint() throws {
    let out = try makeTemporaryDirectory()
    #expect(try mpirun(ranks: 2, quickRun(out: out, steps: 2)).status == 0)
    let path = checkpointPath(out, step: 2)
    let result = try run(concordBinary(), ["inspect", path])
    #expect(result.status == 0, "\(result.standardError)")
    let lines = result.standardOutput.split(separator: "\n").map(String.init)
    let file = try SafeTensors.read(path: path)

    let keys = file.metadata.keys.sorted()
    #expect(Array(lines.prefix(keys.count)) == keys.map { "\($0): \(file.metadata[$0] ?? "")" })
    let tensorLines = lines.dropFirst(keys.count).dropLast()
    #expect(tensorLines.count == file.tensors.count)
    #expect(tensorLines.first == "encoder.0.weight F32 [128, 784] 401408")
    #expect(tensorLines.contains("step I64 [1] 8"))
    let total = file.tensors.map(\.bytes.count).reduce(0, +)
    let summary = lines.last ?? ""
    #expect(summary.hasPrefix("\(file.tensors.count) tensors, \(total) bytes"), "\(summary)")
    #expect(summary.contains("complete Concord checkpoint at step 2"), "\(summary)")
  }
}

private func evalJSON(_ path: String) throws -> [String: Any] {
  let data = try Data(contentsOf: URL(fileURLWithPath: path))
  return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
}
