import ConcordTensors

/// Receives regions of a gradient buffer as soon as their values are final.
public protocol GradientObserver: AnyObject {
  /// Called once per region, in the order the regions become final.
  func gradientsReady(_ start: UnsafeMutablePointer<Float>, count: Int)
}

/// The encoder that all tasks share, with a backward pass that gives each task its own gradient.
///
/// PCGrad and GradNorm need one gradient per task on the shared parameters, so
/// the backward pass runs once per task. Here the T tasks run it together: the
/// gradients of the encoder output are stacked side by side, task t in columns
/// `t * width ..< (t + 1) * width` of one `[n, T * width]` matrix. One GEMM per
/// layer then gives the weight gradients of all tasks, laid out `[T * outputs, inputs]`,
/// which is task after task, each a contiguous `[outputs, inputs]` block, and one GEMM
/// propagates the deltas of all tasks to the layer below.
///
/// Per-task gradients live in a caller-provided region (the buffer that the
/// ranks allreduce), layer by layer: the weight block `[T, outputs * inputs]`,
/// then the bias block `[T, outputs]`.
public final class SharedEncoder {
  /// The network; a ReLU follows every layer.
  public let network: MLP
  /// The number of tasks whose gradients the backward pass computes.
  public let taskCount: Int
  /// The per-task gradient blocks, two per layer (weight, then bias), each `[T, size]`.
  public let gradientBlocks: [Matrix]
  private let wideDeltas: [Matrix]

  /// Returns the number of floats of per-task gradient storage for `widths` and `taskCount`
  /// tasks.
  public static func gradientCount(widths: [Int], taskCount: Int) -> Int {
    zip(widths, widths.dropFirst()).reduce(0) { $0 + taskCount * ($1.1 * $1.0 + $1.1) }
  }

  /// Creates the encoder over `layers`, for batches of up to `capacity` rows.
  ///
  /// - Parameters:
  ///   - gradients: the start of ``gradientCount(widths:taskCount:)`` floats for the per-task
  ///     gradients.
  ///   - owner: the buffer that owns `gradients`.
  public convenience init(
    layers: [Linear], taskCount: Int, capacity: Int, gradients: UnsafeMutablePointer<Float>,
    owner: FloatBuffer
  ) {
    self.init(
      network: MLP(layers: layers, hasFinalReLU: true, capacity: capacity), taskCount: taskCount,
      gradients: gradients, owner: owner)
  }

  /// Creates the encoder over `network`, whose every layer must be followed by ReLU.
  ///
  /// - Parameters:
  ///   - gradients: the start of ``gradientCount(widths:taskCount:)`` floats for the per-task
  ///     gradients.
  ///   - owner: the buffer that owns `gradients`.
  public init(
    network: MLP, taskCount: Int, gradients: UnsafeMutablePointer<Float>, owner: FloatBuffer
  ) {
    precondition(network.hasFinalReLU, "the shared encoder's layers all end in ReLU")
    self.network = network
    self.taskCount = taskCount
    wideDeltas = network.layers.map {
      Matrix(rows: network.capacity, columns: taskCount * $0.outputSize)
    }
    var blocks: [Matrix] = []
    var offset = gradients
    for layer in network.layers {
      let weightCount = layer.outputSize * layer.inputSize
      blocks.append(Matrix(owner: owner, base: offset, rows: taskCount, columns: weightCount))
      offset += taskCount * weightCount
      blocks.append(Matrix(owner: owner, base: offset, rows: taskCount, columns: layer.outputSize))
      offset += taskCount * layer.outputSize
    }
    gradientBlocks = blocks
  }

  /// The number of output features.
  public var outputSize: Int { network.outputSize }

  /// Runs the encoder on `input` (`[n, inputSize]`) and returns the features `[n, outputSize]`.
  @discardableResult
  public func forward(_ input: Matrix) -> Matrix { network.forward(input) }

  /// Returns the view where task `task` writes the gradient of its loss with respect to the
  /// features of the last forward pass: a `[rows, outputSize]` view with a row stride of
  /// `taskCount * outputSize`.
  public func featuresGradient(task: Int, rows: Int) -> Matrix {
    let width = outputSize
    return wideDeltas[wideDeltas.count - 1].rows(0..<rows).columns(
      task * width..<(task + 1) * width)
  }

  /// Computes every task's gradient on every encoder parameter from the features gradients.
  ///
  /// The gradients become final layer by layer, from the last layer to the first. When an
  /// `observer` is given, it hears of each region as soon as it is final, so that its
  /// allreduce can start while the rest of the backward pass runs. The first layer's weight
  /// gradients, the largest block and the last to be computed, are then computed and reported
  /// task by task, so that only the last task's share waits at the end.
  ///
  /// - Parameters:
  ///   - rows: the batch size of the last forward pass.
  ///   - ones: at least `rows` ones.
  ///   - observer: receives each final region of the gradient storage, in order.
  public func backward(
    rows: Int, ones: UnsafePointer<Float>, observer: GradientObserver? = nil
  ) {
    backward(rows: rows, ones: ones, observer: observer, inputGradient: nil)
  }

  /// Computes every task's gradient on every encoder parameter as
  /// ``backward(rows:ones:observer:)`` does, and every task's gradient of the network's input.
  ///
  /// - Parameter inputGradient: `[rows, T * inputSize]`, dense, where the tasks' gradients of
  ///   the input go, task after task in each row, or nil when nothing flows further back.
  public func backward(
    rows: Int, ones: UnsafePointer<Float>, observer: GradientObserver?, inputGradient: Matrix?
  ) {
    let layers = network.layers
    for i in stride(from: layers.count - 1, through: 0, by: -1) {
      let layer = layers[i]
      let delta = wideDeltas[i].rows(0..<rows)
      ReLU.backward(output: network.activations[i], gradient: delta)
      let input = i == 0 ? networkInput(rows: rows) : network.activations[i - 1]
      let weightBlock = gradientBlocks[2 * i]
      let biasBlock = gradientBlocks[2 * i + 1]

      // All tasks' weight gradients at once: [T * outputs, n] x [n, inputs], task after task.
      let weights = Matrix(
        owner: weightBlock.owner, base: weightBlock.base, rows: taskCount * layer.outputSize,
        columns: layer.inputSize)
      BLAS.gemv(delta, transpose: true, ones, into: biasBlock.base)
      if i == 0, let observer {
        observer.gradientsReady(biasBlock.base, count: biasBlock.count)
        for t in 0..<taskCount {
          let outputs = t * layer.outputSize..<(t + 1) * layer.outputSize
          BLAS.gemm(delta.columns(outputs), transposeA: true, input, into: weights.rows(outputs))
          observer.gradientsReady(weightBlock.row(t).baseAddress!, count: weightBlock.columns)
        }
      } else {
        BLAS.gemm(delta, transposeA: true, input, into: weights)
        // The weight block and the bias block follow each other in the storage.
        observer?.gradientsReady(weightBlock.base, count: weightBlock.count + biasBlock.count)
      }

      // All tasks' deltas at once: the [n, T * outputs] deltas, read as [n * T, outputs],
      // times W give [n * T, inputs], which is the next layer's [n, T * inputs] layout.
      guard let below = i > 0 ? wideDeltas[i - 1].rows(0..<rows) : inputGradient else { break }
      precondition(
        below.isDense && below.rows == rows && below.columns == taskCount * layer.inputSize,
        "input gradient of \(below.rows) x \(below.columns), expected \(rows) x \(taskCount * layer.inputSize)"
      )
      BLAS.gemm(
        Matrix(
          owner: delta.owner, base: delta.base, rows: rows * taskCount,
          columns: layer.outputSize),
        layer.weight,
        into: Matrix(
          owner: below.owner, base: below.base, rows: rows * taskCount,
          columns: layer.inputSize))
    }
  }

  /// Reports every region of the gradient storage to `observer` in the order that
  /// ``backward(rows:ones:observer:)`` reports them, without computing anything: benchmarks
  /// use it to time the step's allreduce alone.
  public func reportRegions(to observer: GradientObserver) {
    for i in stride(from: network.layers.count - 1, through: 0, by: -1) {
      let weightBlock = gradientBlocks[2 * i]
      let biasBlock = gradientBlocks[2 * i + 1]
      if i == 0 {
        observer.gradientsReady(biasBlock.base, count: biasBlock.count)
        for t in 0..<taskCount {
          observer.gradientsReady(weightBlock.row(t).baseAddress!, count: weightBlock.columns)
        }
      } else {
        observer.gradientsReady(weightBlock.base, count: weightBlock.count + biasBlock.count)
      }
    }
  }

  private func networkInput(rows: Int) -> Matrix {
    guard let input = network.lastInput else {
      preconditionFailure("backward before forward")
    }
    precondition(input.rows == rows, "backward for \(rows) rows after a forward of \(input.rows)")
    return input
  }
}
