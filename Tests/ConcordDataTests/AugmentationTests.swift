import ConcordTensors
import Testing

@testable import ConcordData

private let kindCount = AugmentationKind.allCases.count

/// Returns a `[height, width]` image with distinct values in `[0.1, 0.9]`.
private func gradientImage(height: Int, width: Int) -> [Float] {
  (0..<(height * width)).map { 0.1 + 0.8 * Float($0) / Float(height * width - 1) }
}

/// Augments `image` with `stream` and returns the view and the labels.
private func augmented(
  _ image: [Float], augmenter: Augmenter, stream: RandomStream
) -> (view: [Float], labels: [Float]) {
  var stream = stream
  var view = [Float](repeating: -1, count: image.count)
  var labels = [Float](repeating: -1, count: kindCount)
  augmenter.augment(image, into: &view, labels: &labels, stream: &stream)
  return (view, labels)
}

/// Applies `plan` to `image` and returns the result.
private func applied(_ plan: AugmentationPlan, to image: [Float], augmenter: Augmenter) -> [Float] {
  var stream = RandomStream(seed: 1, purpose: .test)
  var view = [Float](repeating: -1, count: image.count)
  augmenter.apply(plan, to: image, into: &view, stream: &stream)
  return view
}

@Test func augmentationKindsInOrder() {
  #expect(
    AugmentationKind.allCases.map(\.rawValue) == [
      "crop", "flip", "colorJitter", "blur", "noise", "erasing",
    ])
  #expect(AugmentationKind.allCases.map(\.labelIndex) == Array(0..<6))
}

@Test func augmentationLabelsMatchDrawnPlan() {
  let augmenter = Augmenter(height: 6, width: 5)
  let image = gradientImage(height: 6, width: 5)
  for key in 0..<200 {
    let stream = RandomStream(seed: 7, purpose: .test, counters: UInt64(key))
    var planStream = stream
    let plan = AugmentationPlan.draw(height: 6, width: 5, stream: &planStream)
    let result = augmented(image, augmenter: augmenter, stream: stream)
    let expected = AugmentationKind.allCases.map { plan.contains($0) ? Float(1) : 0 }
    #expect(result.labels == expected, "stream key \(key)")
  }
}

@Test func viewWithOnlyFlipIsMirrored() throws {
  let height = 4
  let width = 5
  let augmenter = Augmenter(height: height, width: width)
  let image = gradientImage(height: height, width: width)
  let flipOnly: [Float] = [0, 1, 0, 0, 0, 0]
  let key = try #require(
    (0..<5000).first { key in
      let stream = RandomStream(seed: 3, purpose: .test, counters: UInt64(key))
      return augmented(image, augmenter: augmenter, stream: stream).labels == flipOnly
    })
  let stream = RandomStream(seed: 3, purpose: .test, counters: UInt64(key))
  let view = augmented(image, augmenter: augmenter, stream: stream).view
  for row in 0..<height {
    for column in 0..<width {
      #expect(view[row * width + column] == image[row * width + (width - 1 - column)])
    }
  }
}

@Test func viewWithNoKindIsUnchanged() throws {
  let augmenter = Augmenter(height: 3, width: 3)
  let image = gradientImage(height: 3, width: 3)
  let key = try #require(
    (0..<5000).first { key in
      let stream = RandomStream(seed: 4, purpose: .test, counters: UInt64(key))
      return augmented(image, augmenter: augmenter, stream: stream).labels.allSatisfy { $0 == 0 }
    })
  let stream = RandomStream(seed: 4, purpose: .test, counters: UInt64(key))
  #expect(augmented(image, augmenter: augmenter, stream: stream).view == image)
}

@Test func cropOfWholeImageIsIdentity() {
  let augmenter = Augmenter(height: 5, width: 7)
  let image = gradientImage(height: 5, width: 7)
  var plan = AugmentationPlan(height: 5, width: 7)
  plan.insert(.crop)
  #expect(applied(plan, to: image, augmenter: augmenter) == image)
}

@Test func cropResizesRegionToFullImage() {
  // Ones inside columns 2..<6 and rows 1..<4, zeros elsewhere: a crop of that
  // region must be all ones.
  let height = 6
  let width = 8
  let augmenter = Augmenter(height: height, width: width)
  var image = [Float](repeating: 0, count: height * width)
  for row in 1..<4 {
    for column in 2..<6 { image[row * width + column] = 1 }
  }
  var plan = AugmentationPlan(height: height, width: width)
  plan.insert(.crop)
  plan.crop = PixelRectangle(x: 2, y: 1, width: 4, height: 3)
  #expect(applied(plan, to: image, augmenter: augmenter).allSatisfy { $0 == 1 })

  // A crop of the left half of a horizontal ramp stretches it: the last
  // column of the view samples the crop's last column.
  let ramp = (0..<(height * width)).map { Float($0 % width) / Float(width - 1) }
  plan.crop = PixelRectangle(x: 0, y: 0, width: width / 2, height: height)
  let view = applied(plan, to: ramp, augmenter: augmenter)
  #expect(view[width - 1] == ramp[width / 2 - 1])
  #expect(view[0] == 0)
}

@Test func colorJitterScalesBrightnessAndContrast() {
  let augmenter = Augmenter(height: 1, width: 4)
  let image: [Float] = [0.2, 0.4, 0.6, 0.8]
  var plan = AugmentationPlan(height: 1, width: 4)
  plan.insert(.colorJitter)
  let unchanged = applied(plan, to: image, augmenter: augmenter)
  for (value, original) in zip(unchanged, image) { #expect(abs(value - original) < 1e-6) }

  plan.brightness = 0.5
  let darker = applied(plan, to: image, augmenter: augmenter)
  for (value, original) in zip(darker, image) { #expect(abs(value - original * 0.5) < 1e-6) }

  plan.brightness = 1
  plan.contrast = 0.5
  let flatter = applied(plan, to: image, augmenter: augmenter)
  let expected: [Float] = [0.35, 0.45, 0.55, 0.65]
  for (value, target) in zip(flatter, expected) { #expect(abs(value - target) < 1e-6) }

  plan.brightness = 1.4
  plan.contrast = 1.4
  #expect(applied(plan, to: image, augmenter: augmenter).allSatisfy { $0 >= 0 && $0 <= 1 })
}

@Test func blurAveragesNeighbourhood() {
  let augmenter = Augmenter(height: 5, width: 5)
  var image = [Float](repeating: 0, count: 25)
  image[12] = 0.9
  var plan = AugmentationPlan(height: 5, width: 5)
  plan.insert(.blur)
  let view = applied(plan, to: image, augmenter: augmenter)
  for row in 0..<5 {
    for column in 0..<5 {
      let isNeighbour = abs(row - 2) <= 1 && abs(column - 2) <= 1
      #expect(abs(view[row * 5 + column] - (isNeighbour ? 0.1 : 0)) < 1e-6)
    }
  }
  let constant = [Float](repeating: 0.3, count: 25)
  for value in applied(plan, to: constant, augmenter: augmenter) {
    #expect(abs(value - 0.3) < 1e-6)
  }
}

@Test func noiseHasExpectedSpread() {
  let augmenter = Augmenter(height: 40, width: 40)
  let image = [Float](repeating: 0.5, count: 1600)
  var plan = AugmentationPlan(height: 40, width: 40)
  plan.insert(.noise)
  let view = applied(plan, to: image, augmenter: augmenter)
  let mean = view.reduce(0, +) / Float(view.count)
  let variance = view.reduce(0) { $0 + ($1 - mean) * ($1 - mean) } / Float(view.count)
  #expect(abs(mean - 0.5) < 0.01)
  #expect(abs(variance.squareRoot() - 0.1) < 0.01)
}

@Test func erasingZeroesOnlyRegion() {
  let height = 6
  let width = 7
  let augmenter = Augmenter(height: height, width: width)
  let image = gradientImage(height: height, width: width)
  var plan = AugmentationPlan(height: height, width: width)
  plan.insert(.erasing)
  plan.erasing = PixelRectangle(x: 1, y: 2, width: 3, height: 2)
  let view = applied(plan, to: image, augmenter: augmenter)
  for row in 0..<height {
    for column in 0..<width {
      let isErased = (2..<4).contains(row) && (1..<4).contains(column)
      #expect(view[row * width + column] == (isErased ? 0 : image[row * width + column]))
    }
  }
}

@Test func drawnRectanglesFitImage() {
  for key in 0..<500 {
    var stream = RandomStream(seed: 5, purpose: .test, counters: UInt64(key))
    let plan = AugmentationPlan.draw(height: 28, width: 28, stream: &stream)
    for region in [plan.crop, plan.erasing] {
      #expect(region.x >= 0)
      #expect(region.y >= 0)
      #expect(region.x + region.width <= 28)
      #expect(region.y + region.height <= 28)
    }
    if plan.contains(.crop) {
      #expect(region(plan.crop, hasAreaIn: 0.4...1.0))
    }
    if plan.contains(.erasing) {
      #expect(region(plan.erasing, hasAreaIn: 0.01...0.25))
    }
    #expect(AugmentationPlan.jitterFactor.contains(plan.brightness))
    #expect(AugmentationPlan.jitterFactor.contains(plan.contrast))
  }
}

/// Returns whether `rectangle` covers a fraction of a 28x28 image within `range`.
private func region(_ rectangle: PixelRectangle, hasAreaIn range: ClosedRange<Float>) -> Bool {
  range.contains(Float(rectangle.width * rectangle.height) / Float(28 * 28))
}

@Test func augmentedValuesStayInUnitRange() {
  let augmenter = Augmenter(height: 28, width: 28)
  var imageStream = RandomStream(seed: 11, purpose: .test)
  for key in 0..<100 {
    let image = (0..<784).map { _ in imageStream.uniform() < 0.3 ? 1 : imageStream.uniform() }
    let stream = RandomStream(seed: 12, purpose: .test, counters: UInt64(key))
    let view = augmented(image, augmenter: augmenter, stream: stream).view
    #expect(view.allSatisfy { $0 >= 0 && $0 <= 1 }, "stream key \(key)")
  }
}

@Test func sameStreamGivesIdenticalViews() {
  let first = Augmenter(height: 28, width: 28)
  let second = Augmenter(height: 28, width: 28)
  let image = gradientImage(height: 28, width: 28)
  for key in 0..<20 {
    let stream = RandomStream(seed: 99, purpose: .augmentation, counters: UInt64(key), 3, 1)
    let a = augmented(image, augmenter: first, stream: stream)
    let b = augmented(image, augmenter: second, stream: stream)
    #expect(a.view.map(\.bitPattern) == b.view.map(\.bitPattern))
    #expect(a.labels == b.labels)
  }
}

@Test func eachKindAppliedAboutHalfTheTime() {
  let augmenter = Augmenter(height: 4, width: 4)
  let image = gradientImage(height: 4, width: 4)
  let drawCount = 4000
  var appliedCounts = [Float](repeating: 0, count: kindCount)
  for key in 0..<drawCount {
    let stream = RandomStream(seed: 21, purpose: .test, counters: UInt64(key))
    let labels = augmented(image, augmenter: augmenter, stream: stream).labels
    for index in 0..<kindCount { appliedCounts[index] += labels[index] }
  }
  // The standard deviation of each rate is sqrt(0.25 / 4000), about 0.008.
  for kind in AugmentationKind.allCases {
    let rate = appliedCounts[kind.labelIndex] / Float(drawCount)
    #expect(abs(rate - 0.5) < 0.04, "\(kind) applied at rate \(rate)")
  }
}
