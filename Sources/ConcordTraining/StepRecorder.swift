import Foundation

/// The parts of a training step, as timelines and benchmarks name them.
public enum StepPhase: Sendable, Equatable, Hashable {
  /// Loading the batch and making the augmented views.
  case data
  /// The encoder's forward pass.
  case forward
  /// One task's head: forward, loss and backward to the features.
  case task(Int)
  /// The fused backward pass of every task through the encoder.
  case encoderBackward
  /// The allreduce of the per-task gradients and losses, as far as the step waits for it.
  case allreduce
  /// The Gram matrix, GradNorm, PCGrad and the update direction.
  case balancing
  /// Adam and the BYOL target update.
  case optimizer
  /// Writing a checkpoint.
  case checkpoint
}

/// Times the phases of each step with a monotonic clock.
///
/// It keeps the total time of each phase, for benchmarks, and when asked every interval,
/// for timelines. Recording reuses storage reserved up front, so that timing a step does not
/// allocate until that storage is full.
public final class StepRecorder {
  /// One timed phase: the step, the phase, and its start and end in nanoseconds since the
  /// recorder was created.
  public struct Interval: Sendable {
    public var step: Int
    public var phase: StepPhase
    public var start: UInt64
    public var end: UInt64
  }

  /// Whether every interval is kept, not only the totals.
  public let keepsIntervals: Bool
  /// The intervals recorded, when ``keepsIntervals``.
  public private(set) var intervals: [Interval] = []
  /// The total nanoseconds spent in each phase.
  public private(set) var totals: [StepPhase: UInt64] = [:]
  /// The monotonic time, in nanoseconds, that interval times count from.
  public let origin: UInt64
  private var current: (phase: StepPhase, start: UInt64)?
  /// The step that new intervals belong to.
  public var step = 0

  /// Creates a recorder; with `keepsIntervals`, room for `capacity` intervals is reserved.
  public init(keepsIntervals: Bool, capacity: Int = 0) {
    self.keepsIntervals = keepsIntervals
    origin = Self.now()
    if keepsIntervals { intervals.reserveCapacity(capacity) }
  }

  /// Nanoseconds on the monotonic clock.
  public static func now() -> UInt64 {
    var time = timespec()
    clock_gettime(CLOCK_MONOTONIC, &time)
    return UInt64(time.tv_sec) * 1_000_000_000 + UInt64(time.tv_nsec)
  }

  /// Ends the current phase, if any, and starts `phase`.
  public func begin(_ phase: StepPhase) {
    let time = Self.now()
    finish(at: time)
    current = (phase, time)
  }

  /// Ends the current phase.
  public func end() {
    finish(at: Self.now())
  }

  /// Forgets the totals and intervals, as after a warm-up.
  public func reset() {
    totals = [:]
    intervals.removeAll(keepingCapacity: true)
  }

  private func finish(at time: UInt64) {
    guard let (phase, start) = current else { return }
    current = nil
    totals[phase, default: 0] += time - start
    if keepsIntervals {
      intervals.append(
        Interval(step: step, phase: phase, start: start - origin, end: time - origin))
    }
  }
}
