import ConcordData
import ConcordTensors
import Foundation
import Testing

@testable import ConcordTraining

/// Reads `path` as a JSON object.
private func readJSONObject(_ path: String) throws -> [String: Any] {
  let data = try Data(contentsOf: URL(fileURLWithPath: path))
  return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
}

/// Flags of a small, quick run on a subset of Fashion-MNIST.
private func smallRun(out: String, steps: Int, extra: [String] = []) -> [String] {
  [
    "train", "--out", out, "--steps", String(steps), "--train-limit", "1024", "--test-limit",
    "400", "--batch-size", "64", "--hidden", "128,64", "--log-every", "2",
    "--checkpoint-every", "2",
  ] + extra
}

/// The augmentation kinds, in the order of their augpred labels.
private let allKinds = ["crop", "flip", "colorJitter", "blur", "noise", "erasing"]

@Suite(.serialized, .enabled(if: hasFashionMNIST, "Fashion-MNIST is not installed"))
struct AugpredPerKindTests {
  /// The per-kind accuracies of a 2-rank run and of `concord eval` on 1 and 2 ranks agree, and
  /// average to the overall augpred accuracy, since every kind has one label per test image.
  @Test func perKindAccuracyOnOneAndTwoRanks() throws {
    let out = try makeTemporaryDirectory()
    let training = try mpirun(ranks: 2, smallRun(out: out, steps: 4))
    #expect(training.status == 0, "\(training.standardError)")
    #expect(
      training.standardOutput.contains("concord: augpred accuracy per kind: crop "),
      "\(training.standardOutput)")

    var results = [try readJSONObject(out + "/eval.json")]
    for ranks in [1, 2] {
      let folder = out + "/eval-\(ranks)"
      let evaluation = try mpirun(
        ranks: ranks,
        ["eval", "--checkpoint", out + "/checkpoints/step-0000004.safetensors", "--out", folder])
      #expect(evaluation.status == 0, "\(evaluation.standardError)")
      #expect(evaluation.standardOutput.contains("augpred accuracy per kind"))
      results.append(try readJSONObject(folder + "/eval.json"))
    }

    var perKindOfEach: [[String: Double]] = []
    for result in results {
      let overall = try #require(result["augpred_accuracy"] as? Double)
      let perKind = try #require(result["augpred_accuracy_per_kind"] as? [String: Double])
      #expect(Set(perKind.keys) == Set(allKinds))
      let mean = perKind.values.reduce(0, +) / Double(perKind.count)
      #expect(abs(mean - overall) <= 1e-6, "mean of \(perKind) is not \(overall)")
      for (kind, accuracy) in perKind {
        #expect((0...1).contains(accuracy), "\(kind): \(accuracy)")
        // 400 test images: every accuracy is a whole number of images.
        let images = accuracy * 400
        #expect(abs(images - images.rounded()) <= 1e-3, "\(kind): \(accuracy)")
      }
      perKindOfEach.append(perKind)
    }
    // The view of each test image depends on the seed and the image's index alone.
    #expect(perKindOfEach[0] == perKindOfEach[1], "training on 2 ranks, eval on 1 rank")
    #expect(perKindOfEach[1] == perKindOfEach[2], "eval on 1 and on 2 ranks")
  }

  /// Without the augpred task, eval.json records `null` and no per-kind line is printed.
  @Test func perKindAccuracyNullWithoutAugpred() throws {
    let out = try makeTemporaryDirectory()
    let training = try run(
      concordBinary(), smallRun(out: out, steps: 2, extra: ["--tasks", "supervised,simclr"]))
    #expect(training.status == 0, "\(training.standardError)")
    #expect(!training.standardOutput.contains("augpred accuracy per kind"))
    let result = try readJSONObject(out + "/eval.json")
    #expect(result["augpred_accuracy_per_kind"] is NSNull)
  }
}

/// A batch slot with sensitive kinds carries exactly those columns of the full labels, and the
/// same views.
@Test func batchSlotKeepsSensitiveColumns() throws {
  var stream = RandomStream(seed: 5, purpose: .test)
  let dataset = Dataset(
    images: FloatBuffer((0..<(12 * 36)).map { _ in stream.uniform() }),
    labels: (0..<12).map { Int32($0 % 3) }, height: 6, width: 6, classCount: 3)
  let sampler = try ShardedSampler(
    datasetCount: 12, globalBatchSize: 8, worldSize: 1, rank: 0, seed: 5)
  let full = BatchSlot(
    dataset: dataset, sampler: sampler, seed: 5, hasCleanRows: false,
    sensitiveKinds: AugmentationKind.allCases)
  let sensitive: [AugmentationKind] = [.flip, .noise]
  let subset = BatchSlot(
    dataset: dataset, sampler: sampler, seed: 5, hasCleanRows: false, sensitiveKinds: sensitive)
  full.fill(step: 3)
  subset.fill(step: 3)

  #expect(subset.augmentationLabels.columns == 2)
  #expect(subset.input.array == full.input.array)
  for row in 0..<full.augmentationLabels.rows {
    for (column, kind) in sensitive.enumerated() {
      #expect(
        subset.augmentationLabels[row, column] == full.augmentationLabels[row, kind.labelIndex],
        "row \(row), \(kind)")
    }
  }
}

@Suite(.serialized, .enabled(if: hasFashionMNIST, "Fashion-MNIST is not installed"))
struct SensitiveKindsTests {
  /// `--sensitive flip,crop` gives augpred one logit per listed kind, in the order of
  /// application, reports their accuracies alone, and a resume with another list fails.
  @Test func sensitiveListShapesAugpredHead() throws {
    let out = try makeTemporaryDirectory()
    let training = try mpirun(
      ranks: 2, smallRun(out: out, steps: 2, extra: ["--sensitive", "flip,crop"]))
    #expect(training.status == 0, "\(training.standardError)")

    let file = try SafeTensors.read(path: out + "/checkpoints/step-0000002.safetensors")
    let weight = try #require(file.tensor(named: "augpred.classifier.weight"))
    #expect(weight.shape == [2, 64])
    let result = try readJSONObject(out + "/eval.json")
    let perKind = try #require(result["augpred_accuracy_per_kind"] as? [String: Double])
    #expect(Set(perKind.keys) == ["crop", "flip"])
    #expect(
      training.standardOutput.contains("augpred accuracy per kind: crop "),
      "\(training.standardOutput)")

    for other in [["--sensitive", "flip"], []] {
      let resumed = try mpirun(
        ranks: 2, smallRun(out: out, steps: 4, extra: ["--resume", "latest"] + other))
      #expect(resumed.status == 2, "\(other): \(resumed.standardError)")
      #expect(
        resumed.standardError.contains("written with --sensitive crop,flip"),
        "\(other): \(resumed.standardError)")
    }
    let resumed = try mpirun(
      ranks: 2,
      smallRun(out: out, steps: 4, extra: ["--resume", "latest", "--sensitive", "crop,flip"]))
    #expect(resumed.status == 0, "\(resumed.standardError)")
  }
}

/// Returns the `F32` tensors of the checkpoint of `step` in `out`.
private func checkpointTensors(_ out: String, step: Int) throws -> [SafeTensors.Tensor] {
  let path = String(format: "%@/checkpoints/step-%07d.safetensors", out, step)
  return try SafeTensors.read(path: path).tensors.filter { $0.dtype == .f32 }
}

@Suite(.serialized, .enabled(if: hasFashionMNIST, "Fashion-MNIST is not installed"))
struct InvarianceTaskTests {
  /// `--invariant` adds the invariance task last, next to clean supervised rows, keeps the
  /// two ranks bit-identical, and takes the invariant kinds out of augpred by default.
  @Test func invariantRunOnTwoRanks() throws {
    let out = try makeTemporaryDirectory()
    let result = try mpirun(
      ranks: 2,
      smallRun(
        out: out, steps: 4, extra: ["--invariant", "noise,crop", "--supervised-view", "clean"]))
    #expect(result.status == 0, "\(result.standardError)")
    #expect(result.standardOutput.contains("identical on all 2 ranks"), "\(result.standardOutput)")
    #expect(
      result.standardOutput.contains("tasks supervised,simclr,byol,augpred,invariance"),
      "\(result.standardOutput)")

    let metrics = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8)
    let last = try #require(metrics.split(separator: "\n").last)
    let line = try #require(
      try JSONSerialization.jsonObject(with: Data(last.utf8)) as? [String: Any])
    let losses = try #require(line["loss"] as? [String: Double])
    let invariance = try #require(losses["invariance"])
    #expect(invariance >= 0, "\(invariance)")
    #expect(invariance <= 2, "\(invariance)")
    let weights = try #require(line["weight"] as? [String: Double])
    #expect(weights.count == 5)

    let evaluation = try readJSONObject(out + "/eval.json")
    let perKind = try #require(evaluation["augpred_accuracy_per_kind"] as? [String: Double])
    #expect(Set(perKind.keys) == ["flip", "colorJitter", "blur", "erasing"])
  }

  /// A run resumed at step 3 ends with the same bytes as an uninterrupted one, and resuming
  /// with another invariant list fails.
  @Test func invariantResumeIsExact() throws {
    let whole = try makeTemporaryDirectory()
    let parts = try makeTemporaryDirectory()
    let flags = ["--invariant", "blur", "--checkpoint-every", "3"]
    let uninterrupted = try run(concordBinary(), smallRun(out: whole, steps: 6, extra: flags))
    #expect(uninterrupted.status == 0, "\(uninterrupted.standardError)")
    let first = try run(concordBinary(), smallRun(out: parts, steps: 3, extra: flags))
    #expect(first.status == 0, "\(first.standardError)")

    let other = try run(
      concordBinary(),
      smallRun(
        out: parts, steps: 6,
        extra: ["--invariant", "flip", "--checkpoint-every", "3", "--resume", "latest"]))
    #expect(other.status == 2, "\(other.standardError)")
    #expect(other.standardError.contains("--invariant blur"), "\(other.standardError)")

    let second = try run(
      concordBinary(), smallRun(out: parts, steps: 6, extra: flags + ["--resume", "latest"]))
    #expect(second.status == 0, "\(second.standardError)")
    let expected = try checkpointTensors(whole, step: 6)
    let actual = try checkpointTensors(parts, step: 6)
    #expect(expected.map(\.name) == actual.map(\.name))
    for (a, b) in zip(actual, expected) {
      #expect(a.bytes == b.bytes, "\(a.name) differs after the resume")
    }
  }
}
