import ConcordTensors
import Foundation

/// The Adam optimizer over one flat parameter vector, computed as PyTorch's
/// `torch.optim.Adam` with no weight decay and no AMSGrad.
///
/// Each ``update(parameters:gradients:count:)`` increments the step `t` and then, for every
/// coordinate with gradient `g`,
///
/// ```
/// m <- m + (1 - beta1) (g - m)              first moment (PyTorch's lerp form)
/// v <- beta2 v + (1 - beta2) g^2            second moment
/// p <- p - (lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + epsilon)
/// ```
///
/// which is `p -= lr * m_hat / (sqrt(v_hat) + epsilon)` with the bias-corrected moments
/// `m_hat = m / (1 - beta1^t)` and `v_hat = v / (1 - beta2^t)`, arranged as PyTorch arranges
/// it so that `epsilon` is added to the corrected root. The coordinates are updated in order
/// on the calling thread, so equal inputs give bit-identical results on every rank.
///
/// The moments and the step count are the whole state: store them in a checkpoint and assign
/// them back to resume.
///
/// ### References
///
/// Diederik P. Kingma and Jimmy Ba. Adam: A Method for Stochastic Optimization. ICLR 2015.
/// arXiv:1412.6980.
public final class Adam {
  /// The number of parameters, the length of every vector this optimizer updates.
  public let parameterCount: Int
  /// The step size `lr`, which a schedule may change before any update.
  public var learningRate: Float
  /// The decay rate of the first moment.
  public let beta1: Float
  /// The decay rate of the second moment.
  public let beta2: Float
  /// The constant added to the bias-corrected root of the second moment.
  public let epsilon: Float

  /// The first-moment estimate `m`, `[parameterCount]`.
  ///
  /// A replacement must have the same count.
  public var firstMoment: FloatBuffer {
    didSet { checkCount(of: firstMoment, name: "firstMoment") }
  }
  /// The second-moment estimate `v`, `[parameterCount]`.
  ///
  /// A replacement must have the same count.
  public var secondMoment: FloatBuffer {
    didSet { checkCount(of: secondMoment, name: "secondMoment") }
  }
  /// The number of updates taken so far, `t`, which is 0 before the first update.
  public var stepCount: Int

  /// Creates an optimizer with zero moments and a step count of 0.
  ///
  /// - Parameters:
  ///   - parameterCount: The length of the flat parameter vector.
  ///   - learningRate: The step size (default 1e-3, as in PyTorch).
  ///   - beta1: The first-moment decay rate in `[0, 1)` (default 0.9).
  ///   - beta2: The second-moment decay rate in `[0, 1)` (default 0.999).
  ///   - epsilon: The non-negative constant added to the denominator (default 1e-8).
  public init(
    parameterCount: Int, learningRate: Float = 1e-3, beta1: Float = 0.9, beta2: Float = 0.999,
    epsilon: Float = 1e-8
  ) {
    precondition(parameterCount >= 0, "Adam parameterCount must be >= 0, got \(parameterCount)")
    precondition(learningRate >= 0, "Adam learningRate must be >= 0, got \(learningRate)")
    precondition(beta1 >= 0 && beta1 < 1, "Adam beta1 must be in [0, 1), got \(beta1)")
    precondition(beta2 >= 0 && beta2 < 1, "Adam beta2 must be in [0, 1), got \(beta2)")
    precondition(epsilon >= 0, "Adam epsilon must be >= 0, got \(epsilon)")
    self.parameterCount = parameterCount
    self.learningRate = learningRate
    self.beta1 = beta1
    self.beta2 = beta2
    self.epsilon = epsilon
    firstMoment = FloatBuffer(count: parameterCount)
    secondMoment = FloatBuffer(count: parameterCount)
    stepCount = 0
  }

  /// Takes one Adam step on `parameters` in place, using `gradients`.
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
      "Adam.update: count \(count) differs from parameterCount \(parameterCount)")
    stepCount += 1

    // The bias corrections in Double, as PyTorch computes them from Python floats.
    let t = Double(stepCount)
    let biasCorrection1 = 1 - pow(Double(beta1), t)
    let biasCorrection2 = 1 - pow(Double(beta2), t)
    let stepSize = Float(Double(learningRate) / biasCorrection1)
    let correction2Root = Float(biasCorrection2.squareRoot())

    let oneMinusBeta1 = 1 - beta1
    let oneMinusBeta2 = 1 - beta2
    let m = firstMoment.baseAddress
    let v = secondMoment.baseAddress

    // Eight lanes at a time: each lane does the same IEEE operations in the same order as
    // the scalar tail, so the result does not depend on where the vector part ends.
    typealias Lanes = SIMD8<Float>
    let width = Lanes.scalarCount
    var i = 0
    while i + width <= count {
      let g = UnsafeRawPointer(gradients + i).loadUnaligned(as: Lanes.self)
      var mi = UnsafeRawPointer(m + i).loadUnaligned(as: Lanes.self)
      var vi = UnsafeRawPointer(v + i).loadUnaligned(as: Lanes.self)
      var p = UnsafeRawPointer(parameters + i).loadUnaligned(as: Lanes.self)
      mi += oneMinusBeta1 * (g - mi)
      vi = beta2 * vi + oneMinusBeta2 * g * g
      let denominator = vi.squareRoot() / correction2Root + epsilon
      p -= stepSize * mi / denominator
      UnsafeMutableRawPointer(m + i).storeBytes(of: mi, as: Lanes.self)
      UnsafeMutableRawPointer(v + i).storeBytes(of: vi, as: Lanes.self)
      UnsafeMutableRawPointer(parameters + i).storeBytes(of: p, as: Lanes.self)
      i += width
    }
    while i < count {
      let g = gradients[i]
      m[i] += oneMinusBeta1 * (g - m[i])
      v[i] = beta2 * v[i] + oneMinusBeta2 * g * g
      let denominator = v[i].squareRoot() / correction2Root + epsilon
      parameters[i] -= stepSize * m[i] / denominator
      i += 1
    }
  }

  private func checkCount(of buffer: FloatBuffer, name: String) {
    precondition(
      buffer.count == parameterCount,
      "Adam.\(name) must hold \(parameterCount) floats, got \(buffer.count)")
  }
}
