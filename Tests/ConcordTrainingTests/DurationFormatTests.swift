import Testing

@testable import ConcordTraining

/// The eta and duration text of the progress lines.
@Suite struct DurationFormatTests {
  @Test(arguments: [
    (12.4, "12s"), (185.0, "3m05s"), (3720.0, "1h02m"), (360_000.0, "100h00m"),
    (-1.0, "?"), (Double.infinity, "?"), (Double.nan, "?"),
  ])
  func formatsDuration(seconds: Double, text: String) {
    #expect(formatDuration(seconds) == text)
  }

  @Test func hugeDurationStaysPositive() {
    let text = formatDuration(1e300)
    #expect(text.hasSuffix("m"))
    #expect(!text.hasPrefix("-"))
  }
}
