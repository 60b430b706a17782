import ConcordTensors
import Testing

@testable import ConcordData

/// Returns a random `[height * width]` image with values in `[0, 1]`.
private func randomImage(count: Int, seed: UInt64) -> [Float] {
  var stream = RandomStream(seed: seed, purpose: .test)
  return (0..<count).map { _ in stream.uniform() }
}

/// The view of the call with a twin is bit-identical to the call without one, the stream ends
/// in the same state, and the twin equals the view exactly when no omitted kind was applied.
@Test func twinSharesEveryOtherDraw() {
  let augmenter = Augmenter(height: 8, width: 7)
  let image = randomImage(count: 56, seed: 3)
  let kindCount = AugmentationKind.allCases.count
  var differingTwins = 0
  for omitted in [[AugmentationKind.crop], [.noise, .flip], [.colorJitter, .erasing]] {
    for index in 0..<40 {
      var plain = [Float](repeating: 0, count: 56)
      var view = [Float](repeating: 0, count: 56)
      var twin = [Float](repeating: 0, count: 56)
      var plainLabels = [Float](repeating: 0, count: kindCount)
      var labels = [Float](repeating: 0, count: kindCount)
      var plainStream = RandomStream(seed: 11, purpose: .augmentation, counters: UInt64(index))
      var stream = plainStream
      augmenter.augment(image, into: &plain, labels: &plainLabels, stream: &plainStream)
      augmenter.augment(
        image, into: &view, twin: &twin, omitting: omitted, labels: &labels, stream: &stream)

      #expect(view.map(\.bitPattern) == plain.map(\.bitPattern), "\(omitted) view \(index)")
      #expect(labels == plainLabels, "\(omitted) view \(index)")
      #expect(stream.next() == plainStream.next(), "\(omitted) view \(index)")
      let appliesOmitted = omitted.contains { labels[$0.labelIndex] == 1 }
      if appliesOmitted {
        if twin != view { differingTwins += 1 }
      } else {
        #expect(twin.map(\.bitPattern) == view.map(\.bitPattern), "\(omitted) view \(index)")
      }
    }
  }
  #expect(differingTwins > 40)
}

/// Leaving out every kind that made the view gives the image itself.
@Test func twinWithoutEveryAppliedKindIsTheImage() {
  let augmenter = Augmenter(height: 6, width: 6)
  let image = randomImage(count: 36, seed: 4)
  var view = [Float](repeating: 0, count: 36)
  var twin = [Float](repeating: 0, count: 36)
  var labels = [Float](repeating: 0, count: AugmentationKind.allCases.count)
  var stream = RandomStream(seed: 2, purpose: .augmentation, counters: 5)
  augmenter.augment(
    image, into: &view, twin: &twin, omitting: AugmentationKind.allCases, labels: &labels,
    stream: &stream)
  #expect(twin == image)
}
