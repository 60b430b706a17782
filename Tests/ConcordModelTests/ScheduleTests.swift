import Foundation
import Testing

@testable import ConcordModel

/// Warm-up from 0 over 10 steps to 0.4, then a cosine to 0 at step 110.
@Test func cosineScheduleWithWarmup() {
  let schedule = LearningRateSchedule(
    kind: .cosine, baseRate: 0.4, warmupSteps: 10, totalSteps: 110)
  #expect(schedule.rate(atStep: 0) == 0)
  #expect(abs(schedule.rate(atStep: 5) - 0.2) < 1e-7)
  #expect(schedule.rate(atStep: 10) == 0.4)
  #expect(abs(schedule.rate(atStep: 60) - 0.2) < 1e-7)
  let last = Float(0.4 * (1 + cos(Double.pi * 99 / 100)) / 2)
  #expect(abs(schedule.rate(atStep: 109) - last) < 1e-9)
  #expect(schedule.rate(atStep: 109) > 0)
  #expect(abs(schedule.rate(atStep: 110)) < 1e-9)
}

/// Without warm-up the cosine starts at the base rate.
@Test func cosineScheduleWithoutWarmup() {
  let schedule = LearningRateSchedule(kind: .cosine, baseRate: 2, totalSteps: 8)
  #expect(schedule.rate(atStep: 0) == 2)
  #expect(abs(schedule.rate(atStep: 4) - 1) < 1e-6)
  #expect(abs(schedule.rate(atStep: 8)) < 1e-6)
}

/// The constant schedule returns the base rate bit for bit after the warm-up, so a run
/// without a schedule takes the rate it always took.
@Test func constantScheduleKeepsBaseRate() {
  let plain = LearningRateSchedule(kind: .constant, baseRate: 1e-3, totalSteps: 50)
  for step in [0, 1, 25, 49, 50] { #expect(plain.rate(atStep: step) == 1e-3) }
  let warm = LearningRateSchedule(kind: .constant, baseRate: 1e-3, warmupSteps: 4, totalSteps: 50)
  #expect(warm.rate(atStep: 0) == 0)
  #expect(abs(warm.rate(atStep: 2) - 5e-4) < 1e-10)
  #expect(warm.rate(atStep: 4) == 1e-3)
  #expect(warm.rate(atStep: 49) == 1e-3)
}

/// A warm-up as long as the run never reaches the decay.
@Test func warmupOverWholeRun() {
  let schedule = LearningRateSchedule(kind: .cosine, baseRate: 1, warmupSteps: 4, totalSteps: 4)
  #expect(schedule.rate(atStep: 3) == 0.75)
  #expect(schedule.rate(atStep: 4) == 0)
}

/// BYOL's tau_k = 1 - (1 - tau_base)(cos(pi k / K) + 1) / 2 with tau_base = 0.996, K = 100.
@Test func targetDecayCosineSchedule() {
  let schedule = TargetDecaySchedule(kind: .cosine, baseDecay: 0.996, totalSteps: 100)
  #expect(abs(schedule.decay(atStep: 0) - 0.996) < 1e-7)
  #expect(abs(schedule.decay(atStep: 50) - 0.998) < 1e-7)
  let quarter = Float(1 - (1 - Double(Float(0.996))) * (cos(Double.pi / 4) + 1) / 2)
  #expect(abs(schedule.decay(atStep: 25) - quarter) < 1e-7)
  #expect(schedule.decay(atStep: 100) == 1)
  var previous = schedule.decay(atStep: 0)
  for step in 1...100 {
    let decay = schedule.decay(atStep: step)
    #expect(decay >= previous, "step \(step)")
    previous = decay
  }
}

@Test func targetDecayConstantSchedule() {
  let schedule = TargetDecaySchedule(kind: .constant, baseDecay: 0.99, totalSteps: 10)
  for step in [0, 5, 10] { #expect(schedule.decay(atStep: step) == 0.99) }
}
