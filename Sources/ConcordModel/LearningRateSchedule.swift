import Foundation

/// The shape of a schedule over the steps of a run.
public enum ScheduleKind: String, CaseIterable, Codable, Sendable {
  /// The base value at every step.
  case constant
  /// Half a cosine period from the base value to its end value at the last step.
  case cosine
}

/// The learning rate of each step: an optional linear warm-up from 0, then constant or a
/// cosine decay to 0.
///
/// With `W` warm-up steps, `K` steps in the run and base rate `lr`, the update at step `k`
/// (counted from 0, as the checkpoints' `step`) uses
///
/// ```
/// lr * k / W                                          k < W   (warm-up)
/// lr                                                  k >= W  (constant)
/// lr * (1 + cos(pi * (k - W) / (K - W))) / 2          k >= W  (cosine)
/// ```
///
/// so the rate reaches `lr` at the end of the warm-up and the cosine reaches 0 at step `K`,
/// when the run ends. The last update, at `K - 1`, takes a small positive rate. With a
/// warm-up, the first update has rate 0. The rate depends on the step alone, so a resumed
/// run takes the rates of an uninterrupted one.
///
/// ### References
///
/// - Priya Goyal et al. Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour.
///   arXiv:1706.02677, 2017 (the linear warm-up).
/// - Ilya Loshchilov and Frank Hutter. SGDR: Stochastic Gradient Descent with Warm Restarts.
///   ICLR 2017 (the cosine decay).
public struct LearningRateSchedule: Sendable, Equatable {
  /// The decay after the warm-up.
  public var kind: ScheduleKind
  /// The rate at the end of the warm-up, `lr`.
  public var baseRate: Float
  /// The warm-up steps `W`; 0 means none.
  public var warmupSteps: Int
  /// The steps of the run `K`, where the cosine reaches 0.
  public var totalSteps: Int

  /// Creates a schedule.
  ///
  /// - Parameters:
  ///   - kind: The decay after the warm-up.
  ///   - baseRate: The non-negative rate `lr`.
  ///   - warmupSteps: The warm-up steps, from 0 to `totalSteps`.
  ///   - totalSteps: The positive step count of the run.
  public init(kind: ScheduleKind, baseRate: Float, warmupSteps: Int = 0, totalSteps: Int) {
    precondition(baseRate >= 0, "baseRate must be >= 0, got \(baseRate)")
    precondition(totalSteps > 0, "totalSteps must be > 0, got \(totalSteps)")
    precondition(
      (0...totalSteps).contains(warmupSteps),
      "warmupSteps must be in 0...\(totalSteps), got \(warmupSteps)")
    self.kind = kind
    self.baseRate = baseRate
    self.warmupSteps = warmupSteps
    self.totalSteps = totalSteps
  }

  /// Returns the rate of the update at `step`, counted from 0.
  public func rate(atStep step: Int) -> Float {
    if step < warmupSteps {
      return Float(Double(baseRate) * Double(step) / Double(warmupSteps))
    }
    switch kind {
    case .constant:
      return baseRate
    case .cosine:
      let span = totalSteps - warmupSteps
      let progress = span > 0 ? min(Double(step - warmupSteps) / Double(span), 1) : 1
      return Float(Double(baseRate) * (1 + cos(Double.pi * progress)) / 2)
    }
  }
}

/// The decay `tau` of BYOL's target network at each step: constant, or BYOL's cosine
/// increase from the base value to 1.
///
/// With base value `tau_base` and `K` steps in the run, the update at step `k` (from 0) uses
///
/// ```
/// tau_k = 1 - (1 - tau_base) * (cos(pi * k / K) + 1) / 2
/// ```
///
/// which is `tau_base` at step 0 and approaches 1 at the end, so the target moves less and
/// less. It depends on the step alone, so a resumed run continues it exactly.
///
/// ### References
///
/// Jean-Bastien Grill et al. Bootstrap Your Own Latent: A New Approach to Self-Supervised
/// Learning. NeurIPS 2020.
public struct TargetDecaySchedule: Sendable, Equatable {
  /// Constant or cosine.
  public var kind: ScheduleKind
  /// The decay at step 0, `tau_base`, in `[0, 1)`.
  public var baseDecay: Float
  /// The steps of the run `K`.
  public var totalSteps: Int

  /// Creates a schedule.
  ///
  /// - Parameters:
  ///   - kind: Constant or cosine.
  ///   - baseDecay: The decay `tau_base` in `[0, 1)`.
  ///   - totalSteps: The positive step count of the run.
  public init(kind: ScheduleKind, baseDecay: Float, totalSteps: Int) {
    precondition(baseDecay >= 0 && baseDecay < 1, "baseDecay must be in [0, 1), got \(baseDecay)")
    precondition(totalSteps > 0, "totalSteps must be > 0, got \(totalSteps)")
    self.kind = kind
    self.baseDecay = baseDecay
    self.totalSteps = totalSteps
  }

  /// Returns the decay of the target update at `step`, counted from 0.
  public func decay(atStep step: Int) -> Float {
    switch kind {
    case .constant:
      return baseDecay
    case .cosine:
      let progress = min(Double(step) / Double(totalSteps), 1)
      return Float(1 - (1 - Double(baseDecay)) * (cos(Double.pi * progress) + 1) / 2)
    }
  }
}
