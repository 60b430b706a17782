import ConcordTensors

/// One block of a ``ConvNetwork``: a 3x3 convolution with padding 1 and no bias, batch
/// normalisation, ReLU, then 2x2 max pooling, or global average pooling after the last block of
/// a network without fully connected layers.
///
/// The convolution has no bias because batch normalisation subtracts any constant per channel.
public struct ConvBlock {
  /// The height of the block's input image, in pixels.
  public let height: Int
  /// The width of the block's input image, in pixels.
  public let width: Int
  /// The channels of each input pixel.
  public let inputChannels: Int
  /// The channels of each output pixel.
  public let outputChannels: Int
  /// The convolution weight, `[outputChannels, 9 * inputChannels]`: for each output channel,
  /// the 3x3 taps in row-major order, each tap's input channels contiguous.
  public let weight: Matrix
  /// The batch normalisation scale `gamma`, `[1, outputChannels]`.
  public let gamma: Matrix
  /// The batch normalisation shift `beta`, `[1, outputChannels]`.
  public let beta: Matrix

  /// The pixels of the block's input image.
  public var pixels: Int { height * width }
}

/// A stack of ``ConvBlock``s on NHWC images, ending in global average pooling, or in max
/// pooling, flattening and fully connected layers with ReLU (``hidden``).
///
/// The network keeps what its backward pass reads (each block's patch matrix, normalised
/// activations, pooling choices and batch statistics) for up to `capacity` images, in buffers
/// allocated once, so that neither pass allocates.
public final class ConvNetwork {
  /// The blocks, input side first.
  public let blocks: [ConvBlock]
  /// The fully connected layers on the last block's flattened output, with ReLU after each,
  /// or nil for a global average pool.
  public let hidden: MLP?
  /// The largest batch, in images, that the preallocated buffers hold.
  public let capacity: Int
  /// Sums the batch statistics over the processes that share the batch.
  public let reducer: BatchStatisticsReducer
  /// The running mean and variance of each block, `[1, channels]` views; nil for a network
  /// that does not track them, such as the BYOL target.
  let runningStatistics: [(mean: Matrix, variance: Matrix)]?

  /// Each block's patch matrix, `[capacity * pixels, 9 * inputChannels]`.
  let patches: [Matrix]
  /// Each block's normalised convolution output `x̂`, `[capacity * pixels, outputChannels]`.
  let normalized: [Matrix]
  /// Each block's max pooled output, `[capacity, pixels / 4 * outputChannels]`: every block
  /// but the last, and the last too when ``hidden`` flattens it.
  let pooled: [Matrix]
  /// The winning input of each pooled value, as ``MaxPool`` records it.
  let choices: [UnsafeMutablePointer<Float>]
  /// Each block's `1 / sqrt(var + eps)` of the last training forward pass, per channel.
  let inverseDeviations: [UnsafeMutablePointer<Float>]
  /// Each block's global value count per channel in the last training forward pass.
  private(set) var globalCounts: [Double]
  private let activation: FloatBuffer
  private let features: Matrix
  private let means: UnsafeMutablePointer<Float>
  private let evaluationDeviations: UnsafeMutablePointer<Float>
  private let statistics: UnsafeMutablePointer<Double>
  private let partial: UnsafeMutablePointer<Float>

  /// Creates the network over existing parameter views, for batches of up to `capacity`
  /// images.
  ///
  /// - Parameters:
  ///   - hiddenLayers: the fully connected layers after the blocks, or none for a global
  ///     average pool.
  ///   - runningStatistics: one `(mean, variance)` pair of `[1, channels]` views per block,
  ///     which training forward passes update; nil to track none.
  public init(
    blocks: [ConvBlock], hiddenLayers: [Linear] = [], capacity: Int,
    reducer: BatchStatisticsReducer, runningStatistics: [(mean: Matrix, variance: Matrix)]?
  ) {
    precondition(!blocks.isEmpty, "a convolutional network needs at least one block")
    for (a, b) in zip(blocks, blocks.dropFirst()) {
      precondition(
        a.outputChannels == b.inputChannels && a.height / 2 == b.height
          && a.width / 2 == b.width, "block shapes do not chain")
    }
    self.blocks = blocks
    hidden =
      hiddenLayers.isEmpty
      ? nil : MLP(layers: hiddenLayers, hasFinalReLU: true, capacity: capacity)
    self.capacity = capacity
    self.reducer = reducer
    self.runningStatistics = runningStatistics
    patches = blocks.map { Matrix(rows: capacity * $0.pixels, columns: 9 * $0.inputChannels) }
    normalized = blocks.map { Matrix(rows: capacity * $0.pixels, columns: $0.outputChannels) }
    pooled = blocks.dropLast(hiddenLayers.isEmpty ? 1 : 0).map {
      Matrix(rows: capacity, columns: ($0.height / 2) * ($0.width / 2) * $0.outputChannels)
    }
    choices = pooled.map {
      let pointer = UnsafeMutablePointer<Float>.allocate(capacity: $0.count)
      pointer.initialize(repeating: 0, count: $0.count)
      return pointer
    }
    let widest = blocks.map(\.outputChannels).max()!
    inverseDeviations = blocks.map {
      let pointer = UnsafeMutablePointer<Float>.allocate(capacity: $0.outputChannels)
      pointer.initialize(repeating: 1, count: $0.outputChannels)
      return pointer
    }
    globalCounts = Array(repeating: 0, count: blocks.count)
    activation = FloatBuffer(
      count: blocks.map { capacity * $0.pixels * $0.outputChannels }.max()!)
    let last = blocks[blocks.count - 1]
    precondition(
      hiddenLayers.first.map {
        $0.inputSize == (last.height / 2) * (last.width / 2) * last.outputChannels
      }
        ?? true, "the first fully connected layer does not take the last block's pooled output")
    features = Matrix(rows: hiddenLayers.isEmpty ? capacity : 0, columns: last.outputChannels)
    means = .allocate(capacity: widest)
    evaluationDeviations = .allocate(capacity: widest)
    statistics = .allocate(capacity: 2 * widest + 1)
    partial = .allocate(capacity: 2 * widest)
  }

  deinit {
    for pointer in choices { pointer.deallocate() }
    for pointer in inverseDeviations { pointer.deallocate() }
    means.deallocate()
    evaluationDeviations.deallocate()
    statistics.deallocate()
    partial.deallocate()
  }

  /// The number of input values per image.
  public var inputSize: Int { blocks[0].pixels * blocks[0].inputChannels }
  /// The number of output features.
  public var outputSize: Int { hidden?.outputSize ?? blocks[blocks.count - 1].outputChannels }
  /// The floats of the buffers that the network allocated.
  public var workspaceCount: Int {
    (patches + normalized + pooled).reduce(0) { $0 + $1.count } + activation.count
      + features.count
      + (hidden.map { $0.layers.reduce(0) { $0 + 2 * capacity * $1.outputSize } } ?? 0)
  }

  /// Runs the network in training mode on `input` (`[n, inputSize]`, `n <= capacity`): batch
  /// normalisation with the statistics of the global batch, which also move the running statistics
  /// when the network tracks them.
  ///
  /// Returns the features `[n, outputSize]`, a view that the next forward pass overwrites.
  ///
  /// Every process that shares the batch must call it at the same point of the step.
  @discardableResult
  public func forward(_ input: Matrix) -> Matrix {
    run(input, isTraining: true)
  }

  /// Runs the network in evaluation mode: batch normalisation with the running statistics,
  /// which stay as they are, and no communication.
  ///
  /// A network without running statistics normalises with mean 0 and variance 1.
  @discardableResult
  public func forwardForEvaluation(_ input: Matrix) -> Matrix {
    run(input, isTraining: false)
  }

  private func run(_ input: Matrix, isTraining: Bool) -> Matrix {
    let n = input.rows
    precondition(n <= capacity, "batch of \(n) images exceeds \(capacity)")
    precondition(
      input.columns == inputSize,
      "input of \(input.columns) values per image, expected \(inputSize)"
    )
    for (index, block) in blocks.enumerated() {
      let rows = n * block.pixels
      let channels = block.outputChannels
      let source = index == 0 ? input.base : pooled[index - 1].base
      let imageStride = index == 0 ? input.rowStride : pooled[index - 1].columns
      let blockPatches = patches[index].rows(0..<rows)
      Im2Col.patches(
        input: source, imageStride: imageStride, images: n, height: block.height,
        width: block.width, channels: block.inputChannels, into: blockPatches.base)
      let z = normalized[index].rows(0..<rows)
      BLAS.gemm(blockPatches, block.weight, transposeB: true, into: z)

      let deviation: UnsafeMutablePointer<Float>
      if isTraining {
        deviation = inverseDeviations[index]
        batchStatistics(index, z: z, rows: rows, channels: channels)
      } else {
        deviation = evaluationDeviations
        for c in 0..<channels {
          let variance = runningStatistics.map { Double($0[index].variance[0, c]) } ?? 1
          means[c] = runningStatistics?[index].mean[0, c] ?? 0
          deviation[c] = Float(1 / (variance + BatchNorm.epsilon).squareRoot())
        }
      }
      BatchNorm.normalise(
        z.base, rows: rows, channels: channels, mean: means, inverseDeviation: deviation,
        gamma: block.gamma.base, beta: block.beta.base, rectifies: true,
        output: activation.baseAddress)

      if index < pooled.count {
        MaxPool.forward(
          activation.baseAddress, images: n, height: block.height, width: block.width,
          channels: channels, into: pooled[index].base, choices: choices[index])
      } else {
        GlobalAveragePool.forward(
          activation.baseAddress, images: n, pixels: block.pixels, channels: channels,
          into: features.base, outputStride: features.rowStride)
      }
    }
    if let hidden { return hidden.forward(pooled[blocks.count - 1].rows(0..<n)) }
    return features.rows(0..<n)
  }

  /// Takes block `index`'s mean and variance over the global batch into ``means`` and
  /// ``inverseDeviations``, and moves the running statistics.
  private func batchStatistics(_ index: Int, z: Matrix, rows: Int, channels: Int) {
    BatchNorm.sums(of: z.base, rows: rows, channels: channels, into: statistics, partial: partial)
    statistics[2 * channels] = Double(rows)
    reducer.sum(statistics, count: 2 * channels + 1)
    let count = statistics[2 * channels]
    globalCounts[index] = count
    let momentum = BatchNorm.momentum
    for c in 0..<channels {
      let mean = statistics[c] / count
      let variance = max(statistics[channels + c] / count - mean * mean, 0)
      means[c] = Float(mean)
      inverseDeviations[index][c] = Float(1 / (variance + BatchNorm.epsilon).squareRoot())
      guard let running = runningStatistics?[index] else { continue }
      let unbiased = Float(variance * count / max(count - 1, 1))
      running.mean[0, c] = (1 - momentum) * running.mean[0, c] + momentum * Float(mean)
      running.variance[0, c] = (1 - momentum) * running.variance[0, c] + momentum * unbiased
    }
  }
}
