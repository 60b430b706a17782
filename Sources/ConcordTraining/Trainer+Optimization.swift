import ConcordData
import ConcordModel
import Foundation

/// The optimizer, its learning-rate schedule and BYOL's target decay schedule, as the
/// configuration selects them.
extension Trainer {
  /// Returns the warm-up length in steps: `--warmup-steps`, or `--warmup-epochs` times the
  /// steps of one epoch, rounded to the nearest step, at least 1 when it is not 0, and at most
  /// `Int.max`.
  static func warmupSteps(_ c: TrainingConfiguration, stepsPerEpoch: Int) -> Int {
    if c.warmupSteps > 0 { return c.warmupSteps }
    guard c.warmupEpochs > 0 else { return 0 }
    let steps = (c.warmupEpochs * Double(stepsPerEpoch)).rounded()
    return steps < Double(Int.max) ? max(1, Int(steps)) : Int.max
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
    // Each of these settings acts on one task only, so without that task it does nothing
    // (and clean rows would still cost encoder work).
    let taskSettings: [(isSet: Bool, task: TaskKind, flag: String, value: String, effect: String)] =
      [
        (
          c.supervisedView != .augmented, .supervised, "--supervised-view",
          c.supervisedView.rawValue, "chooses the images of the supervised task"
        ),
        (
          c.labelSmoothing != 0, .supervised, "--label-smoothing",
          String(format: "%g", c.labelSmoothing), "sets the supervised task's targets"
        ),
        (
          c.targetDecaySchedule != .constant, .byol, "--target-decay-schedule",
          c.targetDecaySchedule.rawValue, "sets BYOL's target decay"
        ),
        (
          c.simclrNegatives == .global, .simclr, "--simclr-negatives", c.simclrNegatives.rawValue,
          "sets SimCLR's negatives"
        ),
        (
          c.sensitiveKinds != nil, .augpred, "--sensitive",
          c.augpredKinds.map(\.rawValue).joined(separator: ","), "chooses the kinds of augpred"
        ),
      ]
    let taskList = c.tasks.map(\.rawValue).joined(separator: ",")
    for setting in taskSettings where setting.isSet && !c.tasks.contains(setting.task) {
      let task = setting.task.rawValue
      throw UsageError(
        "\(setting.flag) \(setting.value) \(setting.effect), and --tasks \(taskList) leaves out "
          + "\(task): add \(task) to --tasks or leave out \(setting.flag)")
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

extension TrainingConfiguration {
  /// The settings to lower when training diverges: the learning rate, and with LARS the
  /// weight decay too, whose term grows with the weights.
  var divergenceAdvice: String {
    optimizer == .lars ? "lower --lr or --weight-decay" : "lower --lr"
  }
}
