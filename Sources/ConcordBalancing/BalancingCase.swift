import Foundation

/// One balancing step written out in full: the per-task gradients and everything a balancer
/// reads, so that the step can be replayed outside a training run.
///
/// The JSON form is
/// `{"balancer": "pcgrad", "gradients": [[…], …], "losses": […], "initial_losses": […],
/// "weights": […], "alpha": 1.5, "weight_lr": 0.025, "order": [[…], …]}`.
/// `order` lists, for each task `i`, the other tasks in the order PCGrad visits them. Without
/// it the order of step 0 with seed 0 is used. `losses`, `initial_losses`, `weights`, `alpha`
/// and `weight_lr` matter only to GradNorm, and weights default to 1. The other balancers
/// keep every weight at 1 by definition and ignore `weights`. GradNorm's norms are taken
/// over ``gradNormRange`` of each vector, the whole vector in the JSON form.
public struct BalancingCase: Sendable {
  /// The balancer to run.
  public var balancer: BalancerKind
  /// The per-task gradients on the shared parameters, `T` vectors of equal length.
  public var gradients: [[Float]]
  /// The reduced per-task losses, `T` values or empty.
  public var losses: [Double]
  /// GradNorm's initial losses `L_t(0)`, `T` values, or nil to take them from `losses`.
  public var initialLosses: [Double]?
  /// The task weights before this step, `T` values.
  public var weights: [Double]
  /// GradNorm's asymmetry.
  public var alpha: Double
  /// GradNorm's weight learning rate.
  public var weightLearningRate: Double
  /// PCGrad's order, `T` rows of the other tasks.
  public var order: [[Int]]
  /// The elements of each gradient that GradNorm's norm covers.
  public var gradNormRange: Range<Int>

  /// Creates a case from its parts, checking every size and value.
  ///
  /// - Throws: ``BalancingCaseError`` naming the field at fault.
  public init(
    balancer: BalancerKind, gradients: [[Float]], losses: [Double] = [],
    initialLosses: [Double]? = nil, weights: [Double]? = nil,
    alpha: Double = GradNorm.defaultAlpha,
    weightLearningRate: Double = GradNorm.defaultWeightLearningRate, order: [[Int]]? = nil,
    gradNormRange: Range<Int>? = nil
  ) throws {
    let t = gradients.count
    guard t > 0 else { throw BalancingCaseError("gradients is empty: give one vector per task") }
    let length = gradients[0].count
    guard length > 0, gradients.allSatisfy({ $0.count == length }) else {
      throw BalancingCaseError(
        "gradients have lengths \(Set(gradients.map(\.count)).sorted()): give vectors of one "
          + "non-zero length")
    }
    for (task, vector) in gradients.enumerated() {
      if let index = vector.firstIndex(where: { !$0.isFinite }) {
        throw BalancingCaseError(
          "gradients[\(task)][\(index)] is \(vector[index]) as a 32-bit float: give finite values "
            + "within ±3.4e38")
      }
    }
    let usesGradNorm = balancer == .gradnorm || balancer == .pcgradGradnorm
    if usesGradNorm {
      guard losses.count == t else {
        throw BalancingCaseError("losses has \(losses.count) values, expected \(t), one per task")
      }
    }
    if let initialLosses, initialLosses.count != t {
      throw BalancingCaseError(
        "initial_losses has \(initialLosses.count) values, expected \(t), one per task")
    }
    let weights = weights ?? [Double](repeating: 1, count: t)
    guard weights.count == t else {
      throw BalancingCaseError("weights has \(weights.count) values, expected \(t), one per task")
    }
    if usesGradNorm {
      guard weights.allSatisfy({ $0 > 0 && $0.isFinite }) else {
        throw BalancingCaseError("weights \(weights) must be positive and finite")
      }
    }
    guard alpha >= 0, alpha.isFinite else {
      throw BalancingCaseError("alpha \(alpha) must be a finite number >= 0")
    }
    guard weightLearningRate > 0, weightLearningRate.isFinite else {
      throw BalancingCaseError("weight_lr \(weightLearningRate) must be a finite number > 0")
    }
    let order = order ?? PCGrad.taskOrder(seed: 0, step: 0, taskCount: t)
    guard order.count == t else {
      throw BalancingCaseError("order has \(order.count) rows, expected \(t), one per task")
    }
    for (i, row) in order.enumerated() {
      guard row.sorted() == (0..<t).filter({ $0 != i }) else {
        throw BalancingCaseError(
          "order row \(i) is \(row): list every task other than \(i) once")
      }
    }
    let range = gradNormRange ?? 0..<length
    guard range.lowerBound >= 0, range.upperBound <= length, !range.isEmpty else {
      throw BalancingCaseError("GradNorm range \(range) lies outside the \(length) elements")
    }
    self.balancer = balancer
    self.gradients = gradients
    self.losses = losses
    self.initialLosses = initialLosses
    self.weights = weights
    self.alpha = alpha
    self.weightLearningRate = weightLearningRate
    self.order = order
    self.gradNormRange = range
  }

  /// Reads the JSON form.
  ///
  /// - Throws: ``BalancingCaseError`` for invalid JSON, a missing or mistyped field, or
  ///   sizes that do not agree.
  public init(json: Data) throws {
    let object: Any
    do {
      object = try JSONSerialization.jsonObject(with: json)
    } catch {
      // Foundation's localized text is a generic sentence; its debug text has the position.
      let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String
      throw BalancingCaseError(
        "invalid JSON\(detail.map { " (\($0))" } ?? ""): give one JSON object such as "
          + "{\"balancer\": \"pcgrad\", \"gradients\": [[1, 2], [-2, 0.5]]}")
    }
    guard let fields = object as? [String: Any] else {
      throw BalancingCaseError(
        "the JSON is not an object: give {\"balancer\": …, \"gradients\": …}")
    }
    let known: Set = [
      "balancer", "gradients", "losses", "initial_losses", "weights", "alpha", "weight_lr",
      "order", "expected", "source",
    ]
    if let unknown = fields.keys.sorted().first(where: { !known.contains($0) }) {
      throw BalancingCaseError(
        "unknown key \"\(unknown)\": valid keys are \(known.sorted().joined(separator: ", "))")
    }
    let raw: RawCase
    do {
      raw = try JSONDecoder().decode(RawCase.self, from: json)
    } catch let error as DecodingError {
      throw BalancingCaseError(Self.describe(error))
    }
    guard let name = raw.balancer else {
      throw BalancingCaseError("\"balancer\" is missing: give one of \(Self.balancerNames)")
    }
    guard let kind = BalancerKind(rawValue: name) else {
      throw BalancingCaseError("unknown balancer \"\(name)\": give one of \(Self.balancerNames)")
    }
    guard let gradients = raw.gradients else {
      throw BalancingCaseError("\"gradients\" is missing: give one array of numbers per task")
    }
    try self.init(
      balancer: kind, gradients: gradients.map { $0.map(Float.init) }, losses: raw.losses ?? [],
      initialLosses: raw.initialLosses, weights: raw.weights,
      alpha: raw.alpha ?? GradNorm.defaultAlpha,
      weightLearningRate: raw.weightLearningRate ?? GradNorm.defaultWeightLearningRate,
      order: raw.order)
  }

  /// The JSON form as it is spelled, every field optional so that a missing one gets its
  /// own message.
  private struct RawCase: Decodable {
    var balancer: String?
    var gradients: [[Double]]?
    var losses: [Double]?
    var initialLosses: [Double]?
    var weights: [Double]?
    var alpha: Double?
    var weightLearningRate: Double?
    var order: [[Int]]?

    enum CodingKeys: String, CodingKey {
      case balancer, gradients, losses, weights, alpha, order
      case initialLosses = "initial_losses"
      case weightLearningRate = "weight_lr"
    }
  }

  private static var balancerNames: String {
    BalancerKind.allCases.map(\.rawValue).joined(separator: ", ")
  }

  /// Describes a decoding error in one line, naming the field by its JSON path.
  private static func describe(_ error: DecodingError) -> String {
    func path(_ codingPath: [CodingKey]) -> String {
      var text = ""
      for key in codingPath {
        if let index = key.intValue {
          text += "[\(index)]"
        } else {
          text += text.isEmpty ? key.stringValue : "." + key.stringValue
        }
      }
      return text
    }
    switch error {
    case .typeMismatch(let type, let context):
      var expected = "a number"
      if type == String.self {
        expected = "a string"
      } else if type == Int.self {
        expected = "a whole number"
      }
      return "\"\(path(context.codingPath))\" must be \(expected) or an array of them"
    case .valueNotFound(_, let context):
      return "\"\(path(context.codingPath))\" is null: give a value"
    case .dataCorrupted(let context):
      return context.codingPath.isEmpty
        ? "invalid JSON: \(context.debugDescription)"
        : "\"\(path(context.codingPath))\" is invalid: \(context.debugDescription)"
    case .keyNotFound(let key, _):
      return "\"\(key.stringValue)\" is missing"
    @unknown default:
      return "invalid JSON"
    }
  }

  /// The outcome of a replayed step.
  public struct Replay: Sendable {
    /// The update direction on the shared parameters, `sum_t c_t g_t`.
    public var direction: [Double]
    /// Everything the balancer computed: coefficients, weights, projections, cosines.
    public var result: BalancingResult
  }

  /// Runs the balancer once on this step.
  public func replay() -> Replay {
    let t = gradients.count
    let gram = BalancingInput.gram(of: gradients)
    let normSquares = gradients.map { vector in
      vector[gradNormRange].reduce(0.0) { $0 + Double($1) * Double($1) }
    }
    var balancer = balancer.makeBalancer(
      taskCount: t, alpha: alpha, weightLearningRate: weightLearningRate)
    if self.balancer == .gradnorm || self.balancer == .pcgradGradnorm {
      balancer.taskWeights = weights
      balancer.initialLosses = initialLosses
    }
    let input = BalancingInput(
      taskCount: t, gram: gram, gradNormSquares: normSquares, losses: losses, taskOrder: order)
    let result = balancer.balance(input)
    var direction = [Double](repeating: 0, count: gradients[0].count)
    for (task, vector) in gradients.enumerated() {
      let c = result.coefficients[task]
      for k in 0..<vector.count { direction[k] += c * Double(vector[k]) }
    }
    return Replay(direction: direction, result: result)
  }
}

/// An invalid balancing case, with a one-line message that names the field.
public struct BalancingCaseError: Error, CustomStringConvertible {
  /// The message, one line.
  public let description: String

  /// Creates an error with a one-line message.
  public init(_ description: String) {
    self.description = description
  }
}
