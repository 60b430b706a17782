import ConcordModel
import Foundation

/// The optimizer, its learning-rate schedule and BYOL's target decay schedule, as the
/// configuration selects them.
extension Trainer {
  /// Returns the warm-up length in steps: `--warmup-steps`, or `--warmup-epochs` times the
  /// steps of one epoch, rounded to the nearest step.
  static func warmupSteps(_ c: TrainingConfiguration, stepsPerEpoch: Int) -> Int {
    c.warmupSteps > 0 ? c.warmupSteps : Int((c.warmupEpochs * Double(stepsPerEpoch)).rounded())
  }

  /// Rejects optimizer, schedule and supervised-view settings that contradict each other or
  /// do not fit in the run's `totalSteps`.
  ///
  /// - Throws: ``UsageError`` naming the flag, the value and what to pass instead.
  static func checkOptimizationSettings(
    _ c: TrainingConfiguration, stepsPerEpoch: Int, totalSteps: Int
  )
    throws
  {
    if c.optimizer != .lars {
      let larsFlags: [(String, Float?)] = [
        ("--momentum", c.momentum), ("--weight-decay", c.weightDecay), ("--lars-eta", c.larsEta),
      ]
      for (flag, value) in larsFlags where value != nil {
        throw UsageError(
          "\(flag) applies to --optimizer lars only, and this run uses --optimizer "
            + "\(c.optimizer.rawValue): pass --optimizer lars or leave out \(flag)")
      }
    }
    // Clean rows cost encoder work, which only the supervised head would use.
    if c.supervisedView != .augmented && !c.tasks.contains(.supervised) {
      throw UsageError(
        "--supervised-view \(c.supervisedView.rawValue) chooses the images of the supervised "
          + "task, which --tasks \(c.tasks.map(\.rawValue).joined(separator: ",")) leaves out: "
          + "add supervised to --tasks or leave out --supervised-view")
    }
    let taskList = c.tasks.map(\.rawValue).joined(separator: ",")
    if c.targetDecaySchedule != .constant && !c.tasks.contains(.byol) {
      throw UsageError(
        "--target-decay-schedule \(c.targetDecaySchedule.rawValue) sets BYOL's target decay, "
          + "and --tasks \(taskList) leaves out byol: add byol to --tasks or leave out "
          + "--target-decay-schedule")
    }
    if c.simclrNegatives == .global && !c.tasks.contains(.simclr) {
      throw UsageError(
        "--simclr-negatives global sets SimCLR's negatives, and --tasks \(taskList) leaves "
          + "out simclr: add simclr to --tasks or leave out --simclr-negatives")
    }
    let epochs = String(format: "%g", c.warmupEpochs)
    if c.warmupSteps > 0 && c.warmupEpochs > 0 {
      throw UsageError(
        "--warmup-epochs \(epochs) and --warmup-steps \(c.warmupSteps) both set the "
          + "warm-up: pass only one of them")
    }
    let warmup = warmupSteps(c, stepsPerEpoch: stepsPerEpoch)
    guard warmup <= totalSteps else {
      let warmupFlag =
        c.warmupSteps > 0
        ? "--warmup-steps \(c.warmupSteps)"
        : "--warmup-epochs \(epochs) (\(warmup) steps of \(stepsPerEpoch) per epoch)"
      throw UsageError(
        "\(warmupFlag) is longer than the \(totalSteps) steps of this run: pass a warm-up of at "
          + "most \(totalSteps) steps")
    }
  }

  /// Returns the optimizer of `c` over the parameters of `layout`, with zero state.
  static func makeOptimizer(_ c: TrainingConfiguration, layout: ParameterLayout) -> any Optimizer {
    switch c.optimizer {
    case .adam:
      return Adam(parameterCount: layout.count, learningRate: c.learningRate)
    case .lars:
      return LARS(
        layout: layout, learningRate: c.learningRate,
        momentum: c.momentum ?? LARS.defaultMomentum,
        weightDecay: c.weightDecay ?? LARS.defaultWeightDecay,
        trustCoefficient: c.larsEta ?? LARS.defaultTrustCoefficient)
    }
  }

  /// The optimizer and the learning rate's schedule, as the start of a run prints them, such
  /// as `optimizer lars, lr 2 cosine after 3 warm-up steps`.
  var optimizationSummary: String {
    let schedule = learningRateSchedule
    var text =
      "optimizer \(optimizer.kind.rawValue), lr \(String(format: "%g", Double(schedule.baseRate))) "
      + schedule.kind.rawValue
    if schedule.warmupSteps > 0 { text += " after \(schedule.warmupSteps) warm-up steps" }
    return text
  }

  /// Returns the learning-rate schedule of `c` for a run of `totalSteps` steps.
  static func makeLearningRateSchedule(
    _ c: TrainingConfiguration, stepsPerEpoch: Int, totalSteps: Int
  ) -> LearningRateSchedule {
    LearningRateSchedule(
      kind: c.learningRateSchedule, baseRate: c.learningRate,
      warmupSteps: warmupSteps(c, stepsPerEpoch: stepsPerEpoch), totalSteps: totalSteps)
  }
}
