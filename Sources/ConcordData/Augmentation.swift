import ConcordTensors
import Foundation

/// One kind of random image transformation, listed in the order of application.
///
/// A view applies each kind independently with probability 1/2. The position of
/// a kind in `allCases` is its column in the augmentation-prediction labels, so
/// `AugmentationKind.allCases.count` is the number of those labels.
public enum AugmentationKind: String, CaseIterable, Sendable, Codable {
  /// Random resized crop: a region of 50%...100% of the area, aspect ratio
  /// (width / height) in 3/4...4/3, resized back to the full image bilinearly.
  case crop
  /// Horizontal flip.
  case flip
  /// Brightness and contrast, each scaled by a factor in 0.6...1.4.
  case colorJitter
  /// A 3x3 box blur.
  case blur
  /// Additive Gaussian noise with standard deviation 0.1.
  case noise
  /// Random erasing: a rectangle of 2%...20% of the area, aspect ratio 0.3...3.3, set to 0.
  case erasing

  /// The kinds in order of application, stored once so that the per-view loop does not allocate.
  static let orderOfApplication: [AugmentationKind] = allCases

  /// The column of this kind in the augmentation-prediction labels.
  public var labelIndex: Int {
    switch self {
    case .crop: return 0
    case .flip: return 1
    case .colorJitter: return 2
    case .blur: return 3
    case .noise: return 4
    case .erasing: return 5
    }
  }
}

/// A rectangle of pixels: columns `x..<x + width`, rows `y..<y + height`.
struct PixelRectangle: Equatable {
  var x: Int
  var y: Int
  var width: Int
  var height: Int
}

/// The random choices behind one augmented view: which kinds apply and their parameters.
///
/// Parameters of kinds that are not applied keep neutral values (the whole
/// image, factors of 1, an empty rectangle).
struct AugmentationPlan: Equatable {
  /// The probability with which each kind is applied.
  static let applicationProbability: Float = 0.5
  /// The range of the crop's area as a fraction of the image.
  static let cropAreaFraction: ClosedRange<Float> = 0.5...1
  /// The range of the crop's aspect ratio, width / height.
  static let cropAspectRatio: ClosedRange<Float> = (3.0 / 4.0)...(4.0 / 3.0)
  /// The range of the brightness and contrast factors.
  static let jitterFactor: ClosedRange<Float> = 0.6...1.4
  /// The standard deviation of the Gaussian noise, in pixel units of `[0, 1]`.
  static let noiseStandardDeviation: Float = 0.1
  /// The range of the erased area as a fraction of the image.
  static let erasingAreaFraction: ClosedRange<Float> = 0.02...0.2
  /// The range of the erased rectangle's aspect ratio, width / height.
  static let erasingAspectRatio: ClosedRange<Float> = 0.3...3.3

  /// One bit per kind, at its `labelIndex`.
  private(set) var appliedMask: UInt8 = 0
  /// The region that the crop resizes to the full image.
  var crop: PixelRectangle
  /// The factor that multiplies every pixel.
  var brightness: Float = 1
  /// The factor that scales each pixel's distance from the image mean.
  var contrast: Float = 1
  /// The region that erasing sets to 0.
  var erasing = PixelRectangle(x: 0, y: 0, width: 0, height: 0)

  /// Creates a plan that applies nothing to a `[height, width]` image.
  init(height: Int, width: Int) {
    crop = PixelRectangle(x: 0, y: 0, width: width, height: height)
  }

  /// Returns whether the plan applies `kind`.
  func contains(_ kind: AugmentationKind) -> Bool {
    appliedMask & (1 << UInt8(kind.labelIndex)) != 0
  }

  /// Marks `kind` as applied.
  mutating func insert(_ kind: AugmentationKind) {
    appliedMask |= 1 << UInt8(kind.labelIndex)
  }

  /// Marks `kind` as not applied, keeping its parameters.
  mutating func remove(_ kind: AugmentationKind) {
    appliedMask &= ~(1 << UInt8(kind.labelIndex))
  }

  /// Draws a plan for a `[height, width]` image from `stream`.
  ///
  /// The six application decisions come first, in order of application, then
  /// the parameters of the kinds that apply.
  static func draw(height: Int, width: Int, stream: inout RandomStream) -> AugmentationPlan {
    var plan = AugmentationPlan(height: height, width: width)
    for kind in AugmentationKind.orderOfApplication {
      if stream.bernoulli(applicationProbability) { plan.insert(kind) }
    }
    if plan.contains(.crop) {
      plan.crop = randomRectangle(
        height: height, width: width, areaFraction: cropAreaFraction,
        aspectRatio: cropAspectRatio, stream: &stream)
    }
    if plan.contains(.colorJitter) {
      plan.brightness = stream.uniform(in: jitterFactor)
      plan.contrast = stream.uniform(in: jitterFactor)
    }
    if plan.contains(.erasing) {
      plan.erasing = randomRectangle(
        height: height, width: width, areaFraction: erasingAreaFraction,
        aspectRatio: erasingAspectRatio, stream: &stream)
    }
    return plan
  }

  /// Draws a rectangle of a random area and aspect ratio at a random place.
  ///
  /// The aspect ratio is log-uniform, as in torchvision's `RandomResizedCrop`
  /// and `RandomErasing`. A side longer than the image is shortened to fit
  /// (torchvision retries the draw instead), so near the top of the ranges the
  /// area can fall below the drawn fraction.
  private static func randomRectangle(
    height: Int, width: Int, areaFraction: ClosedRange<Float>, aspectRatio: ClosedRange<Float>,
    stream: inout RandomStream
  ) -> PixelRectangle {
    let area = Float(height * width) * stream.uniform(in: areaFraction)
    let logRatio = stream.uniform(in: log(aspectRatio.lowerBound)...log(aspectRatio.upperBound))
    let ratio = exp(logRatio)
    let rectangleWidth = min(max(Int((area * ratio).squareRoot().rounded()), 1), width)
    let rectangleHeight = min(max(Int((area / ratio).squareRoot().rounded()), 1), height)
    let x = stream.integer(in: 0...(width - rectangleWidth))
    let y = stream.integer(in: 0...(height - rectangleHeight))
    return PixelRectangle(x: x, y: y, width: rectangleWidth, height: rectangleHeight)
  }
}

/// Composes random augmentations on grayscale images and records which ones it applied.
///
/// Each view applies every ``AugmentationKind`` independently with probability
/// 1/2, in the order of `AugmentationKind.allCases`. The same random draw both
/// transforms the view and labels it for augmentation prediction: label 1 if
/// the kind was applied, else 0. An augmenter owns its scratch space, so
/// ``augment(_:into:labels:stream:)`` does not allocate; use one augmenter per
/// thread.
///
/// ### References
/// - T. Chen, S. Kornblith, M. Norouzi, G. Hinton, "A Simple Framework for
///   Contrastive Learning of Visual Representations", ICML 2020 (composed
///   augmentations outperform single ones).
/// - Z. Zhong, L. Zheng, G. Kang, S. Li, Y. Yang, "Random Erasing Data
///   Augmentation", AAAI 2020.
public final class Augmenter {
  /// The image height in pixels.
  public let height: Int
  /// The image width in pixels.
  public let width: Int
  /// A copy of the image for the transformations that read pixels they overwrite.
  private let scratch: FloatBuffer
  /// The source columns and weight of each output column of the last crop.
  private let columnLower: UnsafeMutablePointer<Int>
  private let columnUpper: UnsafeMutablePointer<Int>
  private let columnWeight: UnsafeMutablePointer<Float>

  /// The number of pixels of one image.
  var pixelCount: Int { height * width }

  /// Creates an augmenter for `[height, width]` images.
  public init(height: Int, width: Int) {
    precondition(height > 0 && width > 0, "image size must be positive, got \(height)x\(width)")
    self.height = height
    self.width = width
    scratch = FloatBuffer(count: height * width)
    columnLower = .allocate(capacity: width)
    columnUpper = .allocate(capacity: width)
    columnWeight = .allocate(capacity: width)
  }

  deinit {
    columnLower.deallocate()
    columnUpper.deallocate()
    columnWeight.deallocate()
  }

  /// Writes one randomly augmented view of `source` and the labels of the kinds applied.
  ///
  /// - Parameters:
  ///   - source: The image, `[height, width]`, row-major, values in `[0, 1]`.
  ///   - destination: The view, `[height, width]`, row-major; values stay in `[0, 1]`.
  ///   - labels: `[AugmentationKind.allCases.count]`; 1 where a kind was applied, else 0.
  ///   - stream: The source of every random choice; equal streams give bit-identical views.
  public func augment(
    _ source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>,
    labels: UnsafeMutablePointer<Float>, stream: inout RandomStream
  ) {
    let plan = AugmentationPlan.draw(height: height, width: width, stream: &stream)
    apply(plan, to: source, into: destination, stream: &stream)
    for kind in AugmentationKind.orderOfApplication {
      labels[kind.labelIndex] = plan.contains(kind) ? 1 : 0
    }
  }

  /// Writes one randomly augmented view of `source` that applies only the kinds of `kept`,
  /// each with its usual probability and parameters.
  ///
  /// - Parameters:
  ///   - source: The image, `[height, width]`, row-major, values in `[0, 1]`.
  ///   - destination: The view, `[height, width]`, row-major.
  ///   - kept: The kinds that may apply.
  ///   - stream: The source of every random choice; the plan is drawn as for a full view.
  public func augment(
    _ source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>,
    keeping kept: [AugmentationKind], stream: inout RandomStream
  ) {
    var plan = AugmentationPlan.draw(height: height, width: width, stream: &stream)
    for kind in AugmentationKind.orderOfApplication where !kept.contains(kind) {
      plan.remove(kind)
    }
    apply(plan, to: source, into: destination, stream: &stream)
  }

  /// Writes one randomly augmented view of `source`, its labels, and its invariance twin: the
  /// same view with the kinds of `omitted` left out.
  ///
  /// The view and its labels are bit-identical to those of
  /// ``augment(_:into:labels:stream:)`` with the same stream. The twin shares every other
  /// draw of the view: the same plan without `omitted`, and the same Gaussian noise values
  /// when noise applies to both.
  ///
  /// - Parameters:
  ///   - source: The image, `[height, width]`, row-major, values in `[0, 1]`.
  ///   - destination: The view, `[height, width]`, row-major.
  ///   - twin: The view without the kinds of `omitted`, `[height, width]`, row-major.
  ///   - omitted: The kinds that the twin leaves out.
  ///   - labels: `[AugmentationKind.allCases.count]`; 1 where a kind made the view, else 0.
  ///   - stream: The source of every random choice, advanced as by the call without a twin.
  public func augment(
    _ source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<Float>,
    twin: UnsafeMutablePointer<Float>, omitting omitted: [AugmentationKind],
    labels: UnsafeMutablePointer<Float>, stream: inout RandomStream
  ) {
    let plan = AugmentationPlan.draw(height: height, width: width, stream: &stream)
    var twinStream = stream
    var twinPlan = plan
    for kind in omitted { twinPlan.remove(kind) }
    apply(plan, to: source, into: destination, stream: &stream)
    apply(twinPlan, to: source, into: twin, stream: &twinStream)
    for kind in AugmentationKind.orderOfApplication {
      labels[kind.labelIndex] = plan.contains(kind) ? 1 : 0
    }
  }

  /// Applies the kinds of `plan` to `source` in order, writing the result to `destination`.
  ///
  /// Gaussian noise, if applied, draws its values from `stream`.
  func apply(
    _ plan: AugmentationPlan, to source: UnsafePointer<Float>,
    into destination: UnsafeMutablePointer<Float>, stream: inout RandomStream
  ) {
    destination.update(from: source, count: pixelCount)
    if plan.contains(.crop) { resizeCrop(destination, region: plan.crop) }
    if plan.contains(.flip) { flipHorizontally(destination) }
    if plan.contains(.colorJitter) {
      jitter(destination, brightness: plan.brightness, contrast: plan.contrast)
    }
    if plan.contains(.blur) { boxBlur(destination) }
    if plan.contains(.noise) { addNoise(destination, stream: &stream) }
    if plan.contains(.erasing) { erase(destination, region: plan.erasing) }
  }

  /// Resizes `region` of `image` to the whole image with bilinear interpolation.
  ///
  /// Pixel centres map as in resizing without aligned corners: output pixel
  /// `i` samples the region at `(i + 0.5) * regionSize / size - 0.5`, clamped
  /// to the region, so a region equal to the image is left unchanged.
  private func resizeCrop(_ image: UnsafeMutablePointer<Float>, region: PixelRectangle) {
    let source = scratch.baseAddress
    source.update(from: image, count: pixelCount)
    let scaleY = Float(region.height) / Float(height)
    let scaleX = Float(region.width) / Float(width)
    // Every row samples the same columns: find them once.
    for column in 0..<width {
      (columnLower[column], columnUpper[column], columnWeight[column]) = samplePosition(
        column, scale: scaleX, origin: region.x, extent: region.width)
    }
    for row in 0..<height {
      let (y0, y1, fy) = samplePosition(
        row, scale: scaleY, origin: region.y, extent: region.height)
      for column in 0..<width {
        let x0 = columnLower[column]
        let x1 = columnUpper[column]
        let fx = columnWeight[column]
        let top = source[y0 * width + x0] * (1 - fx) + source[y0 * width + x1] * fx
        let bottom = source[y1 * width + x0] * (1 - fx) + source[y1 * width + x1] * fx
        // Rounding can lift a blend of ones just above 1.
        image[row * width + column] = min(top * (1 - fy) + bottom * fy, 1)
      }
    }
  }

  /// Returns the two source indices around output index `index` and the weight of the second.
  private func samplePosition(_ index: Int, scale: Float, origin: Int, extent: Int) -> (
    Int, Int, Float
  ) {
    let position = min(max((Float(index) + 0.5) * scale - 0.5, 0), Float(extent - 1))
    let lower = Int(position)
    let upper = min(lower + 1, extent - 1)
    return (origin + lower, origin + upper, position - Float(lower))
  }

  /// Mirrors every row of `image`.
  private func flipHorizontally(_ image: UnsafeMutablePointer<Float>) {
    for row in 0..<height {
      let start = image + row * width
      var left = 0
      var right = width - 1
      while left < right {
        swap(&start[left], &start[right])
        left += 1
        right -= 1
      }
    }
  }

  /// Scales brightness, then contrast about the image mean, clamping to `[0, 1]`.
  private func jitter(_ image: UnsafeMutablePointer<Float>, brightness: Float, contrast: Float) {
    var sum: Float = 0
    for index in 0..<pixelCount {
      image[index] = clampToUnit(image[index] * brightness)
      sum += image[index]
    }
    let mean = sum / Float(pixelCount)
    for index in 0..<pixelCount {
      image[index] = clampToUnit((image[index] - mean) * contrast + mean)
    }
  }

  /// Replaces each pixel by the mean of its 3x3 neighbourhood.
  ///
  /// Only neighbours inside the image count, so a constant image stays constant. The sum is
  /// separable: three-pixel sums along each row first, then three of those along each column.
  private func boxBlur(_ image: UnsafeMutablePointer<Float>) {
    let rowSums = scratch.baseAddress
    for row in 0..<height {
      let source = image + row * width
      let sums = rowSums + row * width
      sums[0] = source[0] + (width > 1 ? source[1] : 0)
      if width > 1 {
        for column in 1..<(width - 1) {
          sums[column] = source[column - 1] + source[column] + source[column + 1]
        }
        sums[width - 1] = source[width - 2] + source[width - 1]
      }
    }
    for row in 0..<height {
      let hasAbove = row > 0
      let hasBelow = row < height - 1
      let rowCount: Float = 1 + (hasAbove ? 1 : 0) + (hasBelow ? 1 : 0)
      for column in 0..<width {
        var sum = rowSums[row * width + column]
        if hasAbove { sum += rowSums[(row - 1) * width + column] }
        if hasBelow { sum += rowSums[(row + 1) * width + column] }
        let columnCount: Float = 1 + (column > 0 ? 1 : 0) + (column < width - 1 ? 1 : 0)
        image[row * width + column] = sum / (rowCount * columnCount)
      }
    }
  }

  /// Adds Gaussian noise to every pixel and clamps to `[0, 1]`.
  private func addNoise(_ image: UnsafeMutablePointer<Float>, stream: inout RandomStream) {
    let sigma = AugmentationPlan.noiseStandardDeviation
    for index in 0..<pixelCount {
      image[index] = clampToUnit(image[index] + sigma * stream.normal())
    }
  }

  /// Sets the pixels of `region` to 0.
  private func erase(_ image: UnsafeMutablePointer<Float>, region: PixelRectangle) {
    for row in region.y..<(region.y + region.height) {
      (image + row * width + region.x).update(repeating: 0, count: region.width)
    }
  }
}

/// Clamps `value` to `[0, 1]`.
private func clampToUnit(_ value: Float) -> Float {
  min(max(value, 0), 1)
}
