/// The images that the supervised head trains on.
///
/// Every other task trains on the two augmented views alone. A batch with clean rows has
/// `n` more rows after its `2n` views: the images with only the dataset's normalisation, or
/// with light augmentation, which the encoder runs on like the views. The other heads'
/// gradient on those rows is zero, and the supervised loss is the mean over the rows that it
/// reads.
public enum SupervisedView: String, CaseIterable, Codable, Sendable {
  /// The two augmented views of each image.
  case augmented
  /// The clean (un-augmented) image.
  case clean
  /// The two views and the clean image.
  case both
  /// The image with light augmentation: a third draw of the views' horizontal flip, applied
  /// with probability 1/2, and no other kind.
  case light

  /// The rows of the batch for each image: 2, or 3 with the clean image.
  public var rowsPerImage: Int { self == .augmented ? 2 : 3 }

  /// Returns the rows that the supervised head reads in a batch of `pairCount` images.
  public func rows(pairCount n: Int) -> Range<Int> {
    switch self {
    case .augmented: return 0..<(2 * n)
    case .clean, .light: return (2 * n)..<(3 * n)
    case .both: return 0..<(3 * n)
    }
  }
}
