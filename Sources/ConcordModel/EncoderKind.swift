/// The architecture of the shared encoder.
public enum EncoderKind: String, CaseIterable, Sendable, Codable {
  /// Fully connected layers with ReLU on the flattened image (``SharedEncoder``).
  case mlp
  /// 3x3 convolutions with batch normalisation, ReLU and pooling (``ConvEncoder``).
  case conv
}

/// The shape of the convolutional encoder: the image size and the channels of each block.
///
/// Block `i` takes an image of `height >> i` by `width >> i` pixels: every block but the last
/// halves both sides with 2x2 max pooling, and the last block ends in a global average pool,
/// so the representation has `channels.last` features.
public struct ConvEncoderShape: Sendable, Equatable, Codable {
  /// The image height in pixels.
  public var height: Int
  /// The image width in pixels.
  public var width: Int
  /// The output channels of each convolution block, input side first.
  public var channels: [Int]

  /// Creates a shape for single-channel images of `height` x `width` pixels.
  public init(height: Int, width: Int, channels: [Int]) {
    self.height = height
    self.width = width
    self.channels = channels
  }

  /// Whether every block's input image has at least one pixel, so that the shape can be built.
  public var isValid: Bool {
    !channels.isEmpty && channels.allSatisfy { $0 > 0 } && height > 0 && width > 0
      && (height >> (channels.count - 1)) > 0 && (width >> (channels.count - 1)) > 0
  }
}
