import ConcordTensors

/// A stack of ``Linear`` layers with ReLU between them, and optionally after the last.
///
/// The network keeps the activations of its last forward pass, for up to `capacity`
/// rows, in buffers allocated once, so that neither pass allocates.
public final class MLP {
  /// The layers, input side first.
  public let layers: [Linear]
  /// Whether a ReLU follows the last layer too.
  public let hasFinalReLU: Bool
  /// The largest batch the preallocated activations hold.
  public let capacity: Int
  /// The outputs of each layer for the last forward pass, `[rows, width]` each.
  public private(set) var activations: [Matrix]
  private let activationStorage: [Matrix]
  private let deltaStorage: [Matrix]
  /// The input of the last forward pass.
  private(set) var lastInput: Matrix?

  /// Creates the network over existing layers, with room for `capacity` rows.
  public init(layers: [Linear], hasFinalReLU: Bool, capacity: Int) {
    precondition(!layers.isEmpty, "an MLP needs at least one layer")
    for (a, b) in zip(layers, layers.dropFirst()) {
      precondition(a.outputSize == b.inputSize, "layer widths \(a.outputSize) and \(b.inputSize)")
    }
    self.layers = layers
    self.hasFinalReLU = hasFinalReLU
    self.capacity = capacity
    activationStorage = layers.map { Matrix(rows: capacity, columns: $0.outputSize) }
    deltaStorage = layers.map { Matrix(rows: capacity, columns: $0.outputSize) }
    activations = activationStorage
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
    lastInput = input
    var x = input
    for (i, layer) in layers.enumerated() {
      let y = activationStorage[i].rows(0..<input.rows)
      activations[i] = y
      layer.forward(x, into: y)
      if i < layers.count - 1 || hasFinalReLU { ReLU.forward(y) }
      x = y
    }
    return x
  }

  /// Back-propagates `outputGradient` through the last forward pass.
  ///
  /// - Parameters:
  ///   - outputGradient: `[n, outputSize]`; when ``hasFinalReLU`` it is masked in place.
  ///   - gradients: one `(weight, bias)` gradient pair per layer, overwritten.
  ///   - inputGradient: `[n, inputSize]`, overwritten; nil when nothing flows further back.
  ///   - ones: at least `n` ones.
  public func backward(
    outputGradient: Matrix, gradients: [(weight: Matrix, bias: Matrix)], inputGradient: Matrix?,
    ones: UnsafePointer<Float>
  ) {
    guard let input = lastInput else { preconditionFailure("backward before forward") }
    precondition(gradients.count == layers.count, "one gradient pair per layer")
    let n = input.rows
    var delta = outputGradient
    for i in stride(from: layers.count - 1, through: 0, by: -1) {
      if i < layers.count - 1 || hasFinalReLU {
        ReLU.backward(output: activations[i], gradient: delta)
      }
      let below = i == 0 ? inputGradient : deltaStorage[i - 1].rows(0..<n)
      layers[i].backward(
        input: i == 0 ? input : activations[i - 1], outputGradient: delta,
        weightGradient: gradients[i].weight, biasGradient: gradients[i].bias,
        inputGradient: below, ones: ones)
      if let below { delta = below }
    }
  }
}
