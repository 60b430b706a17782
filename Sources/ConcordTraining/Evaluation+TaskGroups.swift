import ConcordData
import ConcordModel
import ConcordTensors

extension Evaluation {
  /// The accuracies of one task group's features alone, with residual adapters.
  struct GroupAccuracy {
    /// The task group whose adapters made the features.
    var group: TaskGroup
    /// The kNN accuracy of the group's features on the test set.
    var knnAccuracy: Double
    /// The linear probe's test accuracy on the group's features, or nil when none was trained.
    var linearProbeAccuracy: Double?
  }

  /// Returns a dense copy of each task group's columns of `bank` and `query`, in the order of
  /// the groups' passes; empty without adapters.
  static func groupFeatures(model: MultiTaskModel, bank: Matrix, query: Matrix)
    -> [(group: TaskGroup, bank: Matrix, query: Matrix)]
  {
    guard let encoder = model.encoder as? AdaptedEncoder else { return [] }
    func copy(_ matrix: Matrix, _ columns: Range<Int>) -> Matrix {
      let result = Matrix(rows: matrix.rows, columns: columns.count)
      result.copy(from: matrix.columns(columns))
      return result
    }
    return encoder.groups.map { group in
      let columns = encoder.columns(of: group)
      return (group, copy(bank, columns), copy(query, columns))
    }
  }

  /// Counts the test images of `query` that the weighted kNN classifier over `bank` and, with
  /// ``Settings/linearProbe``, a linear probe trained on `bank` classify right.
  ///
  /// It normalises the rows of `bank` and `query` in place.
  ///
  /// - Parameters:
  ///   - bank: the features of the whole training set.
  ///   - query: the features of test images `offset ..< offset + query.rows`.
  /// - Returns: the right kNN and probe predictions (0 without a probe), and the neighbour
  ///   count after shrinking to the training set size.
  static func correctRepresentationPredictions(
    bank: Matrix, query: Matrix, trainSet: Dataset, testSet: Dataset, offset: Int,
    settings: Settings
  ) -> (knn: Int, probe: Int, k: Int) {
    var probeCorrect = 0
    if let probe = settings.linearProbe {
      let (mean, deviation) = LinearProbe.columnStatistics(bank)
      let layer = probe.train(
        features: LinearProbe.standardised(bank, mean: mean, deviation: deviation),
        labels: trainSet.labels, classCount: trainSet.classCount)
      probeCorrect = correctPredictions(
        classifier: layer,
        features: LinearProbe.standardised(query, mean: mean, deviation: deviation),
        labels: testSet.labels, offset: offset)
    }

    normaliseRows(bank)
    normaliseRows(query)
    let knn = WeightedKNN(
      bank: bank, bankLabels: trainSet.labels, classCount: trainSet.classCount,
      k: settings.neighbours, temperature: settings.temperature)
    let predictions = knn.predict(query)
    let knnCorrect = predictions.indices.filter {
      predictions[$0] == testSet.labels[offset + $0]
    }.count
    return (knnCorrect, probeCorrect, knn.k)
  }
}
