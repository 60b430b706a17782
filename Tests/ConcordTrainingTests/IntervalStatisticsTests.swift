import ConcordBalancing
import Testing

@testable import ConcordTraining

/// The mean losses that a metrics line reports for its interval.
@Suite struct IntervalStatisticsTests {
  @Test func allSkippedGivesNaN() {
    var interval = IntervalStatistics(taskCount: 2)
    interval.add(losses: [1, 4], result: nil)
    #expect(interval.meanLosses.allSatisfy { $0.isNaN })
  }

  @Test func skippedStepIsNotCounted() {
    var interval = IntervalStatistics(taskCount: 2)
    interval.add(losses: [1, 4], result: nil)
    interval.add(losses: [2, 6], result: BalancingResult(taskCount: 2))
    #expect(interval.meanLosses == [2, 6])
  }
}
