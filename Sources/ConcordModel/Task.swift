import ConcordTensors

/// One of the tasks that share the encoder.
public enum TaskKind: String, CaseIterable, Sendable, Codable {
  /// Image classification with the dataset's labels (softmax cross-entropy).
  case supervised
  /// Contrastive learning between the two views of each image (NT-Xent).
  case simclr
  /// Bootstrap Your Own Latent: predicting a slowly moving target network's projection.
  case byol
  /// Predicting which augmentations made each view (multi-label binary cross-entropy).
  case augpred
  /// Pulling each first view's representation toward that of its invariance twin, the view
  /// without the invariant augmentation kinds (mean `1 - cos`).
  case invariance

  /// The tasks that a run trains by default: every task but ``invariance``, which needs a list
  /// of invariant augmentation kinds.
  public static let defaultTasks: [TaskKind] = [.supervised, .simclr, .byol, .augpred]
}

/// The local batch as the task heads see it: both views of `pairCount` images.
///
/// Row `i` and row `i + pairCount` are the two views of the same image. With
/// ``SupervisedView/clean`` or ``SupervisedView/both``, row `2 * pairCount + i` is the clean
/// image. With the ``TaskKind/invariance`` task, the last `pairCount` rows are the invariance
/// twins of the first views.
public struct TaskBatch {
  /// The views, `[2 * pairCount + cleanRowCount + invariantRowCount, inputSize]`: first views,
  /// second views, then the clean images and the invariance twins, if any.
  public var input: Matrix
  /// The class label of each row (labels repeat for the second views and the clean images),
  /// `2 * pairCount + cleanRowCount` values.
  public var labels: UnsafePointer<Int32>
  /// Whether each augmentation kind made each view, `[2 * pairCount, augmentationCount]`, 0
  /// or 1.
  public var augmentationLabels: Matrix
  /// The number of images; the batch has twice as many view rows.
  public var pairCount: Int
  /// The number of clean rows after the views: 0, or `pairCount`.
  public var cleanRowCount: Int
  /// The number of invariance twins after the clean rows: 0, or `pairCount`.
  public var invariantRowCount: Int

  /// Creates a batch description over existing views.
  public init(
    input: Matrix, labels: UnsafePointer<Int32>, augmentationLabels: Matrix, pairCount: Int,
    cleanRowCount: Int = 0, invariantRowCount: Int = 0
  ) {
    self.input = input
    self.labels = labels
    self.augmentationLabels = augmentationLabels
    self.pairCount = pairCount
    self.cleanRowCount = cleanRowCount
    self.invariantRowCount = invariantRowCount
  }

  /// Returns the batch restricted to `rows`: the input and labels of those rows, the same
  /// augmentation labels and image count.
  ///
  /// Only the supervised head reads a restriction that is not the `2 * pairCount` view rows,
  /// and it reads only the input and the labels. The invariance head reads every row, so its
  /// restriction is the whole batch, and finds the twins in the last `pairCount` rows.
  func restricted(to rows: Range<Int>) -> TaskBatch {
    if rows == 0..<input.rows { return self }
    return TaskBatch(
      input: input.rows(rows), labels: labels + rows.lowerBound,
      augmentationLabels: augmentationLabels, pairCount: pairCount)
  }
}

/// A task's head: the parameters that belong to one task, and its loss.
public protocol TaskHead: AnyObject {
  /// The task.
  var task: TaskKind { get }

  /// Computes the task's loss on `features`, its head's parameter gradients, and the
  /// gradient of the loss with respect to the features.
  ///
  /// - Parameters:
  ///   - features: the encoder output of the rows the head reads: `[2 * batch.pairCount,
  ///     featureSize]`, except for the supervised head, which may read clean rows too (see
  ///     ``SupervisedView``).
  ///   - batch: the inputs, labels and augmentation labels of the same rows.
  ///   - featuresGradient: the shape of `features`, overwritten.
  /// - Returns: the loss, a mean over the local batch.
  func lossAndGradients(features: Matrix, batch: TaskBatch, featuresGradient: Matrix) -> Float
}
