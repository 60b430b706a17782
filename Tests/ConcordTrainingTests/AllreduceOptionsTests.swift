import ConcordTensors
import ConcordTraining
import Foundation
import Testing

/// Returns the state checksum that `concord train` printed at the end of a run.
private func stateChecksum(_ output: String) -> Substring? {
  guard let line = concordLines(output).first(where: { $0.contains("state checksum") }) else {
    return nil
  }
  return line.split(separator: " ").drop { $0 != "checksum" }.dropFirst().first
}

/// Returns each metrics line's losses, by task, from the run folder `out`.
private func lossesPerStep(_ out: String) throws -> [[String: Double]] {
  let lines = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8)
    .split(separator: "\n")
  return try lines.map { line in
    let object = try #require(
      try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
    return try #require(object["loss"] as? [String: Double])
  }
}

/// Returns the JSON objects that a command printed, one a line.
private func jsonObjects(_ output: String) throws -> [[String: Any]] {
  try output.split(separator: "\n").filter { $0.hasPrefix("{") }.map { line in
    try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
  }
}

@Test func messageSizesDoubleAndInclude8MiB() {
  var options = AllreduceBenchmarkOptions()
  #expect(options.messageSizes.first == 4096)
  #expect(options.messageSizes.last == 67_108_864)
  #expect(options.messageSizes.count == 15)
  options.minimumBytes = 3 << 20
  options.maximumBytes = 20 << 20
  #expect(options.messageSizes == [3 << 20, 6 << 20, 8 << 20, 12 << 20])
  options.minimumBytes = 12
  options.maximumBytes = 40
  #expect(options.messageSizes == [12, 24])
}

@Suite(.serialized, .enabled(if: hasFashionMNIST, "Fashion-MNIST is not installed"))
struct AllreduceOptionsTests {
  /// On two ranks each element's sum is a + b whichever call carries it, so one allreduce per
  /// task ends in the same state as one fused allreduce, bit for bit.
  @Test func perTaskFusionMatchesFusedBitwise() throws {
    let fused = try makeTemporaryDirectory()
    let perTask = try makeTemporaryDirectory()
    let a = try mpirun(
      ranks: 2, quickRun(out: fused, steps: 3, extra: ["--allreduce", "blocking"]))
    let b = try mpirun(
      ranks: 2, quickRun(out: perTask, steps: 3, extra: ["--allreduce-fusion", "per-task"]))
    #expect(a.status == 0, "\(a.standardError)")
    #expect(b.status == 0, "\(b.standardError)")
    #expect(b.standardOutput.contains("identical on all 2 ranks"), "\(b.standardOutput)")
    #expect(b.standardOutput.contains("fusion per-task"), "\(b.standardOutput)")
    let checksum = try #require(stateChecksum(a.standardOutput))
    #expect(stateChecksum(b.standardOutput) == checksum)

    let x = try SafeTensors.read(path: checkpointPath(fused, step: 3))
    let y = try SafeTensors.read(path: checkpointPath(perTask, step: 3))
    #expect(x.tensors.map(\.name) == y.tensors.map(\.name))
    for (first, second) in zip(x.tensors, y.tensors) {
      #expect(first.bytes == second.bytes, "\(first.name) differs")
    }
  }

  /// bfloat16 gradients leave the ranks identical and the losses near float32's, and change
  /// the state, which shows that the gradients went through the bfloat16 path.
  @Test(arguments: [
    ["--allreduce", "blocking"],
    ["--allreduce", "overlap"],
    ["--allreduce-fusion", "per-task"],
  ])
  func bfloat16TrainingStaysIdentical(flags: [String]) throws {
    let reference = try makeTemporaryDirectory()
    let rounded = try makeTemporaryDirectory()
    let steps = 5
    let logEachStep = ["--log-every", "1"]
    let a = try mpirun(
      ranks: 2, quickRun(out: reference, steps: steps, extra: flags + logEachStep))
    let b = try mpirun(
      ranks: 2,
      quickRun(
        out: rounded, steps: steps,
        extra: flags + logEachStep + ["--allreduce-precision", "bfloat16"]))
    #expect(a.status == 0, "\(a.standardError)")
    #expect(b.status == 0, "\(b.standardError)")
    #expect(b.standardOutput.contains("identical on all 2 ranks"), "\(b.standardOutput)")
    #expect(b.standardOutput.contains("bfloat16"), "\(b.standardOutput)")
    let checksum = try #require(stateChecksum(b.standardOutput))
    #expect(stateChecksum(a.standardOutput) != checksum, "bfloat16 left the state unchanged")

    let float32Losses = try lossesPerStep(reference)
    let bfloat16Losses = try lossesPerStep(rounded)
    #expect(bfloat16Losses.count == steps)
    for (step, (x, y)) in zip(float32Losses, bfloat16Losses).enumerated() {
      for (task, loss) in x {
        let other = try #require(y[task])
        #expect(other.isFinite, "step \(step + 1) \(task): \(other)")
        // Loose: rounding to bfloat16 changes a normal gradient by at most 2^-8 of itself.
        #expect(abs(other - loss) <= 0.02 * abs(loss) + 0.005, "step \(step + 1) \(task)")
      }
    }
  }

  /// The fusion and precision are free to change when a run resumes.
  @Test func resumeAcceptsOtherAllreduceFlags() throws {
    let out = try makeTemporaryDirectory()
    let first = try mpirun(ranks: 2, quickRun(out: out, steps: 2))
    #expect(first.status == 0, "\(first.standardError)")
    let resumed = try mpirun(
      ranks: 2,
      quickRun(
        out: out, steps: 4,
        extra: [
          "--resume", "latest", "--allreduce-fusion", "per-task", "--allreduce-precision",
          "bfloat16",
        ]))
    #expect(resumed.status == 0, "\(resumed.standardError)")
    #expect(resumed.standardOutput.contains("resumed from"), "\(resumed.standardOutput)")
    #expect(FileManager.default.fileExists(atPath: checkpointPath(out, step: 4)))
  }

  @Test(arguments: [
    ("all", "float32", 1),
    ("all", "bfloat16", 2),
    ("per-task", "float32", 4),
    ("per-task", "bfloat16", 5),
  ])
  func benchStepNamesAllreduceOptions(fusion: String, precision: String, calls: Int) throws {
    let result = try mpirun(
      ranks: 2,
      [
        "bench", "step", "--steps", "2", "--warmup", "1", "--batch-size", "32", "--hidden",
        "64,32", "--allreduce", "blocking", "--allreduce-fusion", fusion,
        "--allreduce-precision", precision, "--json",
      ], timeout: 120)
    #expect(result.status == 0, "\(result.standardError)")
    let report = try #require(try jsonObjects(result.standardOutput).first)
    #expect(report["allreduce_fusion"] as? String == fusion)
    #expect(report["allreduce_precision"] as? String == precision)
    #expect(report["allreduce_calls"] as? Int == calls)
  }

  @Test func benchAllreducePrintsOneLinePerSize() throws {
    let result = try mpirun(
      ranks: 2,
      [
        "bench", "allreduce", "--min-bytes", "4096", "--max-bytes", "16384", "--repeats", "5",
        "--warmup", "1", "--json",
      ], timeout: 120)
    #expect(result.status == 0, "\(result.standardError)")
    let rows = try jsonObjects(result.standardOutput)
    #expect(rows.map { $0["bytes"] as? Int } == [4096, 8192, 16384])
    for row in rows {
      #expect(row["ranks"] as? Int == 2)
      #expect(row["repeats"] as? Int == 5)
      for path in ["plain", "concord", "bfloat16"] {
        let times = try #require(row[path + "_us"] as? [String: Double], "\(path)_us")
        let median = try #require(times["median"])
        let p10 = try #require(times["p10"])
        let p90 = try #require(times["p90"])
        #expect(median > 0, "\(path)")
        #expect(p10 <= median, "\(path)")
        #expect(median <= p90, "\(path)")
        let algorithm = try #require(row[path + "_algbw_gbps"] as? Double)
        let bus = try #require(row[path + "_busbw_gbps"] as? Double)
        // 2 (p - 1) / p is 1 for two ranks.
        #expect(abs(bus - algorithm) <= 1e-6 * algorithm, "\(path)")
      }
      #expect(row["concord_plain_ratio"] as? Double != nil)
      #expect(row["bfloat16_plain_ratio"] as? Double != nil)
    }
  }

  @Test(arguments: [
    (["train", "--allreduce-fusion", "some"], ["--allreduce-fusion some"]),
    (["train", "--allreduce-precision", "float16"], ["--allreduce-precision float16"]),
    (
      ["train", "--allreduce", "overlap", "--allreduce-fusion", "per-task"],
      ["--allreduce overlap", "--allreduce-fusion per-task"]
    ),
    (["bench", "allreduce", "--min-bytes", "6"], ["--min-bytes 6"]),
    (["bench", "allreduce", "--max-bytes", "2048"], ["--max-bytes 2048"]),
    (["bench", "allreduce", "--repeats", "0"], ["--repeats 0"]),
    (["bench", "allreduce", "--warmup"], ["--warmup"]),
    (["bench", "allreduce", "--sizes", "4096"], ["--sizes"]),
    (["bench", "step", "--allreduce-precision", "half"], ["--allreduce-precision half"]),
  ])
  func badAllreduceFlagsExitWithUsageError(arguments: [String], named: [String]) throws {
    let out = try makeTemporaryDirectory()
    let flags = arguments.first == "train" ? arguments + ["--out", out + "/run"] : arguments
    let result = try mpirun(ranks: 2, flags, timeout: 60)
    #expect(result.status == 2, "\(result.standardError)")
    let lines = concordLines(result.standardError)
    #expect(lines.count == 1, "\(result.standardError)")
    for name in named {
      #expect(lines.first?.contains(name) == true, "\(name): \(result.standardError)")
    }
  }
}
