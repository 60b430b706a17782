import ConcordData
import ConcordModel

/// Every setting of a training run, with its default.
///
/// The `concord` command fills it from flags; checkpoints store it, so that a
/// resumed run can check that it continues the same model and tasks.
public struct TrainingConfiguration: Codable, Sendable, Equatable {
  /// The folder of the MNIST-format IDX files (Debian's dataset-fashion-mnist by default).
  public var dataDirectory = "/usr/share/datasets/fashion-mnist"
  /// The run folder; empty means `runs/<UTC timestamp>`.
  public var outputDirectory = ""
  /// Passes over the training set; used when ``steps`` is not set.
  public var epochs = 30
  /// Total optimizer steps of the run, counted from step 0 also when resuming; 0 means
  /// `epochs` times the steps of one epoch.
  public var steps = 0
  /// The global batch in images, split evenly over the ranks; each image gives two views.
  public var batchSize = 256
  /// The optimizer's learning rate; with a schedule, its rate at the end of the warm-up.
  public var learningRate: Float = 1e-3
  /// The tasks that share the encoder.
  public var tasks: [TaskKind] = TaskKind.defaultTasks
  /// The gradient balancer: `equal`, `gradnorm`, `pcgrad` or `pcgrad+gradnorm`.
  public var balancer = "pcgrad+gradnorm"
  /// The seed of every random stream (initialisation, data order, augmentations, PCGrad order).
  public var seed: UInt64 = 0
  /// Steps between metrics lines; 0 logs only the last step.
  public var logEvery = 50
  /// Steps between checkpoints; 0 writes only the final one.
  public var checkpointEvery = 1000
  /// `latest`, a checkpoint path, or empty to start fresh.
  public var resume = ""
  /// The encoder widths; the last is the representation size.
  public var hiddenSizes = [512, 256]
  /// The encoder architecture: fully connected (``hiddenSizes``) or convolutional
  /// (``convChannels``).
  public var encoder = EncoderKind.mlp
  /// The output channels of the convolutional encoder's blocks.
  public var convChannels = [32, 64]
  /// The widths of the convolutional encoder's fully connected layers after its blocks.
  ///
  /// The last is the representation size. Empty for a global average pool, whose
  /// representation is the last block's channels.
  public var convHiddenSizes = [256]
  /// The residual adapters of each task group beside the MLP encoder's layers.
  public var adapters = AdapterKind.none
  /// The rank of each adapter; nil means ``defaultAdapterRank``, and a run without adapters
  /// rejects a value.
  public var adapterRank: Int? = nil
  /// The NT-Xent temperature of the SimCLR task.
  public var temperature: Float = 0.5
  /// The label smoothing `epsilon` of the supervised task's cross-entropy, in `[0, 1)`.
  ///
  /// It is free to change on resume.
  public var labelSmoothing: Float = 0
  /// The source of NT-Xent's negatives: the rank's own batch or the global batch.
  ///
  /// It is free to change on resume.
  public var simclrNegatives = SimCLRNegatives.local
  /// The decay of BYOL's target network average.
  public var targetDecay: Float = 0.99
  /// GradNorm's asymmetry `alpha`.
  public var gradNormAlpha: Double = 1.5
  /// The learning rate of the GradNorm task weights.
  public var gradNormLearningRate: Double = 0.025
  /// The parameters on which GradNorm measures gradient norms: `last` (the last shared
  /// layer's weight, the GradNorm paper's choice) or `shared` (all shared parameters).
  public var gradNormLayer = "last"
  /// The step whose balancing inputs are written to `gradients-step-N.safetensors`; -1: none.
  public var dumpGradientsStep = -1
  /// The allreduce mode of the per-task gradients: overlapped with the backward pass by a
  /// communication thread, or one blocking call after it.
  public var allreduceMode = AllreduceMode.auto
  /// One allreduce of every task's gradients, or one per task.
  ///
  /// It is free to change on resume.
  public var allreduceFusion = AllreduceFusion.all
  /// The number format of the gradients in the allreduce.
  ///
  /// It is free to change on resume.
  public var allreducePrecision = AllreducePrecision.float32
  /// OpenBLAS threads per rank; 0 picks the cores of the host divided by the ranks on it.
  public var blasThreads = 0
  /// Use only the first N training images (0: all); for quick runs and tests.
  public var trainLimit = 0
  /// Evaluate on only the first N test images (0: all).
  public var testLimit = 0
  /// The number of checkpoints to keep; older ones are removed after a new one is in place.
  public var keep = 3
  /// The number of neighbours of the kNN evaluation.
  ///
  /// The default, ``defaultKNNNeighbours``, shrinks to the training set size, but any other
  /// value above that size is rejected.
  public var knnNeighbours = TrainingConfiguration.defaultKNNNeighbours
  /// The temperature `T` of the kNN vote weights `exp(similarity / T)`.
  public var knnTemperature: Float = 0.1
  /// Whether to train a linear probe on the frozen features at the end of the run.
  public var linearProbe = false
  /// The passes of the linear probe over the training set's features.
  public var probeEpochs = 10

  /// The default kNN neighbour count, 200.
  public static let defaultKNNNeighbours = 200
  /// The Chrome trace file of every rank's step phases, written by rank 0 at the end of training;
  /// nil writes none.
  ///
  /// Optional, so that configurations stored in checkpoints without it still decode.
  public var tracePath: String? = nil
  /// The loss bound, relative to each task's first-step loss L_t(0) (at least 1): a reduced
  /// loss above `lossBound * max(L_t(0), 1)` stops the run before its update is applied.
  public var lossBound: Double = 1e4
  /// Steps between comparisons of the ranks' state checksums; 0 compares only before each
  /// checkpoint and at the end of the run, which every value also does.
  public var verifyEvery = 0
  /// The optimizer of the encoder and the heads.
  public var optimizer = OptimizerKind.adam
  /// LARS's momentum; nil means ``LARS/defaultMomentum``, and other optimizers reject a value.
  public var momentum: Float? = nil
  /// LARS's weight decay; nil means ``LARS/defaultWeightDecay``, and other optimizers reject
  /// a value.
  public var weightDecay: Float? = nil
  /// LARS's trust coefficient eta; nil means ``LARS/defaultTrustCoefficient``, and other
  /// optimizers reject a value.
  public var larsEta: Float? = nil
  /// The learning rate's decay after the warm-up.
  public var learningRateSchedule = ScheduleKind.constant
  /// The warm-up in epochs, which may be fractional; 0 means none unless ``warmupSteps`` is set.
  public var warmupEpochs: Double = 0
  /// The warm-up in steps; 0 means none unless ``warmupEpochs`` is set.
  public var warmupSteps = 0
  /// The schedule of BYOL's target decay, which starts at ``targetDecay``.
  public var targetDecaySchedule = ScheduleKind.constant
  /// The images that the supervised head trains on.
  public var supervisedView = SupervisedView.augmented
  /// The augmentation kinds whose labels the augpred task predicts (`--sensitive`), in the
  /// order of application; nil means every kind that is not in ``invariantKinds``.
  ///
  /// ``augpredKinds`` resolves the default. The other kinds are still applied to the views.
  public var sensitiveKinds: [AugmentationKind]? = nil
  /// The augmentation kinds that the ``TaskKind/invariance`` task teaches the encoder to
  /// ignore (`--invariant`), in the order of application; empty means no invariance task.
  public var invariantKinds: [AugmentationKind] = []

  /// Creates the default configuration.
  public init() {}

  /// Decodes a configuration, taking the default for every key the JSON lacks, so that
  /// checkpoints written before a setting existed still resume.
  public init(from decoder: Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    self.init()
    dataDirectory =
      try container.decodeIfPresent(type(of: dataDirectory).self, forKey: .dataDirectory)
      ?? dataDirectory
    outputDirectory =
      try container.decodeIfPresent(type(of: outputDirectory).self, forKey: .outputDirectory)
      ?? outputDirectory
    epochs = try container.decodeIfPresent(type(of: epochs).self, forKey: .epochs) ?? epochs
    steps = try container.decodeIfPresent(type(of: steps).self, forKey: .steps) ?? steps
    batchSize =
      try container.decodeIfPresent(type(of: batchSize).self, forKey: .batchSize) ?? batchSize
    learningRate =
      try container.decodeIfPresent(type(of: learningRate).self, forKey: .learningRate)
      ?? learningRate
    tasks = try container.decodeIfPresent(type(of: tasks).self, forKey: .tasks) ?? tasks
    balancer = try container.decodeIfPresent(type(of: balancer).self, forKey: .balancer) ?? balancer
    seed = try container.decodeIfPresent(type(of: seed).self, forKey: .seed) ?? seed
    logEvery = try container.decodeIfPresent(type(of: logEvery).self, forKey: .logEvery) ?? logEvery
    checkpointEvery =
      try container.decodeIfPresent(type(of: checkpointEvery).self, forKey: .checkpointEvery)
      ?? checkpointEvery
    resume = try container.decodeIfPresent(type(of: resume).self, forKey: .resume) ?? resume
    hiddenSizes =
      try container.decodeIfPresent(type(of: hiddenSizes).self, forKey: .hiddenSizes) ?? hiddenSizes
    temperature =
      try container.decodeIfPresent(type(of: temperature).self, forKey: .temperature) ?? temperature
    labelSmoothing =
      try container.decodeIfPresent(type(of: labelSmoothing).self, forKey: .labelSmoothing)
      ?? labelSmoothing
    targetDecay =
      try container.decodeIfPresent(type(of: targetDecay).self, forKey: .targetDecay) ?? targetDecay
    simclrNegatives =
      try container.decodeIfPresent(type(of: simclrNegatives).self, forKey: .simclrNegatives)
      ?? simclrNegatives
    gradNormAlpha =
      try container.decodeIfPresent(type(of: gradNormAlpha).self, forKey: .gradNormAlpha)
      ?? gradNormAlpha
    gradNormLearningRate =
      try container.decodeIfPresent(
        type(of: gradNormLearningRate).self, forKey: .gradNormLearningRate) ?? gradNormLearningRate
    gradNormLayer =
      try container.decodeIfPresent(type(of: gradNormLayer).self, forKey: .gradNormLayer)
      ?? gradNormLayer
    dumpGradientsStep =
      try container.decodeIfPresent(type(of: dumpGradientsStep).self, forKey: .dumpGradientsStep)
      ?? dumpGradientsStep
    allreduceMode =
      try container.decodeIfPresent(type(of: allreduceMode).self, forKey: .allreduceMode)
      ?? allreduceMode
    allreduceFusion =
      try container.decodeIfPresent(type(of: allreduceFusion).self, forKey: .allreduceFusion)
      ?? allreduceFusion
    allreducePrecision =
      try container.decodeIfPresent(type(of: allreducePrecision).self, forKey: .allreducePrecision)
      ?? allreducePrecision
    blasThreads =
      try container.decodeIfPresent(type(of: blasThreads).self, forKey: .blasThreads) ?? blasThreads
    trainLimit =
      try container.decodeIfPresent(type(of: trainLimit).self, forKey: .trainLimit) ?? trainLimit
    testLimit =
      try container.decodeIfPresent(type(of: testLimit).self, forKey: .testLimit) ?? testLimit
    keep = try container.decodeIfPresent(type(of: keep).self, forKey: .keep) ?? keep
    knnNeighbours =
      try container.decodeIfPresent(type(of: knnNeighbours).self, forKey: .knnNeighbours)
      ?? knnNeighbours
    knnTemperature =
      try container.decodeIfPresent(type(of: knnTemperature).self, forKey: .knnTemperature)
      ?? knnTemperature
    linearProbe =
      try container.decodeIfPresent(type(of: linearProbe).self, forKey: .linearProbe)
      ?? linearProbe
    probeEpochs =
      try container.decodeIfPresent(type(of: probeEpochs).self, forKey: .probeEpochs)
      ?? probeEpochs
    tracePath =
      try container.decodeIfPresent(type(of: tracePath).self, forKey: .tracePath) ?? tracePath
    lossBound =
      try container.decodeIfPresent(type(of: lossBound).self, forKey: .lossBound) ?? lossBound
    verifyEvery =
      try container.decodeIfPresent(type(of: verifyEvery).self, forKey: .verifyEvery)
      ?? verifyEvery
    optimizer =
      try container.decodeIfPresent(type(of: optimizer).self, forKey: .optimizer) ?? optimizer
    momentum = try container.decodeIfPresent(Float.self, forKey: .momentum)
    weightDecay = try container.decodeIfPresent(Float.self, forKey: .weightDecay)
    larsEta = try container.decodeIfPresent(Float.self, forKey: .larsEta)
    learningRateSchedule =
      try container.decodeIfPresent(
        type(of: learningRateSchedule).self, forKey: .learningRateSchedule) ?? learningRateSchedule
    warmupEpochs =
      try container.decodeIfPresent(type(of: warmupEpochs).self, forKey: .warmupEpochs)
      ?? warmupEpochs
    warmupSteps =
      try container.decodeIfPresent(type(of: warmupSteps).self, forKey: .warmupSteps)
      ?? warmupSteps
    targetDecaySchedule =
      try container.decodeIfPresent(
        type(of: targetDecaySchedule).self, forKey: .targetDecaySchedule) ?? targetDecaySchedule
    supervisedView =
      try container.decodeIfPresent(type(of: supervisedView).self, forKey: .supervisedView)
      ?? supervisedView
    sensitiveKinds = try container.decodeIfPresent(
      [AugmentationKind].self, forKey: .sensitiveKinds)
    invariantKinds =
      try container.decodeIfPresent(type(of: invariantKinds).self, forKey: .invariantKinds)
      ?? invariantKinds
    encoder = try container.decodeIfPresent(type(of: encoder).self, forKey: .encoder) ?? encoder
    convChannels =
      try container.decodeIfPresent(type(of: convChannels).self, forKey: .convChannels)
      ?? convChannels
    // A run that stored no fully connected layers had none: they came with this setting.
    convHiddenSizes =
      try container.decodeIfPresent(type(of: convHiddenSizes).self, forKey: .convHiddenSizes) ?? []
    adapters =
      try container.decodeIfPresent(type(of: adapters).self, forKey: .adapters) ?? adapters
    adapterRank = try container.decodeIfPresent(Int.self, forKey: .adapterRank)
  }

  /// Returns the model shape that these settings describe, for a dataset of the given image size.
  public func modelConfiguration(inputSize: Int, classCount: Int, augmentationCount: Int)
    -> ModelConfiguration
  {
    ModelConfiguration(
      inputSize: inputSize, hiddenSizes: hiddenSizes, classCount: classCount,
      augmentationCount: augmentationCount, tasks: tasks, temperature: temperature,
      adapterRank: modelAdapterRank)
  }
}
