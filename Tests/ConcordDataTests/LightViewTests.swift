import ConcordTensors
import Testing

@testable import ConcordData

/// Returns a random `[height * width]` image with values in `[0, 1]`.
private func randomImage(count: Int, seed: UInt64) -> [Float] {
  var stream = RandomStream(seed: seed, purpose: .test)
  return (0..<count).map { _ in stream.uniform() }
}

/// Returns `image`, `[height, width]` row-major, mirrored left to right.
private func mirrored(_ image: [Float], width: Int) -> [Float] {
  stride(from: 0, to: image.count, by: width).flatMap { image[$0..<($0 + width)].reversed() }
}

/// A view that keeps only the flip is the image or its mirror image, and both occur.
@Test func keptFlipGivesImageOrMirror() {
  let augmenter = Augmenter(height: 6, width: 7)
  let image = randomImage(count: 42, seed: 5)
  var outcomes: Set<String> = []
  for index in 0..<40 {
    var view = [Float](repeating: 0, count: 42)
    var stream = RandomStream(seed: 8, purpose: .augmentation, counters: UInt64(index))
    augmenter.augment(image, into: &view, keeping: [.flip], stream: &stream)
    if view == image {
      outcomes.insert("image")
    } else if view == mirrored(image, width: 7) {
      outcomes.insert("mirror")
    } else {
      Issue.record("view \(index) is neither the image nor its mirror image")
    }
  }
  #expect(outcomes == ["image", "mirror"])
}

/// A view that keeps no kind is the image itself.
@Test func keepingNoKindGivesImage() {
  let augmenter = Augmenter(height: 6, width: 6)
  let image = randomImage(count: 36, seed: 6)
  var view = [Float](repeating: 0, count: 36)
  var stream = RandomStream(seed: 3, purpose: .augmentation, counters: 1)
  augmenter.augment(image, into: &view, keeping: [], stream: &stream)
  #expect(view == image)
}

/// The light views come from their own draw: turning them on leaves the two views
/// bit-identical, and a step loads the same light views every time.
@Test func lightViewsLeaveViewsAlone() throws {
  var stream = RandomStream(seed: 31, purpose: .test)
  let images = FloatBuffer((0..<(16 * 30)).map { _ in stream.uniform() })
  let dataset = Dataset(
    images: images, labels: (0..<16).map { Int32($0 % 10) }, height: 6, width: 5,
    classCount: 10)
  let sampler = try ShardedSampler(
    datasetCount: 16, globalBatchSize: 8, worldSize: 1, rank: 0, seed: 2)
  let plain = BatchLoader(dataset: dataset, sampler: sampler, seed: 9)
  let light = BatchLoader(dataset: dataset, sampler: sampler, seed: 9, lightKinds: [.crop, .flip])
  #expect(plain.lightView.rows == 0)
  #expect(light.lightView.rows == 8)

  plain.load(step: 3)
  light.load(step: 3)
  #expect(light.view1.array.map(\.bitPattern) == plain.view1.array.map(\.bitPattern))
  #expect(light.view2.array.map(\.bitPattern) == plain.view2.array.map(\.bitPattern))
  let first = light.lightView.array
  #expect(first != light.view1.array)
  light.load(step: 4)
  light.load(step: 3)
  #expect(light.lightView.array.map(\.bitPattern) == first.map(\.bitPattern))
}
