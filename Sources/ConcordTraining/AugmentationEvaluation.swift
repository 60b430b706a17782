import ConcordData
import ConcordModel
import ConcordTensors

extension Evaluation {
  /// Counts, for each kind that the augmentation prediction head predicts, the images of
  /// `range` of `dataset` whose label of that kind the head gets right on one augmented view.
  ///
  /// Each image gets a view from the stream keyed by `seed` and its index, the same on every
  /// rank count. A label counts as right when the logit's sign matches it: a logit above 0
  /// predicts that the kind was applied. Summed over the kinds and divided by the labels, this
  /// is the per-label accuracy of the multi-label classifier.
  ///
  /// - Parameter kinds: the kind of each of the head's logits, in column order.
  /// - Returns: the right labels of each kind of `kinds`, out of `range.count` each.
  static func correctAugmentationLabels(
    head: AugmentationPredictionHead, model: MultiTaskModel, dataset: Dataset,
    range: Range<Int>, seed: UInt64, kinds: [AugmentationKind]
  ) -> [Int] {
    precondition(
      kinds.count == head.layer.outputSize,
      "\(kinds.count) augmentation kinds for a head of \(head.layer.outputSize) logits")
    let rows = max(min(model.capacity, range.count), 1)
    let augmenter = Augmenter(height: dataset.height, width: dataset.width)
    let views = Matrix(rows: rows, columns: dataset.pixelCount)
    let labels = Matrix(rows: rows, columns: AugmentationKind.allCases.count)
    let logits = Matrix(rows: rows, columns: head.layer.outputSize)
    var correct = [Int](repeating: 0, count: kinds.count)
    var start = range.lowerBound
    while start < range.upperBound {
      let end = min(start + rows, range.upperBound)
      for index in start..<end {
        let row = index - start
        var stream = RandomStream(
          seed: seed, purpose: .evaluation, counters: 3, UInt64(index))
        augmenter.augment(
          dataset.image(index), into: views.row(row).baseAddress!,
          labels: labels.row(row).baseAddress!, stream: &stream)
      }
      let count = end - start
      let output = logits.rows(0..<count)
      let features = model.encoder.forwardForEvaluation(views.rows(0..<count))
      head.layer.forward(features.columns(model.featureColumns(of: .augpred)), into: output)
      for row in 0..<count {
        for (column, kind) in kinds.enumerated()
        where (output[row, column] > 0) == (labels[row, kind.labelIndex] > 0.5) {
          correct[column] += 1
        }
      }
      start = end
    }
    return correct
  }
}
