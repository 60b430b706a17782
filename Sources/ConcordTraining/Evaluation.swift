import Foundation
import ConcordData
import ConcordDistributed
import ConcordModel
import ConcordTensors

/// The end-of-run evaluation: the supervised head's test accuracy, a weighted kNN classifier
/// on the encoder's representation (``WeightedKNN``) and, on request, a ``LinearProbe``.
///
/// Every rank computes the features of the whole training set, the kNN memory bank and the
/// probe's training data, and then classifies its own share of the test set. One allreduce adds
/// up the counts. Every rank trains the same probe from the same features, which needs no
/// communication.
enum Evaluation {
  /// The evaluations beyond the supervised head, and their parameters.
  struct Settings {
    /// The kNN neighbour count, which shrinks to the training set size.
    var neighbours = TrainingConfiguration.defaultKNNNeighbours
    /// The temperature of the kNN vote weights.
    var temperature: Float = 0.1
    /// The linear probe to train, or nil for none.
    var linearProbe: LinearProbe? = nil
    /// The seed of the augmented test views of the augmentation prediction accuracy.
    var seed: UInt64 = 0
    /// The kind of each of the augmentation prediction head's logits, in column order.
    var augpredKinds = AugmentationKind.allCases
  }

  struct Result {
    var testAccuracy: Double?
    var knnAccuracy: Double
    /// The neighbour count used, after shrinking to the training set size.
    var knnK: Int
    var linearProbeAccuracy: Double?
    /// The share of augmentation labels that the augpred head predicts right, or nil without
    /// the augpred task.
    var augpredAccuracy: Double? = nil
    /// The share of test images whose label of each kind the augpred head predicts right, in
    /// the head's column order; empty without the augpred task.
    var augpredAccuracyPerKind: [(kind: AugmentationKind, accuracy: Double)] = []
    /// The kNN and probe accuracies of each task group's features alone; empty without
    /// adapters.
    var groupAccuracies: [GroupAccuracy] = []
  }

  static func run(
    model: MultiTaskModel, trainSet: Dataset, testSet: Dataset, communicator: Communicator,
    settings: Settings
  ) throws -> Result {
    let bank = features(model: model, dataset: trainSet, range: 0..<trainSet.count)

    // This rank's share of the test set.
    let share = (testSet.count + communicator.size - 1) / communicator.size
    let lower = min(communicator.rank * share, testSet.count)
    let upper = min(lower + share, testSet.count)
    let query = features(model: model, dataset: testSet, range: lower..<upper)
    // Copies, because the representation's evaluation normalises the features in place.
    let groups = groupFeatures(model: model, bank: bank, query: query)

    // Right supervised, kNN and probe predictions, images, then right augpred labels of each
    // kind.
    var counts = [0.0, 0.0, 0.0, Double(upper - lower)]
    if let head = model.heads.first(where: { $0.task == .supervised }) as? SupervisedHead {
      counts[0] = Double(
        correctPredictions(
          classifier: head.layer, features: query, labels: testSet.labels, offset: lower))
    }
    let augpredHead = model.heads.first { $0.task == .augpred } as? AugmentationPredictionHead
    if let augpredHead {
      let correct = correctAugmentationLabels(
        head: augpredHead, model: model, dataset: testSet, range: lower..<upper,
        seed: settings.seed, kinds: settings.augpredKinds)
      counts += correct.map(Double.init)
    }
    let whole = correctRepresentationPredictions(
      bank: bank, query: query, trainSet: trainSet, testSet: testSet, offset: lower,
      settings: settings)
    counts[1] = Double(whole.knn)
    counts[2] = Double(whole.probe)
    var groupCounts = groups.flatMap { group in
      let correct = correctRepresentationPredictions(
        bank: group.bank, query: group.query, trainSet: trainSet, testSet: testSet,
        offset: lower, settings: settings)
      return [Double(correct.knn), Double(correct.probe)]
    }

    try communicator.allreduceSum(&counts)
    if !groupCounts.isEmpty { try communicator.allreduceSum(&groupCounts) }
    let total = max(counts[3], 1)
    let hasSupervised = model.configuration.tasks.contains(.supervised)
    var result = Result(
      testAccuracy: hasSupervised ? counts[0] / total : nil, knnAccuracy: counts[1] / total,
      knnK: whole.k, linearProbeAccuracy: settings.linearProbe == nil ? nil : counts[2] / total)
    result.groupAccuracies = groups.indices.map { g in
      GroupAccuracy(
        group: groups[g].group, knnAccuracy: groupCounts[2 * g] / total,
        linearProbeAccuracy: settings.linearProbe == nil ? nil : groupCounts[2 * g + 1] / total)
    }
    if augpredHead != nil {
      let correctPerKind = counts[4...]
      result.augpredAccuracy = correctPerKind.reduce(0, +) / (total * Double(correctPerKind.count))
      result.augpredAccuracyPerKind = zip(settings.augpredKinds, correctPerKind).map {
        ($0, $1 / total)
      }
    }
    return result
  }

  /// Computes the encoder's features of `range` of `dataset`, `[range.count,
  /// encoder.outputSize]`, in chunks of the model's batch capacity.
  static func features(model: MultiTaskModel, dataset: Dataset, range: Range<Int>) -> Matrix {
    let d = model.encoder.outputSize
    let inputSize = dataset.height * dataset.width
    let result = Matrix(rows: range.count, columns: d)
    let images = dataset.images.matrix(rows: dataset.count, columns: inputSize)
    var start = range.lowerBound
    while start < range.upperBound {
      let end = min(start + model.capacity, range.upperBound)
      let output = model.encoder.forwardForEvaluation(images.rows(start..<end))
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
}

extension TrainingConfiguration {
  /// The evaluation that these settings request: `--knn`, `--knn-temperature`,
  /// `--linear-probe` with `--probe-epochs`, the probe seeded by `--seed`, and the augpred
  /// kinds of `--sensitive`.
  var evaluationSettings: Evaluation.Settings {
    Evaluation.Settings(
      neighbours: knnNeighbours, temperature: knnTemperature,
      linearProbe: linearProbe ? LinearProbe(epochs: probeEpochs, seed: seed) : nil, seed: seed,
      augpredKinds: augpredKinds)
  }
}
