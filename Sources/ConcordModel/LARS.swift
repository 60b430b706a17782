import ConcordTensors
import Foundation

/// Layer-wise Adaptive Rate Scaling: SGD with momentum whose step on each tensor is scaled by
/// a trust ratio, as SimCLR and BYOL train with large batches.
///
/// Each ``update(parameters:gradients:count:)`` treats every tensor of the layout on its own.
/// For a weight `w` (a tensor of two or more dimensions) with gradient `g`,
///
/// ```
/// ratio = eta * ||w|| / (||g|| + weightDecay * ||w||)     trust ratio, 1 if either norm is 0
/// v <- momentum * v + learningRate * ratio * (g + weightDecay * w)
/// w <- w - v
/// ```
///
/// Biases and any other one-dimensional tensor (normalisation scales and shifts) get neither
/// weight decay nor the trust ratio, as in BYOL: `v <- momentum * v + learningRate * g`.
///
/// The learning rate sits inside the momentum `v`, as in the algorithm of You et al., so a
/// schedule changes the step from the next update on without rescaling the momentum. The
/// norms are summed in Double, in a fixed order, so equal inputs give bit-identical results
/// on every rank. The trust ratio is 1 when `||w||` or the denominator is 0, so that a weight
/// that is all zeros still moves by the plain rate instead of never moving.
///
/// The momentum and the step count are the whole state: store them in a checkpoint and
/// assign them back to resume.
///
/// ### References
///
/// Yang You, Igor Gitman and Boris Ginsburg. Large Batch Training of Convolutional Networks.
/// arXiv:1708.03888, 2017.
public final class LARS: Optimizer {
  /// The momentum of SimCLR and BYOL, 0.9.
  public static let defaultMomentum: Float = 0.9
  /// The weight decay of SimCLR's LARS, 1e-6.
  public static let defaultWeightDecay: Float = 1e-6
  /// The trust coefficient `eta` of SimCLR and BYOL, 0.001.
  public static let defaultTrustCoefficient: Float = 1e-3

  /// One tensor of the layout: where it lies and whether the trust ratio and the weight decay
  /// apply to it.
  private struct Tensor {
    let range: Range<Int>
    let isAdapted: Bool
  }

  /// ``OptimizerKind/lars``.
  public var kind: OptimizerKind { .lars }
  /// The number of parameters, the length of every vector this optimizer updates.
  public let parameterCount: Int
  /// The step size, which a schedule may change before any update.
  public var learningRate: Float
  /// The decay of the momentum, in `[0, 1)`.
  public let momentum: Float
  /// The weight decay of the weights, `weightDecay * w` added to their gradient.
  public let weightDecay: Float
  /// The trust coefficient `eta`.
  public let trustCoefficient: Float
  /// The momentum `v`, `[parameterCount]`.
  public let velocity: FloatBuffer
  /// The number of updates taken so far.
  public var stepCount = 0
  /// The trust ratio of each slot of the layout at the last update; 1 for the tensors that it
  /// does not apply to.
  public private(set) var trustRatios: [Double]
  private let tensors: [Tensor]

  /// Creates an optimizer with zero momentum and a step count of 0.
  ///
  /// - Parameters:
  ///   - layout: The tensors of the parameter vector; one-dimensional ones are biases.
  ///   - learningRate: The non-negative step size.
  ///   - momentum: The momentum decay in `[0, 1)` (default 0.9).
  ///   - weightDecay: The non-negative weight decay of the weights (default 1e-6).
  ///   - trustCoefficient: The positive trust coefficient `eta` (default 0.001).
  public init(
    layout: ParameterLayout, learningRate: Float, momentum: Float = LARS.defaultMomentum,
    weightDecay: Float = LARS.defaultWeightDecay,
    trustCoefficient: Float = LARS.defaultTrustCoefficient
  ) {
    precondition(learningRate >= 0, "LARS learningRate must be >= 0, got \(learningRate)")
    precondition(momentum >= 0 && momentum < 1, "LARS momentum must be in [0, 1), got \(momentum)")
    precondition(weightDecay >= 0, "LARS weightDecay must be >= 0, got \(weightDecay)")
    precondition(trustCoefficient > 0, "LARS trustCoefficient must be > 0, got \(trustCoefficient)")
    parameterCount = layout.count
    self.learningRate = learningRate
    self.momentum = momentum
    self.weightDecay = weightDecay
    self.trustCoefficient = trustCoefficient
    velocity = FloatBuffer(count: layout.count)
    tensors = layout.slots.map {
      Tensor(range: $0.offset..<($0.offset + $0.count), isAdapted: $0.shape.count > 1)
    }
    trustRatios = Array(repeating: 1, count: layout.slots.count)
  }

  /// The momentum.
  public var stateBuffers: [FloatBuffer] { [velocity] }

  /// Takes one LARS step on `parameters` in place, using `gradients`.
  ///
  /// - Parameters:
  ///   - parameters: The flat parameter vector, `count` floats, updated in place.
  ///   - gradients: The gradient of the loss at `parameters`, `count` floats.
  ///   - count: Must equal ``parameterCount``.
  public func update(
    parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, count: Int
  ) {
    precondition(
      count == parameterCount,
      "LARS.update: count \(count) differs from parameterCount \(parameterCount)")
    stepCount += 1
    for (index, tensor) in tensors.enumerated() {
      let w = parameters + tensor.range.lowerBound
      let g = gradients + tensor.range.lowerBound
      let v = velocity.baseAddress + tensor.range.lowerBound
      let n = tensor.range.count
      guard tensor.isAdapted else {
        step(w, g, v, count: n, rate: learningRate, decay: 0)
        continue
      }
      let weightNorm = sumOfSquares(w, count: n).squareRoot()
      let denominator = sumOfSquares(g, count: n).squareRoot() + Double(weightDecay) * weightNorm
      let ratio =
        weightNorm > 0 && denominator > 0
        ? Double(trustCoefficient) * weightNorm / denominator : 1
      trustRatios[index] = ratio
      step(w, g, v, count: n, rate: Float(Double(learningRate) * ratio), decay: weightDecay)
    }
  }

  /// Applies `v <- momentum * v + rate * (g + decay * w)` and `w <- w - v` to `count` elements.
  private func step(
    _ w: UnsafeMutablePointer<Float>, _ g: UnsafePointer<Float>, _ v: UnsafeMutablePointer<Float>,
    count: Int, rate: Float, decay: Float
  ) {
    let m = momentum
    for i in 0..<count {
      v[i] = m * v[i] + rate * (g[i] + decay * w[i])
      w[i] -= v[i]
    }
  }
}

/// Returns the sum of the squares of `count` floats, accumulated in Double.
///
/// Eight lanes and then the scalar tail, always in this order, so the result depends only on
/// the values.
private func sumOfSquares(_ values: UnsafePointer<Float>, count: Int) -> Double {
  var lanes = SIMD8<Double>()
  var i = 0
  while i + Lanes.scalarCount <= count {
    let x = SIMD8<Double>(values.lanes(i))
    lanes += x * x
    i += Lanes.scalarCount
  }
  var sum = lanes.sum()
  while i < count {
    let x = Double(values[i])
    sum += x * x
    i += 1
  }
  return sum
}
