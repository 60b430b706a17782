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
}

/// The local batch as the task heads see it: both views of `pairCount` images.
///
/// Row `i` and row `i + pairCount` are the two views of the same image.
public struct TaskBatch {
  /// The views, `[2 * pairCount, inputSize]`: first views, then second views.
  public var input: Matrix
  /// The class label of each row (labels repeat for the second views), `2 * pairCount` values.
  public var labels: UnsafePointer<Int32>
  /// Whether each augmentation kind made each row, `[2 * pairCount, augmentationCount]`, 0 or 1.
  public var augmentationLabels: Matrix
  /// The number of images; the batch has twice as many rows.
  public var pairCount: Int

  /// Creates a batch description over existing views.
  public init(
    input: Matrix, labels: UnsafePointer<Int32>, augmentationLabels: Matrix, pairCount: Int
  ) {
    self.input = input
    self.labels = labels
    self.augmentationLabels = augmentationLabels
    self.pairCount = pairCount
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
  ///   - features: the encoder output, `[2 * batch.pairCount, featureSize]`.
  ///   - batch: the inputs, labels and augmentation labels of the same rows.
  ///   - featuresGradient: `[2 * batch.pairCount, featureSize]`, overwritten.
  /// - Returns: the loss, a mean over the local batch.
  func lossAndGradients(features: Matrix, batch: TaskBatch, featuresGradient: Matrix) -> Float
}
