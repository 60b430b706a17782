import ConcordTensors

/// The convolutional encoder that all tasks share, with a backward pass that gives each task
/// its own gradient.
///
/// A convolution on the NHWC patch matrix is a ``Linear`` layer without bias (``Im2Col``), so
/// the encoder reuses ``SharedEncoder``'s layout. The T tasks' gradients of a block's output
/// sit side by side, `[rows, T * channels]`, and one GEMM against the block's patch matrix
/// gives every task's weight gradients, `[T * outputs, 9 * inputs]`, task after task. Batch
/// normalisation and pooling work on all tasks in the same pass. Only the input gradient runs
/// per task, as one GEMM and one fold of its patch gradient, so the patch gradient needs room
/// for one task.
///
/// Fully connected layers after the blocks run as a ``SharedEncoder``, whose input gradient,
/// all tasks at once, goes back through the last block's max pooling.
///
/// Per-task gradients live in a caller-provided region, block by block: the convolution
/// weight block `[T, outputs * 9 * inputs]`, then `gamma` `[T, outputs]`, then `beta`
/// `[T, outputs]`, and then those of the fully connected layers, in the order of the
/// parameters (``appendParameters(to:shape:)``).
public final class ConvEncoder: MultiTaskEncoder {
  /// The network.
  public let network: ConvNetwork
  public let taskCount: Int
  public let gradientBlocks: [Matrix]
  /// The fully connected layers after the blocks, or nil for a global average pool.
  private let hidden: SharedEncoder?
  /// The gradient of the last block's pooled output from the fully connected layers, every
  /// task's for an image in one row, task after task.
  private let hiddenInputDelta: Matrix
  private let wideDeltas: [Matrix]
  /// The gradient of each block's input but the first, all tasks side by side.
  private let inputDeltas: [Matrix]
  private let patchGradient: FloatBuffer
  private let featuresGradients: Matrix
  private let sums: UnsafeMutablePointer<Double>
  /// The floats of patch gradient computed and folded at a time, at least one image's.
  private let foldChunkFloats: Int
  private let coefficients: UnsafeMutablePointer<Float>

  /// Appends the encoder's parameters to `layout`, named as PyTorch names them.
  ///
  /// Per block `i`: `encoder.conv.i.weight` `[outputs, 3, 3, inputs]`, `encoder.norm.i.weight`
  /// (`gamma`) and `encoder.norm.i.bias` (`beta`), `[outputs]` each. Then per fully connected
  /// layer `j`: `encoder.fc.j.weight` `[outputs, inputs]` and `encoder.fc.j.bias` `[outputs]`.
  public static func appendParameters(to layout: inout ParameterLayout, shape: ConvEncoderShape) {
    for (i, (inputs, outputs)) in channelPairs(shape).enumerated() {
      layout.append("encoder.conv.\(i).weight", shape: [outputs, 3, 3, inputs])
      layout.append("encoder.norm.\(i).weight", shape: [outputs])
      layout.append("encoder.norm.\(i).bias", shape: [outputs])
    }
    let widths = hiddenWidths(shape)
    for (j, (inputs, outputs)) in zip(widths, widths.dropFirst()).enumerated() {
      layout.append("encoder.fc.\(j).weight", shape: [outputs, inputs])
      layout.append("encoder.fc.\(j).bias", shape: [outputs])
    }
  }

  /// Returns the inputs of the first fully connected layer and the outputs of each, or an
  /// empty list for a shape without them.
  private static func hiddenWidths(_ shape: ConvEncoderShape) -> [Int] {
    shape.hiddenSizes.isEmpty ? [] : [shape.flattenedSize] + shape.hiddenSizes
  }

  /// Returns whether `name` is a tensor of the convolution blocks, which
  /// ``initialise(_:in:stream:)`` fills.
  ///
  /// The fully connected layers start as ``Linear`` does.
  public static func isBlockTensor(_ name: String) -> Bool {
    name.hasPrefix("encoder.conv.") || name.hasPrefix("encoder.norm.")
  }

  /// Returns the layout of the running statistics, which are state but not parameters:
  /// `encoder.norm.i.running_mean` and `encoder.norm.i.running_var`, `[outputs]` each.
  public static func statisticsLayout(shape: ConvEncoderShape) -> ParameterLayout {
    var layout = ParameterLayout()
    for (i, outputs) in shape.channels.enumerated() {
      layout.append("encoder.norm.\(i).running_mean", shape: [outputs])
      layout.append("encoder.norm.\(i).running_var", shape: [outputs])
    }
    return layout
  }

  /// Allocates the running statistics of `layout` (``statisticsLayout(shape:)``) as PyTorch
  /// starts them, mean 0 and variance 1, and returns them with one `(mean, variance)` pair
  /// of `[1, outputs]` views per block.
  public static func initialRunningStatistics(layout: ParameterLayout) -> (
    buffer: FloatBuffer, views: [(mean: Matrix, variance: Matrix)]
  ) {
    let buffer = FloatBuffer(count: layout.count)
    let views = layout.slots.map { buffer.matrix(rows: 1, columns: $0.count, offset: $0.offset) }
    let pairs = stride(from: 0, to: views.count, by: 2).map { (views[$0], views[$0 + 1]) }
    for (_, variance) in pairs { variance.fill(1) }
    return (buffer, pairs)
  }

  /// Returns the number of floats of per-task gradient storage for `shape` and `taskCount`.
  public static func gradientCount(shape: ConvEncoderShape, taskCount: Int) -> Int {
    channelPairs(shape).reduce(0) { $0 + taskCount * ($1.1 * 9 * $1.0 + 2 * $1.1) }
      + SharedEncoder.gradientCount(widths: hiddenWidths(shape), taskCount: taskCount)
  }

  /// Returns the blocks of `shape` over the tensors of `layout` in `buffer`, whose names are
  /// those of ``appendParameters(to:shape:)`` behind `prefix`.
  public static func blocks(
    shape: ConvEncoderShape, buffer: FloatBuffer, layout: ParameterLayout, prefix: String = ""
  ) -> [ConvBlock] {
    func view(_ name: String, rows: Int) -> Matrix {
      let slot = layout.slot(named: prefix + name)!
      return buffer.matrix(rows: rows, columns: slot.count / rows, offset: slot.offset)
    }
    return channelPairs(shape).enumerated().map { i, pair in
      ConvBlock(
        height: shape.height >> i, width: shape.width >> i, inputChannels: pair.0,
        outputChannels: pair.1, weight: view("encoder.conv.\(i).weight", rows: pair.1),
        gamma: view("encoder.norm.\(i).weight", rows: 1),
        beta: view("encoder.norm.\(i).bias", rows: 1))
    }
  }

  /// Returns the fully connected layers of `shape` over the tensors of `layout` in `buffer`,
  /// whose names are those of ``appendParameters(to:shape:)`` behind `prefix`.
  public static func hiddenLayers(
    shape: ConvEncoderShape, buffer: FloatBuffer, layout: ParameterLayout, prefix: String = ""
  ) -> [Linear] {
    shape.hiddenSizes.indices.map {
      Linear(named: prefix + "encoder.fc.\($0)", in: layout, buffer: buffer)
    }
  }

  /// Fills the parameter of `slot`, a tensor of the blocks (``isBlockTensor(_:)``), as
  /// PyTorch initialises it: a convolution weight uniform in `[-1/sqrt(fanIn), 1/sqrt(fanIn)]`
  /// with `fanIn = 9 * inputs`, `gamma` 1 and `beta` 0.
  public static func initialise(
    _ slot: TensorSlot, in buffer: FloatBuffer, stream: inout RandomStream
  ) {
    precondition(isBlockTensor(slot.name), "\(slot.name) is not a tensor of the blocks")
    let values = buffer.baseAddress + slot.offset
    if slot.name.hasPrefix("encoder.norm.") {
      values.update(repeating: slot.name.hasSuffix(".weight") ? 1 : 0, count: slot.count)
      return
    }
    let bound = 1 / Float(slot.count / slot.shape[0]).squareRoot()
    for i in 0..<slot.count { values[i] = stream.uniform(in: -bound...bound) }
  }

  private static func channelPairs(_ shape: ConvEncoderShape) -> [(Int, Int)] {
    Array(zip([1] + shape.channels.dropLast(), shape.channels))
  }

  /// Creates the encoder over `network`.
  ///
  /// - Parameters:
  ///   - gradients: the start of ``gradientCount(shape:taskCount:)`` floats for the per-task
  ///     gradients.
  ///   - owner: the buffer that owns `gradients`.
  ///   - foldChunkFloats: the floats of patch gradient that the backward pass computes and
  ///     folds at a time, rounded to whole images. The default, 64 Ki floats (256 KiB), fits
  ///     the L2 cache of common x86-64 cores.
  public init(
    network: ConvNetwork, taskCount: Int, gradients: UnsafeMutablePointer<Float>,
    owner: FloatBuffer, foldChunkFloats: Int = 65536
  ) {
    self.foldChunkFloats = foldChunkFloats
    self.network = network
    self.taskCount = taskCount
    let capacity = network.capacity
    let blocks = network.blocks
    wideDeltas = blocks.map {
      Matrix(rows: capacity * $0.pixels, columns: taskCount * $0.outputChannels)
    }
    inputDeltas = blocks.dropFirst().map {
      Matrix(rows: capacity * $0.pixels, columns: taskCount * $0.inputChannels)
    }
    patchGradient = FloatBuffer(
      count: blocks.dropFirst().map {
        Self.imagesPerChunk($0, capacity: capacity, floats: foldChunkFloats) * $0.pixels * 9
          * $0.inputChannels
      }.max() ?? 0)
    featuresGradients = Matrix(
      rows: network.hidden == nil ? capacity : 0, columns: taskCount * network.outputSize)
    hiddenInputDelta = Matrix(
      rows: network.hidden == nil ? 0 : capacity,
      columns: taskCount * (network.hidden?.inputSize ?? 0))
    let widest = blocks.map(\.outputChannels).max()!
    sums = .allocate(capacity: 2 * taskCount * widest)
    coefficients = .allocate(capacity: 3 * taskCount * widest)

    var result: [Matrix] = []
    var offset = gradients
    for block in blocks {
      for columns in [block.weight.count, block.outputChannels, block.outputChannels] {
        result.append(Matrix(owner: owner, base: offset, rows: taskCount, columns: columns))
        offset += taskCount * columns
      }
    }
    hidden = network.hidden.map {
      SharedEncoder(network: $0, taskCount: taskCount, gradients: offset, owner: owner)
    }
    gradientBlocks = result + (hidden?.gradientBlocks ?? [])
  }

  deinit {
    sums.deallocate()
    coefficients.deallocate()
  }

  public var outputSize: Int { network.outputSize }

  /// The weight of the last fully connected layer, which has a weight and a bias block, or
  /// else the convolution weight of the last block, which has a weight, a `gamma` and a
  /// `beta` block.
  public var lastWeightBlockIndex: Int { gradientBlocks.count - (hidden == nil ? 3 : 2) }

  /// The floats of the buffers that the encoder and its network allocated.
  public var workspaceCount: Int {
    network.workspaceCount + (wideDeltas + inputDeltas).reduce(0) { $0 + $1.count }
      + patchGradient.count + featuresGradients.count + hiddenInputDelta.count
      + (network.hidden?.layers ?? []).reduce(0) {
        $0 + network.capacity * taskCount * $1.outputSize
      }
  }

  @discardableResult
  public func forward(_ input: Matrix) -> Matrix { network.forward(input) }

  @discardableResult
  public func forwardForEvaluation(_ input: Matrix) -> Matrix {
    network.forwardForEvaluation(input)
  }

  public func featuresGradient(task: Int, rows: Int) -> Matrix {
    if let hidden { return hidden.featuresGradient(task: task, rows: rows) }
    let width = outputSize
    return featuresGradients.rows(0..<rows).columns(task * width..<(task + 1) * width)
  }

  /// Computes every task's gradient on every encoder parameter from the features gradients,
  /// block by block from the last, and reports each block's gradients to `observer` once
  /// they are final.
  ///
  /// Every process that shares the batch must call it at the same point of the step: batch
  /// normalisation sums its gradients over the global batch.
  public func backward(rows n: Int, ones: UnsafePointer<Float>, observer: GradientObserver?) {
    let blocks = network.blocks
    let t = taskCount
    hidden?.backward(
      rows: n, ones: ones, observer: observer, inputGradient: hiddenInputDelta.rows(0..<n))
    for index in stride(from: blocks.count - 1, through: 0, by: -1) {
      let block = blocks[index]
      let channels = block.outputChannels
      let width = t * channels
      let rows = n * block.pixels
      let delta = wideDeltas[index].rows(0..<rows)

      // The gradient of the block's output, after ReLU, from the pooling above it.
      if index == blocks.count - 1, hidden != nil {
        MaxPool.backward(
          outputGradient: hiddenInputDelta.base, choices: network.choices[index], images: n,
          height: block.height, width: block.width, channels: channels, blocks: t,
          tasksPerImage: true, into: delta.base)
      } else if index == blocks.count - 1 {
        GlobalAveragePool.backward(
          outputGradient: featuresGradients.base, rowStride: featuresGradients.rowStride,
          images: n, pixels: block.pixels, width: width, into: delta.base)
      } else {
        MaxPool.backward(
          outputGradient: inputDeltas[index].base, choices: network.choices[index], images: n,
          height: block.height, width: block.width, channels: channels, blocks: t,
          into: delta.base)
      }

      // Batch normalisation: gamma and beta get the local sums, which the step's mean over
      // ranks makes global; the input gradient needs the global sums.
      BatchNorm.backwardSums(
        delta: delta.base, blocks: t, normalized: network.normalized[index].base, rows: rows,
        channels: channels, gamma: block.gamma.base, beta: block.beta.base, rectifies: true,
        into: sums, partial: coefficients)
      let gammaBlock = gradientBlocks[3 * index + 1]
      let betaBlock = gradientBlocks[3 * index + 2]
      for task in 0..<t {
        for c in 0..<channels {
          betaBlock[task, c] = Float(sums[2 * task * channels + c])
          gammaBlock[task, c] = Float(sums[(2 * task + 1) * channels + c])
        }
      }
      network.reducer.sum(sums, count: 2 * width)
      BatchNorm.backwardInput(
        delta: delta.base, blocks: t, normalized: network.normalized[index].base, rows: rows,
        channels: channels, gamma: block.gamma.base,
        inverseDeviation: network.inverseDeviations[index], sums: sums,
        count: network.globalCounts[index], coefficients: coefficients)

      // All tasks' weight gradients at once: [T * outputs, rows] x [rows, 9 * inputs].
      let weightBlock = gradientBlocks[3 * index]
      BLAS.gemm(
        delta, transposeA: true, network.patches[index].rows(0..<rows),
        into: Matrix(
          owner: weightBlock.owner, base: weightBlock.base, rows: width,
          columns: block.weight.columns))
      // The weight, gamma and beta blocks follow each other in the storage.
      observer?.gradientsReady(weightBlock.base, count: weightBlock.count + 2 * t * channels)

      // Each task's input gradient: its patch gradient, folded onto the input pixels a few
      // images at a time, while the patch gradient is still in cache.
      guard index > 0 else { break }
      let below = inputDeltas[index - 1]
      let chunk = Self.imagesPerChunk(block, capacity: n, floats: foldChunkFloats)
      for task in 0..<t {
        let taskDelta = delta.columns(task * channels..<(task + 1) * channels)
        var image = 0
        while image < n {
          let images = min(chunk, n - image)
          let patchRows = patchGradient.matrix(
            rows: images * block.pixels, columns: block.weight.columns)
          BLAS.gemm(
            taskDelta.rows(image * block.pixels..<(image + images) * block.pixels),
            block.weight, into: patchRows)
          Im2Col.fold(
            patchGradient: patchRows.base, images: images, height: block.height,
            width: block.width, channels: block.inputChannels,
            into: below.base + image * block.pixels * below.columns + task * block.inputChannels,
            pixelStride: below.columns)
          image += images
        }
      }
    }
  }

  /// Returns the images whose patch gradient of `block` fits in `floats`, at least 1 and at
  /// most `capacity`.
  private static func imagesPerChunk(_ block: ConvBlock, capacity: Int, floats: Int) -> Int {
    let floatsPerImage = block.pixels * 9 * block.inputChannels
    return max(1, min(capacity, floats / floatsPerImage))
  }

  public func reportRegions(to observer: GradientObserver) {
    hidden?.reportRegions(to: observer)
    for index in stride(from: network.blocks.count - 1, through: 0, by: -1) {
      let weightBlock = gradientBlocks[3 * index]
      let outputs = network.blocks[index].outputChannels
      observer.gradientsReady(weightBlock.base, count: weightBlock.count + 2 * taskCount * outputs)
    }
  }
}
