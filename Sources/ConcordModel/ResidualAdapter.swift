import ConcordTensors

/// A low-rank linear path beside a fully connected layer, added to the layer's
/// pre-activation.
///
/// For a layer `W: in -> out`, the down projection `D` is `[rank, in]` and the up projection
/// `U` is `[out, rank]`, and the adapted layer computes `h = ReLU(W x + b + U D x)`. `U`
/// starts at zero, so an adapted network starts out equal to the network without adapters.
/// `D` starts as PyTorch initialises a `Linear` without bias, so that the gradient of `U`
/// is not zero at the start.
///
/// Like a ``Linear``, an adapter owns no memory: `D` and `U` are views into the model's
/// parameter buffer.
///
/// ### References
/// Rebuffi, Bilen and Vedaldi, "Learning multiple visual domains with residual adapters",
/// NeurIPS 2017, who add small domain-specific modules to a shared network. Here the module is
/// a low-rank linear path in parallel with each layer.
public struct ResidualAdapter {
  /// The down projection `D`, `[rank, inputSize]`.
  public let down: Matrix
  /// The up projection `U`, `[outputSize, rank]`.
  public let up: Matrix

  /// Creates an adapter over existing views.
  public init(down: Matrix, up: Matrix) {
    precondition(
      up.columns == down.rows,
      "adapter up projection [\(up.rows), \(up.columns)] after down projection "
        + "[\(down.rows), \(down.columns)]")
    self.down = down
    self.up = up
  }

  /// The width of the low-rank path.
  public var rank: Int { down.rows }

  /// Fills `D` uniformly in `[-1/sqrt(inputSize), 1/sqrt(inputSize)]`, PyTorch's default for
  /// a `Linear` weight, and sets `U` to zero.
  public func initialise(stream: inout RandomStream) {
    let bound = 1 / Float(down.columns).squareRoot()
    for r in 0..<down.rows {
      for c in 0..<down.columns { down[r, c] = stream.uniform(in: -bound...bound) }
    }
    up.fill(0)
  }
}

/// A stack of ``Linear`` layers, each with a ``ResidualAdapter`` beside it and a ReLU after
/// it: one task group's pass through the shared encoder.
///
/// Layer `l` computes `h_l = ReLU(W_l h_{l-1} + b_l + U_l D_l h_{l-1})`. The network keeps
/// each layer's output and its adapter's bottleneck `D_l h_{l-1}` from the last forward pass,
/// for up to `capacity` rows, in buffers allocated once.
public final class AdaptedMLP: FeatureNetwork {
  /// The shared layers, input side first.
  public let layers: [Linear]
  /// The adapter beside each layer.
  public let adapters: [ResidualAdapter]
  /// The largest batch the preallocated buffers hold.
  public let capacity: Int
  /// The outputs of each layer for the last forward pass, `[rows, outputSize_l]` each.
  public private(set) var activations: [Matrix]
  /// The bottlenecks `D_l h_{l-1}` of the last forward pass, `[rows, rank_l]` each.
  public private(set) var bottlenecks: [Matrix]
  private let activationStorage: [Matrix]
  private let bottleneckStorage: [Matrix]
  /// The floats of the buffers that the network allocated, which leave out an `output` that
  /// the caller passed.
  public let workspaceCount: Int
  /// The input of the last forward pass.
  private(set) var lastInput: Matrix?

  /// Creates the network over existing layers and adapters.
  ///
  /// - Parameters:
  ///   - output: `[capacity, outputSize]` where the last layer writes, such as some columns
  ///     of a wider matrix; nil to allocate it.
  public init(
    layers: [Linear], adapters: [ResidualAdapter], capacity: Int, output: Matrix? = nil
  ) {
    precondition(!layers.isEmpty, "an adapted MLP needs at least one layer")
    precondition(adapters.count == layers.count, "one adapter per layer")
    for (layer, adapter) in zip(layers, adapters) {
      precondition(
        adapter.down.columns == layer.inputSize && adapter.up.rows == layer.outputSize,
        "adapter [\(adapter.up.rows), \(adapter.rank)] x [\(adapter.rank), "
          + "\(adapter.down.columns)] beside layer [\(layer.outputSize), \(layer.inputSize)]")
    }
    self.layers = layers
    self.adapters = adapters
    self.capacity = capacity
    var storage = layers.dropLast().map { Matrix(rows: capacity, columns: $0.outputSize) }
    let last = layers[layers.count - 1]
    if let output {
      precondition(
        output.rows == capacity && output.columns == last.outputSize,
        "output [\(output.rows), \(output.columns)], expected [\(capacity), \(last.outputSize)]")
      storage.append(output)
    } else {
      storage.append(Matrix(rows: capacity, columns: last.outputSize))
    }
    activationStorage = storage
    activations = storage
    bottleneckStorage = adapters.map { Matrix(rows: capacity, columns: $0.rank) }
    bottlenecks = bottleneckStorage
    let allocated = output == nil ? storage : storage.dropLast()
    workspaceCount = (allocated + bottleneckStorage).reduce(0) { $0 + $1.count }
  }

  /// The number of input features.
  public var inputSize: Int { layers[0].inputSize }
  /// The number of output features.
  public var outputSize: Int { layers[layers.count - 1].outputSize }

  /// Runs the network on `input` (`[n, inputSize]`, `n <= capacity`) and returns the output
  /// `[n, outputSize]`, a view that the next forward pass overwrites.
  @discardableResult
  public func forward(_ input: Matrix) -> Matrix {
    precondition(input.rows <= capacity, "batch of \(input.rows) rows exceeds \(capacity)")
    let n = input.rows
    lastInput = input
    var x = input
    for (i, layer) in layers.enumerated() {
      let y = activationStorage[i].rows(0..<n)
      let bottleneck = bottleneckStorage[i].rows(0..<n)
      activations[i] = y
      bottlenecks[i] = bottleneck
      layer.forward(x, into: y)
      BLAS.gemm(x, adapters[i].down, transposeB: true, into: bottleneck)
      BLAS.gemm(bottleneck, adapters[i].up, transposeB: true, into: y, beta: 1)
      ReLU.forward(y)
      x = y
    }
    return x
  }
}
