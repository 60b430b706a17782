import ConcordTensors

/// A linear layer whose gradients go to fixed views.
struct TrainableLinear {
  let layer: Linear
  let weightGradient: Matrix
  let biasGradient: Matrix

  var gradientPair: (weight: Matrix, bias: Matrix) { (weightGradient, biasGradient) }
}

/// A task head that is one linear layer on the features, with a loss on its outputs.
public class LinearHead: TaskHead {
  public let task: TaskKind
  let classifier: TrainableLinear
  let logits: Matrix
  let logitsGradient: Matrix
  let ones: FloatBuffer

  init(task: TaskKind, classifier: TrainableLinear, capacity: Int, ones: FloatBuffer) {
    self.task = task
    self.classifier = classifier
    logits = Matrix(rows: capacity, columns: classifier.layer.outputSize)
    logitsGradient = Matrix(rows: capacity, columns: classifier.layer.outputSize)
    self.ones = ones
  }

  /// The layer, `[outputs, featureSize]`.
  public var layer: Linear { classifier.layer }

  /// Computes the loss of `logits` (`[n, outputs]`) and writes its gradient into `gradient`.
  func loss(logits: Matrix, batch: TaskBatch, gradient: Matrix) -> Float {
    preconditionFailure("LinearHead subclasses provide the loss")
  }

  public func lossAndGradients(features: Matrix, batch: TaskBatch, featuresGradient: Matrix)
    -> Float
  {
    let n = features.rows
    let z = logits.rows(0..<n)
    let dz = logitsGradient.rows(0..<n)
    classifier.layer.forward(features, into: z)
    let value = loss(logits: z, batch: batch, gradient: dz)
    classifier.layer.backward(
      input: features, outputGradient: dz, weightGradient: classifier.weightGradient,
      biasGradient: classifier.biasGradient, inputGradient: featuresGradient,
      ones: ones.baseAddress)
    return value
  }
}

/// The supervised task: a linear classifier on the features, trained with softmax
/// cross-entropy on the rows of its ``SupervisedView``.
public final class SupervisedHead: LinearHead {
  /// The label smoothing `epsilon` of the cross-entropy, in `[0, 1)`, which starts at 0.
  ///
  /// See ``softmaxCrossEntropy(logits:labels:gradient:labelSmoothing:)``.
  public var labelSmoothing: Float = 0 {
    didSet {
      precondition(
        labelSmoothing >= 0 && labelSmoothing < 1,
        "SupervisedHead label smoothing must be in [0, 1), got \(labelSmoothing)")
    }
  }

  init(classifier: TrainableLinear, capacity: Int, ones: FloatBuffer) {
    super.init(task: .supervised, classifier: classifier, capacity: capacity, ones: ones)
  }

  override func loss(logits: Matrix, batch: TaskBatch, gradient: Matrix) -> Float {
    softmaxCrossEntropy(
      logits: logits, labels: batch.labels, gradient: gradient, labelSmoothing: labelSmoothing)
  }
}

/// The SimCLR task: an MLP projection head and the NT-Xent loss between the two views.
///
/// ### References
/// Chen, Kornblith, Norouzi and Hinton, "A Simple Framework for Contrastive Learning of
/// Visual Representations", ICML 2020.
public final class SimCLRHead: TaskHead {
  public let task = TaskKind.simclr
  let projector: MLP
  let gradients: [(weight: Matrix, bias: Matrix)]
  let loss: NTXentLoss
  let temperature: Float
  let projectionGradient: Matrix
  let ones: FloatBuffer
  /// NT-Xent over every rank's views (``useGlobalNegatives(_:)``), or nil for the local batch.
  var globalLoss: GlobalNTXent?

  init(
    projector: [TrainableLinear], temperature: Float, capacity: Int, ones: FloatBuffer
  ) {
    self.projector = MLP(layers: projector.map(\.layer), hasFinalReLU: false, capacity: capacity)
    gradients = projector.map(\.gradientPair)
    self.temperature = temperature
    loss = NTXentLoss(rows: capacity, dimension: self.projector.outputSize)
    projectionGradient = Matrix(rows: capacity, columns: self.projector.outputSize)
    self.ones = ones
  }

  public func lossAndGradients(features: Matrix, batch: TaskBatch, featuresGradient: Matrix)
    -> Float
  {
    let n = features.rows
    let z = projector.forward(features)
    let dz = projectionGradient.rows(0..<n)
    let value: Float
    if let globalLoss {
      value = globalLoss(projections: z, temperature: temperature, gradient: dz)
    } else {
      value = loss(projections: z, temperature: temperature, gradient: dz)
    }
    projector.backward(
      outputGradient: dz, gradients: gradients, inputGradient: featuresGradient,
      ones: ones.baseAddress)
    return value
  }
}

/// The BYOL task: the online network's projector and predictor, and a target network
/// (encoder and projector) that follows the online one as an exponential moving average.
///
/// The loss of row `i` compares its prediction with the target projection of the other
/// view of the same image, `2 - 2 cos(p_i, t_other)`, averaged over both views (the
/// symmetrised loss of the paper). The target gets no gradient.
///
/// ### References
/// Grill et al., "Bootstrap Your Own Latent: A New Approach to Self-Supervised Learning",
/// NeurIPS 2020.
public final class BYOLHead: TaskHead {
  public let task = TaskKind.byol
  let projector: MLP
  let predictor: MLP
  let projectorGradients: [(weight: Matrix, bias: Matrix)]
  let predictorGradients: [(weight: Matrix, bias: Matrix)]
  /// The target network's encoder, whose parameters follow the online encoder's by EMA.
  public let targetEncoder: any FeatureNetwork
  let targetProjector: MLP
  let swappedTargets: Matrix
  let predictionGradient: Matrix
  let projectionGradient: Matrix
  let ones: FloatBuffer

  init(
    projector: [TrainableLinear], predictor: [TrainableLinear], targetEncoder: any FeatureNetwork,
    targetProjector: [Linear], capacity: Int, ones: FloatBuffer
  ) {
    self.projector = MLP(layers: projector.map(\.layer), hasFinalReLU: false, capacity: capacity)
    self.predictor = MLP(layers: predictor.map(\.layer), hasFinalReLU: false, capacity: capacity)
    projectorGradients = projector.map(\.gradientPair)
    predictorGradients = predictor.map(\.gradientPair)
    self.targetEncoder = targetEncoder
    self.targetProjector = MLP(layers: targetProjector, hasFinalReLU: false, capacity: capacity)
    swappedTargets = Matrix(rows: capacity, columns: self.projector.outputSize)
    predictionGradient = Matrix(rows: capacity, columns: self.predictor.outputSize)
    projectionGradient = Matrix(rows: capacity, columns: self.projector.outputSize)
    self.ones = ones
  }

  public func lossAndGradients(features: Matrix, batch: TaskBatch, featuresGradient: Matrix)
    -> Float
  {
    let n = features.rows
    let b = batch.pairCount

    // Target projections of both views, each row moved to the other view's place.
    let target = targetProjector.forward(targetEncoder.forward(batch.input))
    let swapped = swappedTargets.rows(0..<n)
    swapped.rows(0..<b).copy(from: target.rows(b..<n))
    swapped.rows(b..<n).copy(from: target.rows(0..<b))

    let prediction = predictor.forward(projector.forward(features))
    let dp = predictionGradient.rows(0..<n)
    let value = byolLoss(predictions: prediction, targets: swapped, gradient: dp)
    let dq = projectionGradient.rows(0..<n)
    predictor.backward(
      outputGradient: dp, gradients: predictorGradients, inputGradient: dq,
      ones: ones.baseAddress)
    projector.backward(
      outputGradient: dq, gradients: projectorGradients, inputGradient: featuresGradient,
      ones: ones.baseAddress)
    return value
  }
}

/// The augmentation prediction task: a linear head with one logit per augmentation kind,
/// trained to tell which augmentations made each view.
///
/// ### References
/// Heggan, Hospedales, Budgett and Yaghoobi, "MT-SLVR: Multi-Task Self-Supervised Learning
/// for Transformation In(Variant) Representations", Interspeech 2023.
public final class AugmentationPredictionHead: LinearHead {
  init(classifier: TrainableLinear, capacity: Int, ones: FloatBuffer) {
    super.init(task: .augpred, classifier: classifier, capacity: capacity, ones: ones)
  }

  override func loss(logits: Matrix, batch: TaskBatch, gradient: Matrix) -> Float {
    binaryCrossEntropyWithLogits(
      logits: logits, targets: batch.augmentationLabels, gradient: gradient)
  }
}
