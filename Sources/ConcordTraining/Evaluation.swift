import Foundation
import ConcordData
import ConcordDistributed
import ConcordModel
import ConcordTensors

/// The end-of-run evaluation: the supervised head's test accuracy and a kNN classifier on
/// the encoder's representation.
///
/// The kNN classifier takes the training set's features, L2-normalised, as its memory
/// bank. Each test image takes the `k` nearest by cosine similarity, and each neighbour
/// votes for its label with weight `exp(similarity / 0.07)`, as in Wu et al., "Unsupervised
/// Feature Learning via Non-Parametric Instance Discrimination" (CVPR 2018).
///
/// Every rank computes the memory bank and then classifies its own share of the test set;
/// one allreduce adds up the counts.
enum Evaluation {
  /// The weight temperature of the kNN votes.
  static let voteTemperature: Float = 0.07

  struct Result {
    var testAccuracy: Double?
    var knnAccuracy: Double
  }

  static func run(
    model: MultiTaskModel, trainSet: Dataset, testSet: Dataset, communicator: Communicator,
    neighbours: Int
  ) throws -> Result {
    let bank = features(model: model, dataset: trainSet, range: 0..<trainSet.count)
    normaliseRows(bank)

    // This rank's share of the test set.
    let share = (testSet.count + communicator.size - 1) / communicator.size
    let lower = min(communicator.rank * share, testSet.count)
    let upper = min(lower + share, testSet.count)
    let query = features(model: model, dataset: testSet, range: lower..<upper)

    var counts = [0.0, 0.0, Double(upper - lower)]
    if let head = model.heads.first(where: { $0.task == .supervised }) as? SupervisedHead {
      counts[0] = Double(
        correctPredictions(
          classifier: head.layer, features: query, labels: testSet.labels, offset: lower))
    }
    normaliseRows(query)
    counts[1] = Double(
      knnCorrect(
        query: query, queryLabels: testSet.labels, offset: lower, bank: bank,
        bankLabels: trainSet.labels, classCount: trainSet.classCount, k: neighbours))

    try communicator.allreduceSum(&counts)
    let total = max(counts[2], 1)
    let hasSupervised = model.configuration.tasks.contains(.supervised)
    return Result(
      testAccuracy: hasSupervised ? counts[0] / total : nil, knnAccuracy: counts[1] / total)
  }

  /// Computes the encoder's features of `range` of `dataset`, `[range.count, featureSize]`,
  /// in chunks of the model's batch capacity.
  static func features(model: MultiTaskModel, dataset: Dataset, range: Range<Int>) -> Matrix {
    let d = model.configuration.featureSize
    let inputSize = dataset.height * dataset.width
    let result = Matrix(rows: range.count, columns: d)
    let images = dataset.images.matrix(rows: dataset.count, columns: inputSize)
    var start = range.lowerBound
    while start < range.upperBound {
      let end = min(start + model.capacity, range.upperBound)
      let output = model.encoder.forward(images.rows(start..<end))
      result.rows((start - range.lowerBound)..<(end - range.lowerBound)).copy(from: output)
      start = end
    }
    return result
  }

  static func normaliseRows(_ matrix: Matrix) {
    for r in 0..<matrix.rows {
      let row = matrix.row(r)
      var sum: Float = 0
      for x in row { sum += x * x }
      let scale = 1 / max(sum.squareRoot(), 1e-12)
      for i in 0..<row.count { row[i] *= scale }
    }
  }

  static func correctPredictions(
    classifier: Linear, features: Matrix, labels: [Int32], offset: Int
  ) -> Int {
    guard features.rows > 0 else { return 0 }
    let logits = Matrix(rows: features.rows, columns: classifier.outputSize)
    classifier.forward(features, into: logits)
    var correct = 0
    for r in 0..<features.rows {
      let row = logits.row(r)
      var best = 0
      for c in 1..<row.count where row[c] > row[best] { best = c }
      if Int32(best) == labels[offset + r] { correct += 1 }
    }
    return correct
  }

  /// Counts the `query` rows whose weighted kNN vote over `bank` gives their label.
  ///
  /// Both matrices hold L2-normalised rows.
  static func knnCorrect(
    query: Matrix, queryLabels: [Int32], offset: Int, bank: Matrix, bankLabels: [Int32],
    classCount: Int, k: Int
  ) -> Int {
    let chunk = 256
    let k = min(k, bank.rows)
    let similarities = Matrix(rows: chunk, columns: bank.rows)
    var topSimilarity = [Float](repeating: 0, count: k)
    var topIndex = [Int](repeating: 0, count: k)
    var votes = [Float](repeating: 0, count: classCount)
    var correct = 0
    var start = 0
    while start < query.rows {
      let end = min(start + chunk, query.rows)
      let s = similarities.rows(0..<(end - start))
      BLAS.gemm(query.rows(start..<end), bank, transposeB: true, into: s)
      for r in 0..<s.rows {
        // Keep the k largest in a list sorted in descending order.
        let row = s.row(r)
        var filled = 0
        for j in 0..<row.count {
          let value = row[j]
          if filled == k && value <= topSimilarity[k - 1] { continue }
          var position = filled < k ? filled : k - 1
          while position > 0 && topSimilarity[position - 1] < value {
            topSimilarity[position] = topSimilarity[position - 1]
            topIndex[position] = topIndex[position - 1]
            position -= 1
          }
          topSimilarity[position] = value
          topIndex[position] = j
          if filled < k { filled += 1 }
        }
        for c in 0..<classCount { votes[c] = 0 }
        for n in 0..<filled {
          votes[Int(bankLabels[topIndex[n]])] += expf(topSimilarity[n] / voteTemperature)
        }
        var best = 0
        for c in 1..<classCount where votes[c] > votes[best] { best = c }
        if Int32(best) == queryLabels[offset + start + r] { correct += 1 }
      }
      start = end
    }
    return correct
  }
}
