import ConcordTensors

/// The shape of the network: encoder widths, head sizes and the tasks trained.
public struct ModelConfiguration: Sendable, Equatable, Codable {
  /// The number of input features (pixels).
  public var inputSize: Int
  /// The widths of the encoder layers; the last is the feature (representation) size.
  public var hiddenSizes: [Int]
  /// The number of classes of the supervised task.
  public var classCount: Int
  /// The number of augmentation kinds that the augmentation prediction task detects.
  public var augmentationCount: Int
  /// The tasks, in the order of their gradients in every per-task buffer.
  public var tasks: [TaskKind]
  /// The hidden width of the SimCLR and BYOL projectors and of the BYOL predictor.
  public var projectorHiddenSize: Int
  /// The output size of the projectors and of the predictor.
  public var projectionSize: Int
  /// The NT-Xent temperature of the SimCLR task.
  public var temperature: Float
  /// The convolutional encoder's shape, or nil for the MLP encoder of ``hiddenSizes``.
  ///
  /// With it, ``hiddenSizes`` repeats its channels and fully connected widths, so that
  /// ``featureSize`` is the shape's ``ConvEncoderShape/featureSize``.
  public var conv: ConvEncoderShape? = nil
  /// The rank of the residual adapters beside every layer of the MLP encoder, one set per
  /// task group present (see ``TaskGroup``), or nil for no adapters.
  public var adapterRank: Int? = nil

  /// Creates a configuration; the defaults are the 784-512-256 encoder and 256-256-128 heads.
  public init(
    inputSize: Int = 784, hiddenSizes: [Int] = [512, 256], classCount: Int = 10,
    augmentationCount: Int = 6, tasks: [TaskKind] = TaskKind.defaultTasks,
    projectorHiddenSize: Int = 256, projectionSize: Int = 128, temperature: Float = 0.5,
    conv: ConvEncoderShape? = nil, adapterRank: Int? = nil
  ) {
    self.inputSize = inputSize
    self.hiddenSizes = hiddenSizes
    self.classCount = classCount
    self.augmentationCount = augmentationCount
    self.tasks = tasks
    self.projectorHiddenSize = projectorHiddenSize
    self.projectionSize = projectionSize
    self.temperature = temperature
    self.conv = conv
    self.adapterRank = adapterRank
  }

  /// The size of the representation, the encoder's last width.
  public var featureSize: Int { hiddenSizes.last ?? inputSize }

  /// The task groups that have adapters: those of ``tasks``, or none without
  /// ``adapterRank``.
  public var adapterGroups: [TaskGroup] {
    adapterRank == nil ? [] : TaskGroup.present(in: tasks)
  }

  /// Returns the number of features that `task`'s head reads: ``featureSize`` for each of its
  /// groups (``TaskKind/groups``), or ``featureSize`` without adapters.
  public func headInputSize(for task: TaskKind) -> Int {
    adapterGroups.isEmpty ? featureSize : featureSize * task.groups.count
  }
}

/// The network of all tasks and the buffers that one training step works in.
///
/// Three flat buffers hold the state of a step:
/// - ``parameters``: every trainable parameter, the encoder first, then each task's head,
///   then the adapters, if any (see ``AdaptedEncoder``).
/// - ``reduceBuffer``: what the ranks allreduce, once per step: each task's gradient on
///   the encoder (see ``SharedEncoder``) and on the adapters, then each head's gradient, then
///   the T losses.
/// - ``update``: the gradient that the optimizer applies, laid out like ``parameters``:
///   the balanced direction on the encoder and each head's gradient times its task weight.
public final class MultiTaskModel {
  /// The shape of the network.
  public let configuration: ModelConfiguration
  /// The names and places of the tensors in ``parameters``.
  public let layout: ParameterLayout
  /// All trainable parameters.
  public let parameters: FloatBuffer
  /// The number of encoder parameters, which come first in ``parameters``.
  public let encoderParameterCount: Int
  /// The per-task encoder gradients, head gradients and losses, reduced across ranks.
  public let reduceBuffer: FloatBuffer
  /// The offset of the losses in ``reduceBuffer``.
  public let lossOffset: Int
  /// The offset of the head gradients in ``reduceBuffer``: they follow the per-task encoder
  /// gradients, and the losses follow them.
  public let headGradientStart: Int
  /// The gradient handed to the optimizer, laid out like ``parameters``.
  public let update: FloatBuffer
  /// The shared encoder: ``SharedEncoder``, or ``ConvEncoder`` with ``ModelConfiguration/conv``.
  public let encoder: any MultiTaskEncoder
  /// The batch normalisation running statistics of the convolutional encoder, which training
  /// updates but does not train; nil for the MLP encoder.
  ///
  /// ``statisticsLayout`` names them.
  public let runningStatistics: FloatBuffer?
  /// The names and places of the tensors in ``runningStatistics``.
  public let statisticsLayout: ParameterLayout
  /// One head per task, in the order of ``ModelConfiguration/tasks``.
  public let heads: [TaskHead]
  /// The BYOL target network (a copy of the encoder and the BYOL projector), when BYOL is
  /// trained; ``targetLayout`` names its tensors.
  public let target: FloatBuffer?
  /// The names and places of the tensors in ``target``.
  public let targetLayout: ParameterLayout
  /// For each task, the range of its head in ``parameters``.
  public let headRanges: [Range<Int>]
  /// The largest number of rows (two views per image, and a clean one with
  /// ``supervisedView`` `clean` or `both`) a batch may have.
  public let capacity: Int
  /// The images that the supervised head trains on.
  ///
  /// Batches have clean rows unless it is ``SupervisedView/augmented``.
  public let supervisedView: SupervisedView
  /// The rows of a batch for each image: the two views, the clean image with ``supervisedView``
  /// `clean` or `both`, and the invariance twin with the ``TaskKind/invariance`` task.
  public let rowsPerImage: Int
  private let ones: FloatBuffer
  /// The offset in ``parameters`` of the adapters, which follow the heads; the end of
  /// ``parameters`` without adapters.
  public let adapterParameterStart: Int
  private let blockSums: UnsafeMutablePointer<Double>
  /// The ranges of ``parameters`` that the BYOL target copies, in the order of ``target``.
  private let targetSources: [Range<Int>]

  /// Creates the model with freshly initialised parameters.
  ///
  /// - Parameters:
  ///   - configuration: the shape.
  ///   - capacity: the largest batch in rows: the local batch of images times
  ///     ``rowsPerImage``.
  ///   - seed: the run's seed; every rank that passes the same seed gets the same parameters.
  ///   - supervisedView: the images that the supervised head trains on.
  ///   - statisticsReducer: sums the convolutional encoder's batch statistics over the ranks.
  public init(
    configuration: ModelConfiguration, capacity: Int, seed: UInt64,
    supervisedView: SupervisedView = .augmented,
    statisticsReducer: BatchStatisticsReducer = SingleProcessStatisticsReducer()
  ) {
    precondition(!configuration.tasks.isEmpty, "a model needs at least one task")
    let rowsPerImage =
      supervisedView.rowsPerImage + (configuration.tasks.contains(.invariance) ? 1 : 0)
    precondition(
      configuration.conv == nil || configuration.adapterRank == nil,
      "adapters need the MLP encoder")
    precondition(
      capacity % rowsPerImage == 0,
      "capacity \(capacity) is not \(rowsPerImage) rows per image for supervised view "
        + "\(supervisedView) and tasks \(configuration.tasks)")
    self.configuration = configuration
    self.capacity = capacity
    self.supervisedView = supervisedView
    self.rowsPerImage = rowsPerImage
    // The heads of the other tasks read the two views alone.
    let viewCapacity = capacity / rowsPerImage * 2
    let taskCount = configuration.tasks.count
    let widths = [configuration.inputSize] + configuration.hiddenSizes

    // Lay out every tensor: the encoder, then each task's head in task order.
    var layout = ParameterLayout()
    if let conv = configuration.conv {
      ConvEncoder.appendParameters(to: &layout, shape: conv)
    } else {
      for i in 0..<(widths.count - 1) {
        Self.appendLinear(&layout, "encoder.\(i)", widths[i], widths[i + 1])
      }
    }
    encoderParameterCount = layout.count
    var ranges: [Range<Int>] = []
    for task in configuration.tasks {
      let start = layout.count
      Self.appendHead(&layout, task: task, configuration: configuration)
      ranges.append(start..<layout.count)
    }
    // The adapters come after the heads, so that the encoder and the heads keep the slots,
    // and so the initialisation streams, that they have without adapters.
    let adapterGroups = configuration.adapterGroups
    let adapterRank = configuration.adapterRank ?? 0
    adapterParameterStart = layout.count
    for group in adapterGroups {
      for i in 0..<(widths.count - 1) {
        let prefix = "adapter.\(group.rawValue).\(i)"
        layout.append(prefix + ".down", shape: [adapterRank, widths[i]])
        layout.append(prefix + ".up", shape: [widths[i + 1], adapterRank])
      }
    }
    self.layout = layout
    headRanges = ranges

    parameters = FloatBuffer(count: layout.count)
    update = FloatBuffer(count: layout.count)
    let encoderGradientCount =
      (configuration.conv.map { ConvEncoder.gradientCount(shape: $0, taskCount: taskCount) }
        ?? SharedEncoder.gradientCount(widths: widths, taskCount: taskCount))
      + AdaptedEncoder.adapterGradientCount(
        widths: widths, rank: adapterRank, groupCount: adapterGroups.count, taskCount: taskCount)
    let headGradientOffset = encoderGradientCount - encoderParameterCount
    headGradientStart = encoderGradientCount
    lossOffset = encoderGradientCount + (adapterParameterStart - encoderParameterCount)
    reduceBuffer = FloatBuffer(count: lossOffset + taskCount)
    ones = FloatBuffer(count: capacity)
    ones.fill(1)
    blockSums = .allocate(capacity: taskCount * taskCount)

    // Views: parameters from `parameters`, head gradients from `reduceBuffer`.
    let parameterBuffer = parameters
    let reduce = reduceBuffer
    func linear(_ prefix: String) -> Linear {
      Linear(named: prefix, in: layout, buffer: parameterBuffer)
    }
    func trainable(_ prefix: String) -> TrainableLinear {
      let weight = layout.slot(named: prefix + ".weight")!
      let bias = layout.slot(named: prefix + ".bias")!
      return TrainableLinear(
        layer: linear(prefix),
        weightGradient: reduce.matrix(
          rows: weight.shape[0], columns: weight.shape[1],
          offset: headGradientOffset + weight.offset),
        biasGradient: reduce.matrix(
          rows: 1, columns: bias.shape[0], offset: headGradientOffset + bias.offset))
    }

    if let conv = configuration.conv {
      statisticsLayout = ConvEncoder.statisticsLayout(shape: conv)
      let statistics = ConvEncoder.initialRunningStatistics(layout: statisticsLayout)
      runningStatistics = statistics.buffer
      encoder = ConvEncoder(
        network: ConvNetwork(
          blocks: ConvEncoder.blocks(shape: conv, buffer: parameters, layout: layout),
          hiddenLayers: ConvEncoder.hiddenLayers(shape: conv, buffer: parameters, layout: layout),
          capacity: capacity, reducer: statisticsReducer, runningStatistics: statistics.views),
        taskCount: taskCount, gradients: reduceBuffer.baseAddress, owner: reduceBuffer)
    } else {
      statisticsLayout = ParameterLayout()
      runningStatistics = nil
      let encoderLayers = (0..<(widths.count - 1)).map { linear("encoder.\($0)") }
      if adapterGroups.isEmpty {
        encoder = SharedEncoder(
          layers: encoderLayers, taskCount: taskCount, capacity: capacity,
          gradients: reduceBuffer.baseAddress, owner: reduceBuffer)
      } else {
        encoder = AdaptedEncoder(
          layers: encoderLayers, groups: adapterGroups,
          adapters: adapterGroups.map { group in
            (0..<(widths.count - 1)).map {
              Self.adapter("adapter.\(group.rawValue).\($0)", in: parameterBuffer, layout: layout)
            }
          }, taskCount: taskCount, capacity: capacity, gradients: reduceBuffer.baseAddress,
          owner: reduceBuffer)
      }
    }

    // The BYOL target copies the encoder, the BYOL projector and, with adapters, the
    // invariant group's adapters: BYOL reads the invariant pass.
    var targetLayout = ParameterLayout()
    var sources: [Range<Int>] = []
    let targetAdapterPrefix = "adapter.\(TaskGroup.invariant.rawValue)."
    if configuration.tasks.contains(.byol) {
      let copied = [
        layout.slots.filter { $0.name.hasPrefix("encoder.") },
        layout.slots.filter { $0.name.hasPrefix("byol.projector.") },
        layout.slots.filter { $0.name.hasPrefix(targetAdapterPrefix) },
      ]
      for slots in copied where !slots.isEmpty {
        for slot in slots { targetLayout.append("target." + slot.name, shape: slot.shape) }
        sources.append(slots.first!.offset..<(slots.last!.offset + slots.last!.count))
      }
      target = FloatBuffer(count: targetLayout.count)
    } else {
      target = nil
    }
    self.targetLayout = targetLayout
    targetSources = sources
    let targetBuffer = target
    func targetEncoder() -> any FeatureNetwork {
      if let conv = configuration.conv {
        return ConvNetwork(
          blocks: ConvEncoder.blocks(
            shape: conv, buffer: targetBuffer!, layout: targetLayout, prefix: "target."),
          hiddenLayers: ConvEncoder.hiddenLayers(
            shape: conv, buffer: targetBuffer!, layout: targetLayout, prefix: "target."),
          capacity: viewCapacity, reducer: statisticsReducer, runningStatistics: nil)
      }
      let layers = (0..<(widths.count - 1)).map { targetLinear("encoder.\($0)") }
      guard adapterGroups.contains(.invariant) else {
        return MLP(layers: layers, hasFinalReLU: true, capacity: viewCapacity)
      }
      return AdaptedMLP(
        layers: layers,
        adapters: (0..<(widths.count - 1)).map {
          Self.adapter(
            "target." + targetAdapterPrefix + "\($0)", in: targetBuffer!, layout: targetLayout)
        }, capacity: viewCapacity)
    }
    func targetLinear(_ prefix: String) -> Linear {
      Linear(named: "target." + prefix, in: targetLayout, buffer: targetBuffer!)
    }

    var heads: [TaskHead] = []
    for task in configuration.tasks {
      switch task {
      case .supervised:
        heads.append(
          SupervisedHead(
            classifier: trainable("supervised.classifier"), capacity: capacity, ones: ones))
      case .simclr:
        heads.append(
          SimCLRHead(
            projector: [trainable("simclr.projector.0"), trainable("simclr.projector.1")],
            temperature: configuration.temperature, capacity: viewCapacity, ones: ones))
      case .byol:
        heads.append(
          BYOLHead(
            projector: [trainable("byol.projector.0"), trainable("byol.projector.1")],
            predictor: [trainable("byol.predictor.0"), trainable("byol.predictor.1")],
            targetEncoder: targetEncoder(),
            targetProjector: [targetLinear("byol.projector.0"), targetLinear("byol.projector.1")],
            capacity: viewCapacity, ones: ones))
      case .augpred:
        heads.append(
          AugmentationPredictionHead(
            classifier: trainable("augpred.classifier"), capacity: viewCapacity, ones: ones))
      case .invariance:
        heads.append(InvarianceHead())
      }
    }
    self.heads = heads

    // Initialise every layer from its own stream, then copy the target.
    for (index, slot) in layout.slots.enumerated() where slot.name.hasSuffix(".weight") {
      var stream = RandomStream(
        seed: seed, purpose: .initialisation, counters: UInt64(index))
      if configuration.conv != nil && ConvEncoder.isBlockTensor(slot.name) {
        ConvEncoder.initialise(slot, in: parameters, stream: &stream)
        continue
      }
      linear(String(slot.name.dropLast(".weight".count))).initialise(stream: &stream)
    }
    for (index, slot) in layout.slots.enumerated() where slot.name.hasSuffix(".down") {
      var stream = RandomStream(
        seed: seed, purpose: .initialisation, counters: UInt64(index))
      Self.adapter(String(slot.name.dropLast(".down".count)), in: parameters, layout: layout)
        .initialise(stream: &stream)
    }
    copyOnlineToTarget()
  }

  deinit {
    blockSums.deallocate()
  }

  private static func appendLinear(
    _ layout: inout ParameterLayout, _ prefix: String, _ inputs: Int, _ outputs: Int
  ) {
    layout.append(prefix + ".weight", shape: [outputs, inputs])
    layout.append(prefix + ".bias", shape: [outputs])
  }

  /// Returns the adapter whose tensors are `prefix.down` and `prefix.up` in `layout`.
  private static func adapter(_ prefix: String, in buffer: FloatBuffer, layout: ParameterLayout)
    -> ResidualAdapter
  {
    let down = layout.slot(named: prefix + ".down")!
    let up = layout.slot(named: prefix + ".up")!
    return ResidualAdapter(
      down: buffer.matrix(rows: down.shape[0], columns: down.shape[1], offset: down.offset),
      up: buffer.matrix(rows: up.shape[0], columns: up.shape[1], offset: up.offset))
  }

  private static func appendHead(
    _ layout: inout ParameterLayout, task: TaskKind, configuration c: ModelConfiguration
  ) {
    switch task {
    case .supervised:
      appendLinear(
        &layout, "supervised.classifier", c.headInputSize(for: .supervised), c.classCount)
    case .simclr:
      appendLinear(&layout, "simclr.projector.0", c.featureSize, c.projectorHiddenSize)
      appendLinear(&layout, "simclr.projector.1", c.projectorHiddenSize, c.projectionSize)
    case .byol:
      appendLinear(&layout, "byol.projector.0", c.featureSize, c.projectorHiddenSize)
      appendLinear(&layout, "byol.projector.1", c.projectorHiddenSize, c.projectionSize)
      appendLinear(&layout, "byol.predictor.0", c.projectionSize, c.projectorHiddenSize)
      appendLinear(&layout, "byol.predictor.1", c.projectorHiddenSize, c.projectionSize)
    case .augpred:
      appendLinear(&layout, "augpred.classifier", c.featureSize, c.augmentationCount)
    case .invariance:
      // A loss on the features alone, without parameters.
      break
    }
  }

  /// The number of tasks.
  public var taskCount: Int { configuration.tasks.count }

  /// The losses of the last ``computeTaskGradients(batch:)``, or after the allreduce their
  /// means over ranks: T values in ``reduceBuffer``.
  public var losses: UnsafeMutableBufferPointer<Float> {
    UnsafeMutableBufferPointer(start: reduceBuffer.baseAddress + lossOffset, count: taskCount)
  }

  /// Runs the encoder and every head on `batch` and fills ``reduceBuffer`` with each task's
  /// loss and gradients on the local batch.
  public func computeTaskGradients(batch: TaskBatch) {
    let features = forward(batch: batch)
    for t in 0..<taskCount {
      computeHeadGradients(task: t, features: features, batch: batch)
    }
    backwardEncoder(rows: batch.input.rows)
  }

  /// Runs the encoder on `batch` and returns the features, `[rows, encoder.outputSize]`: the
  /// first of the three parts of ``computeTaskGradients(batch:)``.
  @discardableResult
  public func forward(batch: TaskBatch) -> Matrix {
    let rows = batch.input.rows
    let cleanRows = supervisedView == .augmented ? 0 : batch.pairCount
    let twinRows = rowsPerImage - supervisedView.rowsPerImage == 1 ? batch.pairCount : 0
    precondition(
      batch.cleanRowCount == cleanRows && batch.invariantRowCount == twinRows
        && rows == 2 * batch.pairCount + cleanRows + twinRows && rows <= capacity,
      "batch of \(rows) rows with \(batch.cleanRowCount) clean rows and "
        + "\(batch.invariantRowCount) invariance twins for supervised view "
        + "\(supervisedView.rawValue) and tasks \(configuration.tasks)")
    return encoder.forward(batch.input)
  }

  /// Computes task `task`'s loss, its head's gradients and its gradient on the features,
  /// after ``forward(batch:)``: the second part of ``computeTaskGradients(batch:)``.
  ///
  /// The head reads the view rows, for the supervised task the rows of ``supervisedView``,
  /// and for the invariance task every row, and the columns of ``featureColumns(of:)``. The
  /// task's gradient on the rows and columns it does not read is zero.
  public func computeHeadGradients(task: Int, features: Matrix, batch: TaskBatch) {
    let rows: Range<Int>
    switch heads[task].task {
    case .supervised: rows = supervisedView.rows(pairCount: batch.pairCount)
    case .invariance: rows = 0..<features.rows
    default: rows = 0..<(2 * batch.pairCount)
    }
    let columns = featureColumns(of: heads[task].task)
    let featuresGradient = encoder.featuresGradient(task: task, rows: features.rows)
    let loss = heads[task].lossAndGradients(
      features: features.rows(rows).columns(columns), batch: batch.restricted(to: rows),
      featuresGradient: featuresGradient.rows(rows).columns(columns))
    featuresGradient.rows(0..<rows.lowerBound).fill(0)
    featuresGradient.rows(rows.upperBound..<features.rows).fill(0)
    featuresGradient.columns(0..<columns.lowerBound).fill(0)
    featuresGradient.columns(columns.upperBound..<featuresGradient.columns).fill(0)
    reduceBuffer.baseAddress[lossOffset + task] = loss
  }

  /// Computes every task's encoder gradients once every head has run: the last part of
  /// ``computeTaskGradients(batch:)``.
  ///
  /// - Parameter observer: receives each region of ``reduceBuffer`` as soon as it is final.
  public func backwardEncoder(rows: Int, observer: GradientObserver? = nil) {
    encoder.backward(rows: rows, ones: ones.baseAddress, observer: observer)
  }

  /// Computes the Gram matrix of the per-task encoder gradients, `G[i][j] = g_i . g_j`
  /// (T x T, row-major, accumulated in double precision over the layers), and each task's
  /// squared gradient norm on the last encoder layer's weight.
  ///
  /// - Parameters:
  ///   - gram: T * T values, overwritten.
  ///   - lastLayerNormSquares: T values, overwritten.
  public func taskGram(into gram: inout [Double], lastLayerNormSquares: inout [Double]) {
    let t = taskCount
    for i in 0..<(t * t) { gram[i] = 0 }
    let blocks = encoder.gradientBlocks
    for (index, block) in blocks.enumerated() {
      blockGram(block)
      for i in 0..<t {
        for j in 0..<t { gram[i * t + j] += blockSums[i * t + j] }
      }
      if index == encoder.lastWeightBlockIndex {
        for i in 0..<t { lastLayerNormSquares[i] = blockSums[i * t + i] }
      }
    }
  }

  /// Computes `block block^T` (`[T, P] x [P, T]`) into `blockSums`.
  ///
  /// `cblas_sgemm` handles this shape (tiny result, huge inner dimension) poorly: it copies
  /// both operands into packed panels first. This loop reads each element once, eight lanes
  /// at a time, summing chunks of 4,096 columns in Float and the chunks in Double, which
  /// keeps the rounding error of the long sums near that of a pairwise sum.
  private func blockGram(_ block: Matrix) {
    typealias Lanes = SIMD8<Float>
    let t = block.rows
    let columns = block.columns
    let chunk = 4096
    let sums = blockSums
    sums.update(repeating: 0, count: t * t)
    var start = 0
    while start < columns {
      let end = min(start + chunk, columns)
      for i in 0..<t {
        let a = block.base + i * block.rowStride
        for j in i..<t {
          let b = block.base + j * block.rowStride
          var lanes = Lanes()
          var k = start
          while k + 8 <= end {
            let x = UnsafeRawPointer(a + k).loadUnaligned(as: Lanes.self)
            let y = UnsafeRawPointer(b + k).loadUnaligned(as: Lanes.self)
            lanes += x * y
            k += 8
          }
          var sum = Double(lanes.sum())
          while k < end {
            sum += Double(a[k]) * Double(b[k])
            k += 1
          }
          sums[i * t + j] += sum
        }
      }
      start = end
    }
    for i in 0..<t {
      for j in 0..<i { sums[i * t + j] = sums[j * t + i] }
    }
  }

  /// Fills ``update``: `sum_t coefficients[t] * g_t` on the shared encoder, each head's
  /// gradient times its task's weight, and each adapter's `sum_t w_t g_t` over the tasks
  /// (zero rows for the tasks that do not read its group).
  ///
  /// - Parameters:
  ///   - coefficients: T values; pointer to a dense Float vector.
  ///   - taskWeights: T values.
  public func formUpdate(coefficients: UnsafePointer<Float>, taskWeights: UnsafePointer<Float>) {
    var offset = 0
    for block in encoder.gradientBlocks {
      BLAS.gemv(block, transpose: true, coefficients, into: update.baseAddress + offset)
      offset += block.columns
    }
    let headGradients =
      reduceBuffer.baseAddress + headGradientStart
    for (t, range) in headRanges.enumerated() {
      let source = headGradients + (range.lowerBound - encoderParameterCount)
      let destination = update.baseAddress + range.lowerBound
      for i in 0..<range.count { destination[i] = taskWeights[t] * source[i] }
    }
    offset = adapterParameterStart
    for block in adapterGradientBlocks {
      BLAS.gemv(block, transpose: true, taskWeights, into: update.baseAddress + offset)
      offset += block.columns
    }
  }

  /// The per-task gradient blocks of the adapters, each `[T, size]`, in the order of the
  /// adapters in ``parameters``; empty without adapters.
  public var adapterGradientBlocks: [Matrix] {
    (encoder as? AdaptedEncoder)?.adapterGradientBlocks ?? []
  }

  /// Returns the columns of the encoder's output that task `task`'s head reads: the features
  /// of its groups side by side, or all of them without adapters.
  public func featureColumns(of task: TaskKind) -> Range<Int> {
    guard let adapted = encoder as? AdaptedEncoder else { return 0..<encoder.outputSize }
    let ranges = task.groups.map { adapted.columns(of: $0) }
    for (left, right) in zip(ranges, ranges.dropFirst()) {
      precondition(left.upperBound == right.lowerBound, "the groups of \(task) are not adjacent")
    }
    return ranges[0].lowerBound..<ranges[ranges.count - 1].upperBound
  }

  /// Moves the BYOL target toward the online network: `target = decay * target +
  /// (1 - decay) * online`, on the encoder, the BYOL projector and the invariant adapters.
  public func updateTarget(decay: Float) {
    guard let target else { return }
    var offset = 0
    for source in targetSources {
      movingAverage(
        target.baseAddress + offset, parameters.baseAddress + source.lowerBound,
        count: source.count, decay: decay)
      offset += source.count
    }
  }

  private func movingAverage(
    _ average: UnsafeMutablePointer<Float>, _ value: UnsafePointer<Float>, count: Int,
    decay: Float
  ) {
    let keep = 1 - decay
    for i in 0..<count { average[i] = decay * average[i] + keep * value[i] }
  }

  /// Sets the BYOL target to the online network's encoder, projector and invariant adapters.
  public func copyOnlineToTarget() {
    guard let target else { return }
    var offset = 0
    for source in targetSources {
      (target.baseAddress + offset).update(
        from: parameters.baseAddress + source.lowerBound, count: source.count)
      offset += source.count
    }
  }
}
