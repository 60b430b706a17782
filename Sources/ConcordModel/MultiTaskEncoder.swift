import ConcordTensors

/// The encoder that all tasks share, as ``MultiTaskModel`` drives it: a forward pass, and a
/// backward pass that gives every task its own gradient on every encoder parameter.
///
/// Per-task gradients live in ``gradientBlocks``, each `[T, size]` with task `t`'s share in
/// row `t`, in the order of the encoder's parameters in the model's parameter buffer.
public protocol MultiTaskEncoder: AnyObject {
  /// The number of tasks whose gradients the backward pass computes.
  var taskCount: Int { get }
  /// The number of output features.
  var outputSize: Int { get }
  /// The per-task gradient blocks, in the order of the parameters they belong to.
  var gradientBlocks: [Matrix] { get }
  /// The index in ``gradientBlocks`` of the last layer's weight, where GradNorm measures
  /// gradient norms by default.
  var lastWeightBlockIndex: Int { get }

  /// Runs the encoder in training mode on `input` (`[n, inputSize]`) and returns the features
  /// `[n, outputSize]`.
  @discardableResult
  func forward(_ input: Matrix) -> Matrix

  /// Runs the encoder as evaluation does, without changing any state and without
  /// communication, and returns the features `[n, outputSize]`.
  @discardableResult
  func forwardForEvaluation(_ input: Matrix) -> Matrix

  /// Returns the view where task `task` writes the gradient of its loss with respect to the
  /// features of the last forward pass, `[rows, outputSize]`.
  func featuresGradient(task: Int, rows: Int) -> Matrix

  /// Computes every task's gradient on every encoder parameter from the features gradients.
  ///
  /// - Parameters:
  ///   - rows: the batch size of the last forward pass.
  ///   - ones: at least `rows` ones.
  ///   - observer: receives each final region of the gradient storage, in order.
  func backward(rows: Int, ones: UnsafePointer<Float>, observer: GradientObserver?)

  /// Reports every region of the gradient storage to `observer` in the order that
  /// ``backward(rows:ones:observer:)`` reports them, without computing anything.
  func reportRegions(to observer: GradientObserver)
}

extension SharedEncoder: MultiTaskEncoder {
  /// The weight block of the last layer: weight and bias blocks alternate.
  public var lastWeightBlockIndex: Int { gradientBlocks.count - 2 }

  /// Runs the encoder as ``forward(_:)`` does: the network has no state that evaluation
  /// treats differently.
  @discardableResult
  public func forwardForEvaluation(_ input: Matrix) -> Matrix { forward(input) }
}

/// A network that computes features from inputs, as the BYOL target encoder does.
public protocol FeatureNetwork: AnyObject {
  /// Runs the network in training mode on `input` and returns its output, a view that the
  /// next forward pass overwrites.
  @discardableResult
  func forward(_ input: Matrix) -> Matrix
}

extension MLP: FeatureNetwork {}
extension ConvNetwork: FeatureNetwork {}
