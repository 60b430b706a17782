import Testing

@testable import ConcordTraining

/// The conversion of `--warmup-epochs` and `--warmup-steps` into a number of steps.
@Suite struct WarmupLengthTests {
  func steps(epochs: Double = 0, steps: Int = 0, perEpoch: Int = 234) -> Int {
    var c = TrainingConfiguration()
    c.warmupEpochs = epochs
    c.warmupSteps = steps
    return Trainer.warmupSteps(c, stepsPerEpoch: perEpoch)
  }

  @Test func epochsRoundToNearestStep() {
    #expect(steps(epochs: 0.5) == 117)
    #expect(steps(epochs: 0.25, perEpoch: 10) == 3)
  }

  @Test func tinyWarmupKeepsOneStep() {
    #expect(steps(epochs: 1e-9) == 1)
  }

  @Test func noWarmupIsZero() {
    #expect(steps() == 0)
  }

  @Test func stepsWinOverNothing() {
    #expect(steps(steps: 40) == 40)
  }

  @Test func hugeWarmupSaturates() {
    #expect(steps(epochs: 1e300) == Int.max)
  }
}
