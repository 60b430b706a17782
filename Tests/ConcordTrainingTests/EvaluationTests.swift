import ConcordTensors
import Foundation
import Testing

@testable import ConcordTraining

/// Returns a `[points.count, 2]` matrix of unit vectors at the given angles in degrees.
private func unitVectors(degrees: [Double]) -> Matrix {
  Matrix(
    rows: degrees.count, columns: 2,
    values: degrees.flatMap { [Float(cos($0 * .pi / 180)), Float(sin($0 * .pi / 180))] })
}

private func dot(_ a: Matrix, _ i: Int, _ b: Matrix, _ j: Int) -> Float {
  a[i, 0] * b[j, 0] + a[i, 1] * b[j, 1]
}

struct WeightedKNNTests {
  /// Checks the votes of two clusters on the unit circle.
  ///
  /// Class 0 lies at 0° and 10°, class 1 at 30°, 80° and 90°. A query at 18° has the 3 nearest neighbours 10° (class 0), 30° (class 1) and 0° (class 0).
  @Test func votesSplitTwoToOne() {
    let bank = unitVectors(degrees: [0, 10, 30, 80, 90])
    let query = unitVectors(degrees: [18])
    let knn = WeightedKNN(
      bank: bank, bankLabels: [0, 0, 1, 1, 1], classCount: 2, k: 3, temperature: 0.1)
    let votes = knn.votes(query)

    let expected0 = expf(dot(query, 0, bank, 1) / 0.1) + expf(dot(query, 0, bank, 0) / 0.1)
    let expected1 = expf(dot(query, 0, bank, 2) / 0.1)
    #expect(abs(votes[0, 0] - expected0) <= 1e-5 * expected0)
    #expect(abs(votes[0, 1] - expected1) <= 1e-5 * expected1)
    // By hand: exp(cos 8° / 0.1) + exp(cos 18° / 0.1) ≈ 19,994 + 13,503, and exp(cos 12° / 0.1)
    // ≈ 17,683.
    #expect(abs(votes[0, 0] - 33_497) < 20)
    #expect(abs(votes[0, 1] - 17_683) < 20)
    #expect(knn.predict(query) == [0])
  }

  /// With all 5 neighbours the three class-1 points outvote the two closer class-0 points.
  @Test func allNeighboursChangeVerdict() {
    let bank = unitVectors(degrees: [0, 10, 30, 80, 90])
    let query = unitVectors(degrees: [18])
    let knn = WeightedKNN(
      bank: bank, bankLabels: [0, 0, 1, 1, 1], classCount: 2, k: 5, temperature: 10)
    #expect(knn.predict(query) == [1])
    let nearest = WeightedKNN(
      bank: bank, bankLabels: [0, 0, 1, 1, 1], classCount: 2, k: 1, temperature: 10)
    #expect(nearest.predict(query) == [0])
  }

  @Test func kShrinksToBankSize() {
    let bank = unitVectors(degrees: [0, 90])
    let knn = WeightedKNN(bank: bank, bankLabels: [0, 1], classCount: 2, k: 200, temperature: 0.1)
    #expect(knn.k == 2)
    let votes = knn.votes(unitVectors(degrees: [0]))
    #expect(abs(votes[0, 0] - expf(10)) <= 1e-5 * expf(10))
    #expect(abs(votes[0, 1] - 1) <= 1e-5)
  }

  /// More queries than one GEMM block, each equal to a bank point, find their own label.
  @Test func queriesAcrossBlocks() {
    let count = WeightedKNN.blockRows + 37
    let angles = (0..<count).map { Double($0) * 360 / Double(count) }
    let bank = unitVectors(degrees: angles)
    let labels = (0..<count).map { Int32($0 % 7) }
    let knn = WeightedKNN(bank: bank, bankLabels: labels, classCount: 7, k: 1, temperature: 0.1)
    #expect(knn.predict(bank) == labels)
  }

  /// The selected indices are the first k of a full sort by value, descending, then by index,
  /// on random data with many ties.
  @Test func selectionMatchesFullSort() {
    var stream = RandomStream(seed: 7, purpose: .test)
    for trial in 0..<50 {
      let n = 1 + stream.integer(below: 300)
      let values = (0..<n).map { _ in Float(stream.integer(below: 20)) / 4 }
      let sorted = (0..<n).sorted {
        values[$0] > values[$1] || (values[$0] == values[$1] && $0 < $1)
      }
      for k in Set([1, n / 3, n - 1, n]) where k >= 1 {
        var indices = stream.permutation(n)
        values.withUnsafeBufferPointer { values in
          indices.withUnsafeMutableBufferPointer {
            WeightedKNN.selectLargest(k, values: values, indices: $0)
          }
        }
        #expect(indices[0..<k].sorted() == sorted[0..<k].sorted(), "trial \(trial), n \(n), k \(k)")
        #expect(indices.sorted() == Array(0..<n), "trial \(trial): not a permutation")
      }
    }
  }
}

struct LinearProbeTests {
  /// Three Gaussian classes, 6 dimensions, with a large shared offset that standardisation
  /// removes.
  private func separableFeatures(count: Int, seed: UInt64) -> (Matrix, [Int32]) {
    var stream = RandomStream(seed: seed, purpose: .test)
    let features = Matrix(rows: count, columns: 6)
    var labels = [Int32]()
    for r in 0..<count {
      let label = r % 3
      labels.append(Int32(label))
      for c in 0..<6 {
        let center: Float = c % 3 == label ? 2 : 0
        features[r, c] = 50 + center + 0.3 * stream.normal()
      }
    }
    return (features, labels)
  }

  private func accuracy(_ probe: LinearProbe) -> (Double, [Float]) {
    let (train, trainLabels) = separableFeatures(count: 600, seed: 1)
    let (test, testLabels) = separableFeatures(count: 300, seed: 2)
    let (mean, deviation) = LinearProbe.columnStatistics(train)
    let layer = probe.train(
      features: LinearProbe.standardised(train, mean: mean, deviation: deviation),
      labels: trainLabels, classCount: 3)
    let correct = Evaluation.correctPredictions(
      classifier: layer,
      features: LinearProbe.standardised(test, mean: mean, deviation: deviation),
      labels: testLabels, offset: 0)
    return (Double(correct) / 300, layer.weight.array + layer.bias.array)
  }

  @Test func probeSeparatesClasses() {
    let (result, _) = accuracy(LinearProbe(epochs: 20, batchSize: 32, seed: 3))
    #expect(result >= 0.97)
  }

  @Test func probeIsDeterministic() {
    let (_, first) = accuracy(LinearProbe(epochs: 2, batchSize: 32, seed: 3))
    let (_, second) = accuracy(LinearProbe(epochs: 2, batchSize: 32, seed: 3))
    let (_, other) = accuracy(LinearProbe(epochs: 2, batchSize: 32, seed: 4))
    #expect(first == second)
    #expect(first != other)
  }

  @Test func standardisedColumnStatistics() {
    let (train, _) = separableFeatures(count: 600, seed: 1)
    let (mean, deviation) = LinearProbe.columnStatistics(train)
    let standard = LinearProbe.standardised(train, mean: mean, deviation: deviation)
    let (newMean, newDeviation) = LinearProbe.columnStatistics(standard)
    for c in 0..<6 {
      #expect(abs(newMean[c]) < 1e-3, "column \(c)")
      #expect(abs(newDeviation[c] - 1) < 1e-3, "column \(c)")
    }
  }
}

/// Reads `path` as a JSON object.
private func readEvalJSON(_ path: String) throws -> [String: Any] {
  let data = try Data(contentsOf: URL(fileURLWithPath: path))
  return try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any])
}

@Suite(.serialized, .enabled(if: hasFashionMNIST, "Fashion-MNIST is not installed"))
struct LinearProbeEndToEndTests {
  /// `concord eval --linear-probe` on a self-supervised run gives the same kNN and probe
  /// accuracies on 1 and 2 ranks, to one test image in 400, and writes the new keys.
  @Test func evalLinearProbeOnOneAndTwoRanks() throws {
    let out = try makeTemporaryDirectory()
    let training = try mpirun(
      ranks: 2,
      [
        "train", "--out", out, "--steps", "4", "--train-limit", "1024", "--test-limit", "400",
        "--batch-size", "64", "--hidden", "64", "--tasks", "simclr,byol,augpred",
      ])
    #expect(training.status == 0, "\(training.standardError)")
    let path = out + "/checkpoints/step-0000004.safetensors"

    var results: [[String: Any]] = []
    for ranks in [1, 2] {
      let folder = out + "/eval-\(ranks)"
      let evaluation = try mpirun(
        ranks: ranks,
        ["eval", "--checkpoint", path, "--linear-probe", "--probe-epochs", "3", "--out", folder])
      #expect(evaluation.status == 0, "\(evaluation.standardError)")
      #expect(evaluation.standardOutput.contains("linear probe accuracy"))
      results.append(try readEvalJSON(folder + "/eval.json"))
    }
    for result in results {
      #expect(result["test_accuracy"] is NSNull)
      #expect(result["knn_k"] as? Int == 200)
      #expect(result["knn_temperature"] as? Double == 0.1)
      let probe = try #require(result["linear_probe_accuracy"] as? Double)
      #expect(probe > 0.3)
      #expect(probe <= 1)
    }
    let tolerance = 1.0 / 400
    for key in ["knn_accuracy", "linear_probe_accuracy"] {
      let single = try #require(results[0][key] as? Double)
      let double = try #require(results[1][key] as? Double)
      #expect(abs(single - double) <= tolerance, "\(key): \(single) on 1 rank, \(double) on 2")
    }
  }
}
