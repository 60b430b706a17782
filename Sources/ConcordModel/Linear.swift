import ConcordTensors

/// A fully connected layer, `y = x W^T + b`, as PyTorch's `nn.Linear`.
///
/// The layer owns no memory: its weight and bias are views into the model's
/// parameter buffer. Gradients go to views that the caller passes, usually
/// into the buffer that the ranks allreduce.
public struct Linear {
  /// The number of input features.
  public let inputSize: Int
  /// The number of output features.
  public let outputSize: Int
  /// The weight, `[outputSize, inputSize]`.
  public let weight: Matrix
  /// The bias, `[1, outputSize]`.
  public let bias: Matrix

  /// Creates a layer over existing views.
  public init(weight: Matrix, bias: Matrix) {
    precondition(
      bias.rows == 1 && bias.columns == weight.rows,
      "bias must be [1, \(weight.rows)], got [\(bias.rows), \(bias.columns)]")
    self.inputSize = weight.columns
    self.outputSize = weight.rows
    self.weight = weight
    self.bias = bias
  }

  /// Computes `output = input W^T + b`.
  ///
  /// - Parameters:
  ///   - input: `[n, inputSize]`.
  ///   - output: `[n, outputSize]`, overwritten.
  public func forward(_ input: Matrix, into output: Matrix) {
    for r in 0..<output.rows {
      (output.base + r * output.rowStride).update(from: bias.base, count: outputSize)
    }
    BLAS.gemm(input, weight, transposeB: true, into: output, beta: 1)
  }

  /// Computes the parameter gradients and, if requested, the input gradient.
  ///
  /// - Parameters:
  ///   - input: the `[n, inputSize]` input of the forward pass.
  ///   - outputGradient: `[n, outputSize]`, the loss gradient with respect to the output.
  ///   - weightGradient: `[outputSize, inputSize]`, overwritten.
  ///   - biasGradient: `[1, outputSize]`, dense, overwritten.
  ///   - inputGradient: `[n, inputSize]`, overwritten with the loss gradient with respect to
  ///     the input; nil when nothing flows further back.
  ///   - ones: at least `n` ones, used to sum the rows of `outputGradient` for the bias.
  public func backward(
    input: Matrix, outputGradient: Matrix, weightGradient: Matrix, biasGradient: Matrix,
    inputGradient: Matrix?, ones: UnsafePointer<Float>
  ) {
    BLAS.gemm(outputGradient, transposeA: true, input, into: weightGradient)
    BLAS.gemv(outputGradient, transpose: true, ones, into: biasGradient.base)
    if let inputGradient {
      BLAS.gemm(outputGradient, weight, into: inputGradient)
    }
  }

  /// Fills the weight and bias as PyTorch's default initialisation does: uniform in
  /// `[-1/sqrt(inputSize), 1/sqrt(inputSize)]` (Kaiming uniform with `a = sqrt(5)`).
  public func initialise(stream: inout RandomStream) {
    let bound = 1 / Float(inputSize).squareRoot()
    for r in 0..<weight.rows {
      for c in 0..<weight.columns { weight[r, c] = stream.uniform(in: -bound...bound) }
    }
    for c in 0..<bias.columns { bias[0, c] = stream.uniform(in: -bound...bound) }
  }
}

/// Rectified linear unit, applied in place.
public enum ReLU {
  /// Replaces every negative element of `matrix` by zero.
  public static func forward(_ matrix: Matrix) {
    for r in 0..<matrix.rows {
      let row = matrix.base + r * matrix.rowStride
      // A select rather than a branch, so that the loop vectorizes; NaN stays NaN.
      for c in 0..<matrix.columns { row[c] = row[c] < 0 ? 0 : row[c] }
    }
  }

  /// Zeroes the elements of `gradient` where `output` (the forward result) is not positive.
  ///
  /// `gradient` may be wider than `output`: its columns are taken as blocks of
  /// `output.columns`, one per task, all masked alike.
  public static func backward(output: Matrix, gradient: Matrix) {
    precondition(
      gradient.rows == output.rows && gradient.columns % output.columns == 0,
      "ReLU gradient [\(gradient.rows), \(gradient.columns)] vs output [\(output.rows), \(output.columns)]"
    )
    let blocks = gradient.columns / output.columns
    let width = output.columns
    for r in 0..<output.rows {
      let mask = output.base + r * output.rowStride
      for b in 0..<blocks {
        let row = gradient.base + r * gradient.rowStride + b * width
        for c in 0..<width { row[c] = mask[c] > 0 ? row[c] : 0 }
      }
    }
  }
}
