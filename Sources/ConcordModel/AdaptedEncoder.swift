import ConcordTensors

/// The shared MLP encoder with residual adapters for each task group: one pass per group,
/// each through the shared layers and that group's adapters (``AdaptedMLP``).
///
/// The features are the outputs of the G passes side by side, `[n, G * featureSize]`, group
/// after group in the order of ``groups``. A task's head reads the columns of its groups
/// (``TaskKind/groups``), so the supervised head reads them all.
///
/// The backward pass gives every task its own gradient, stacked as ``SharedEncoder`` stacks
/// them: for each pass, the tasks' gradients of that pass's output side by side, `[n, T *
/// width]`, so that one GEMM per layer and pass covers all tasks. A task that does not read a
/// pass has zero columns there. A task's gradient on a shared parameter is the sum over the
/// passes. Its gradient on a group's adapter comes from that group's pass alone, so it is zero
/// for tasks that do not read the group.
///
/// Per-task gradients live in a caller-provided region. The shared blocks come first, laid
/// out as ``SharedEncoder`` lays them out: per layer, the weight block `[T, outputs * inputs]`
/// and then the bias block `[T, outputs]`. The adapter blocks follow, group after group, and
/// per layer the down block `[T, rank * inputs]` and then the up block `[T, outputs * rank]`.
public final class AdaptedEncoder: MultiTaskEncoder {
  /// The task groups, one pass each, in the order of their features.
  public let groups: [TaskGroup]
  /// One pass per group; all passes share the same layers.
  public let passes: [AdaptedMLP]
  /// The number of tasks whose gradients the backward pass computes.
  public let taskCount: Int
  /// The per-task gradient blocks of the shared layers, two per layer (weight, then bias),
  /// each `[T, size]`.
  public let gradientBlocks: [Matrix]
  /// The per-task gradient blocks of the adapters, two per group and layer (down, then up),
  /// each `[T, size]`, group after group.
  public let adapterGradientBlocks: [Matrix]
  private let features: Matrix
  private let wideFeaturesGradient: Matrix
  private let passDeltas: [[Matrix]]
  private let bottleneckDeltas: [[Matrix]]

  /// Returns the number of floats of per-task gradient storage of the adapters of
  /// `groupCount` groups beside layers of `widths`, each adapter of rank `rank`.
  public static func adapterGradientCount(
    widths: [Int], rank: Int, groupCount: Int, taskCount: Int
  ) -> Int {
    let perGroup = zip(widths, widths.dropFirst()).reduce(0) { $0 + rank * ($1.0 + $1.1) }
    return groupCount * taskCount * perGroup
  }

  /// Creates the encoder for batches of up to `capacity` rows.
  ///
  /// - Parameters:
  ///   - layers: the shared layers, input side first.
  ///   - adapters: for each group of `groups`, one adapter per layer.
  ///   - gradients: the start of ``SharedEncoder/gradientCount(widths:taskCount:)`` plus
  ///     ``adapterGradientCount(widths:rank:groupCount:taskCount:)`` floats for the per-task
  ///     gradients.
  ///   - owner: the buffer that owns `gradients`.
  public init(
    layers: [Linear], groups: [TaskGroup], adapters: [[ResidualAdapter]], taskCount: Int,
    capacity: Int, gradients: UnsafeMutablePointer<Float>, owner: FloatBuffer
  ) {
    precondition(!groups.isEmpty, "an adapted encoder needs at least one task group")
    precondition(adapters.count == groups.count, "one list of adapters per group")
    self.groups = groups
    self.taskCount = taskCount
    let taskCount = taskCount
    let width = layers[layers.count - 1].outputSize
    let features = Matrix(rows: capacity, columns: groups.count * width)
    self.features = features
    wideFeaturesGradient = Matrix(rows: capacity, columns: taskCount * groups.count * width)
    passes = adapters.indices.map { g in
      AdaptedMLP(
        layers: layers, adapters: adapters[g], capacity: capacity,
        output: features.columns(g * width..<(g + 1) * width))
    }
    passDeltas = groups.map { _ in
      layers.map { Matrix(rows: capacity, columns: taskCount * $0.outputSize) }
    }
    bottleneckDeltas = adapters.map { groupAdapters in
      groupAdapters.map { Matrix(rows: capacity, columns: taskCount * $0.rank) }
    }

    var offset = gradients
    func nextBlock(columns: Int) -> Matrix {
      let block = Matrix(owner: owner, base: offset, rows: taskCount, columns: columns)
      offset += taskCount * columns
      return block
    }
    var shared: [Matrix] = []
    for layer in layers {
      shared.append(nextBlock(columns: layer.outputSize * layer.inputSize))
      shared.append(nextBlock(columns: layer.outputSize))
    }
    gradientBlocks = shared
    var adapterBlocks: [Matrix] = []
    for groupAdapters in adapters {
      for adapter in groupAdapters {
        adapterBlocks.append(nextBlock(columns: adapter.down.count))
        adapterBlocks.append(nextBlock(columns: adapter.up.count))
      }
    }
    adapterGradientBlocks = adapterBlocks
  }

  /// The floats of the buffers that the encoder and its passes allocated.
  public var workspaceCount: Int {
    let deltas = Array(passDeltas.joined()) + Array(bottleneckDeltas.joined())
    let passBuffers = passes.reduce(0) { $0 + $1.workspaceCount }
    return features.count + wideFeaturesGradient.count + deltas.reduce(0) { $0 + $1.count }
      + passBuffers
  }

  /// The number of features of one group's pass.
  public var featureSize: Int { passes[0].outputSize }

  /// The number of output features: every group's features, side by side.
  public var outputSize: Int { groups.count * featureSize }

  /// The weight block of the last layer: weight and bias blocks alternate.
  public var lastWeightBlockIndex: Int { gradientBlocks.count - 2 }

  /// Returns the columns of the output that hold `group`'s features.
  public func columns(of group: TaskGroup) -> Range<Int> {
    guard let g = groups.firstIndex(of: group) else {
      preconditionFailure("no adapters for task group \(group.rawValue)")
    }
    return g * featureSize..<(g + 1) * featureSize
  }

  /// Runs every group's pass on `input` (`[n, inputSize]`) and returns their features side by
  /// side, `[n, outputSize]`.
  @discardableResult
  public func forward(_ input: Matrix) -> Matrix {
    for pass in passes { pass.forward(input) }
    return features.rows(0..<input.rows)
  }

  /// Runs the encoder as ``forward(_:)`` does: no state differs in evaluation.
  @discardableResult
  public func forwardForEvaluation(_ input: Matrix) -> Matrix { forward(input) }

  /// Returns the view where task `task` writes the gradient of its loss with respect to the
  /// features of the last forward pass, `[rows, outputSize]`, with zeros in the columns of
  /// groups that it does not read.
  public func featuresGradient(task: Int, rows: Int) -> Matrix {
    let width = outputSize
    return wideFeaturesGradient.rows(0..<rows).columns(task * width..<(task + 1) * width)
  }

  /// Computes every task's gradient on every shared and adapter parameter from the features
  /// gradients.
  ///
  /// The gradients become final layer by layer, from the last layer to the first. When an
  /// `observer` is given, it hears of each layer's shared block and then of each group's
  /// adapter blocks of that layer, as soon as they are final.
  ///
  /// - Parameters:
  ///   - rows: the batch size of the last forward pass.
  ///   - ones: at least `rows` ones.
  ///   - observer: receives each final region of the gradient storage, in order.
  public func backward(rows: Int, ones: UnsafePointer<Float>, observer: GradientObserver?) {
    scatterFeaturesGradient(rows: rows)
    let layers = passes[0].layers
    for i in stride(from: layers.count - 1, through: 0, by: -1) {
      let layer = layers[i]
      let weightBlock = gradientBlocks[2 * i]
      let biasBlock = gradientBlocks[2 * i + 1]
      // All tasks' weight gradients at once: [T * outputs, n] x [n, inputs], task after task.
      let weights = Matrix(
        owner: weightBlock.owner, base: weightBlock.base, rows: taskCount * layer.outputSize,
        columns: layer.inputSize)
      for (g, pass) in passes.enumerated() {
        // The shared gradients sum over the passes.
        let beta: Float = g == 0 ? 0 : 1
        let delta = passDeltas[g][i].rows(0..<rows)
        ReLU.backward(output: pass.activations[i], gradient: delta)
        let input = i == 0 ? passInput(pass, rows: rows) : pass.activations[i - 1]
        BLAS.gemm(delta, transposeA: true, input, into: weights, beta: beta)
        BLAS.gemv(delta, transpose: true, ones, into: biasBlock.base, beta: beta)
        backwardAdapter(group: g, layer: i, rows: rows, input: input)
      }
      reportLayer(i, to: observer)
    }
  }

  /// Back-propagates group `g`'s stacked deltas of layer `i` through its adapter: the
  /// adapter's gradients, and the deltas of the layer below through both paths.
  private func backwardAdapter(group g: Int, layer i: Int, rows: Int, input: Matrix) {
    let pass = passes[g]
    let layer = pass.layers[i]
    let adapter = pass.adapters[i]
    let delta = passDeltas[g][i].rows(0..<rows)
    let downBlock = adapterGradientBlocks[2 * (g * pass.layers.count + i)]
    let upBlock = adapterGradientBlocks[2 * (g * pass.layers.count + i) + 1]

    // The [n, T * outputs] deltas read as [n * T, outputs], one row per row and task.
    let stackedDelta = Matrix(
      owner: delta.owner, base: delta.base, rows: rows * taskCount, columns: layer.outputSize)
    let bottleneckDelta = bottleneckDeltas[g][i].rows(0..<rows)
    let stackedBottleneckDelta = Matrix(
      owner: bottleneckDelta.owner, base: bottleneckDelta.base, rows: rows * taskCount,
      columns: adapter.rank)

    // dU = delta^T (D h), [T * outputs, n] x [n, rank], task after task.
    BLAS.gemm(
      delta, transposeA: true, pass.bottlenecks[i],
      into: Matrix(
        owner: upBlock.owner, base: upBlock.base, rows: taskCount * layer.outputSize,
        columns: adapter.rank))
    // d(D h) = delta U, [n * T, outputs] x [outputs, rank], which is [n, T * rank].
    BLAS.gemm(stackedDelta, adapter.up, into: stackedBottleneckDelta)
    // dD = d(D h)^T h, [T * rank, n] x [n, inputs], task after task.
    BLAS.gemm(
      bottleneckDelta, transposeA: true, input,
      into: Matrix(
        owner: downBlock.owner, base: downBlock.base, rows: taskCount * adapter.rank,
        columns: layer.inputSize))

    guard i > 0 else { return }
    // The layer below receives delta W + d(D h) D, stacked as [n * T, inputs].
    let below = passDeltas[g][i - 1].rows(0..<rows)
    let stackedBelow = Matrix(
      owner: below.owner, base: below.base, rows: rows * taskCount, columns: layer.inputSize)
    BLAS.gemm(stackedDelta, layer.weight, into: stackedBelow)
    BLAS.gemm(stackedBottleneckDelta, adapter.down, into: stackedBelow, beta: 1)
  }

  /// Copies each task's gradient of the side-by-side features into the stacked deltas of
  /// each pass's last layer.
  private func scatterFeaturesGradient(rows: Int) {
    let width = featureSize
    let groupCount = groups.count
    for g in 0..<groupCount {
      let top = passDeltas[g][passDeltas[g].count - 1]
      for r in 0..<rows {
        let source = wideFeaturesGradient.base + r * wideFeaturesGradient.rowStride
        let destination = top.base + r * top.rowStride
        for t in 0..<taskCount {
          (destination + t * width).update(
            from: source + (t * groupCount + g) * width, count: width)
        }
      }
    }
  }

  /// Reports layer `i`'s final regions: its shared weight and bias blocks, which follow each
  /// other, then each group's down and up blocks, which follow each other too.
  private func reportLayer(_ i: Int, to observer: GradientObserver?) {
    guard let observer else { return }
    let weightBlock = gradientBlocks[2 * i]
    let biasBlock = gradientBlocks[2 * i + 1]
    observer.gradientsReady(weightBlock.base, count: weightBlock.count + biasBlock.count)
    let layerCount = passes[0].layers.count
    for g in passes.indices {
      let downBlock = adapterGradientBlocks[2 * (g * layerCount + i)]
      let upBlock = adapterGradientBlocks[2 * (g * layerCount + i) + 1]
      observer.gradientsReady(downBlock.base, count: downBlock.count + upBlock.count)
    }
  }

  /// Reports every region of the gradient storage to `observer` in the order that
  /// ``backward(rows:ones:observer:)`` reports them, without computing anything.
  public func reportRegions(to observer: GradientObserver) {
    for i in stride(from: passes[0].layers.count - 1, through: 0, by: -1) {
      reportLayer(i, to: observer)
    }
  }

  private func passInput(_ pass: AdaptedMLP, rows: Int) -> Matrix {
    guard let input = pass.lastInput else { preconditionFailure("backward before forward") }
    precondition(input.rows == rows, "backward for \(rows) rows after a forward of \(input.rows)")
    return input
  }
}
