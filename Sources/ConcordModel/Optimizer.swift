import ConcordTensors

/// The optimizers that `--optimizer` selects.
public enum OptimizerKind: String, CaseIterable, Codable, Sendable {
  /// Adam (Kingma and Ba 2015), the default.
  case adam
  /// LARS (You et al. 2017): SGD with momentum and a layer-wise trust ratio.
  case lars

  /// The names of the optimizer's state vectors, each laid out like the parameters.
  ///
  /// Checkpoints store state vector `s` of tensor `p` as `<kind>.<s>.<p>`, such as
  /// `adam.first_moment.encoder.0.weight` or `lars.momentum.encoder.0.weight`.
  public var stateNames: [String] {
    switch self {
    case .adam: return ["first_moment", "second_moment"]
    case .lars: return ["momentum"]
    }
  }

  /// The state vectors among ``stateNames`` that are never negative, such as Adam's running
  /// mean of squared gradients.
  public var nonNegativeStateNames: [String] {
    switch self {
    case .adam: return ["second_moment"]
    case .lars: return []
    }
  }

  /// Returns the checkpoint name of state vector `state` of the parameter tensor `tensor`.
  public func tensorName(state: String, tensor: String) -> String {
    "\(rawValue).\(state).\(tensor)"
  }

  /// The checkpoint name of the optimizer's update counter, such as `adam.step`.
  public var stepCounterName: String { "\(rawValue).step" }
}

/// An optimizer over one flat parameter vector, laid out as a ``ParameterLayout`` describes.
///
/// The state vectors and the step count are the optimizer's whole state: store them in a
/// checkpoint and assign them back to resume.
public protocol Optimizer: AnyObject {
  /// The kind, which names the state in checkpoints.
  var kind: OptimizerKind { get }
  /// The step size, which a schedule may change before any update.
  var learningRate: Float { get set }
  /// The number of updates taken so far.
  var stepCount: Int { get set }
  /// The state vectors, in the order of ``OptimizerKind/stateNames``, each as long as the
  /// parameter vector.
  var stateBuffers: [FloatBuffer] { get }

  /// Takes one step on `parameters` in place, using `gradients`.
  ///
  /// - Parameters:
  ///   - parameters: The flat parameter vector, `count` floats, updated in place.
  ///   - gradients: The gradient of the loss at `parameters`, `count` floats.
  ///   - count: The length of the parameter vector the optimizer was made for.
  func update(parameters: UnsafeMutablePointer<Float>, gradients: UnsafePointer<Float>, count: Int)
}

extension Adam: Optimizer {
  /// ``OptimizerKind/adam``.
  public var kind: OptimizerKind { .adam }

  /// The first and the second moment.
  public var stateBuffers: [FloatBuffer] { [firstMoment, secondMoment] }
}
