import ConcordData
import ConcordModel
import ConcordTensors

extension Evaluation {
  /// Counts the augmentation labels that the augmentation prediction head gets right on one
  /// augmented view of each image in `range` of `dataset`.
  ///
  /// Each image gets a view from the stream keyed by `seed` and its index, the same on every
  /// rank count. Each of its `K` labels counts as right when the logit's sign matches it: a
  /// logit above 0 predicts that the kind was applied. This is the per-label accuracy of the
  /// multi-label classifier.
  ///
  /// - Returns: the right labels and all labels, `range.count * K`.
  static func correctAugmentationLabels(
    head: AugmentationPredictionHead, model: MultiTaskModel, dataset: Dataset,
    range: Range<Int>, seed: UInt64
  ) -> (correct: Int, total: Int) {
    let kinds = AugmentationKind.allCases.count
    let rows = max(min(model.capacity, range.count), 1)
    let augmenter = Augmenter(height: dataset.height, width: dataset.width)
    let views = Matrix(rows: rows, columns: dataset.pixelCount)
    let labels = Matrix(rows: rows, columns: kinds)
    let logits = Matrix(rows: rows, columns: head.layer.outputSize)
    var correct = 0
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
        for kind in 0..<kinds where (output[row, kind] > 0) == (labels[row, kind] > 0.5) {
          correct += 1
        }
      }
      start = end
    }
    return (correct, range.count * kinds)
  }
}
