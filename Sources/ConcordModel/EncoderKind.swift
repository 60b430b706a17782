/// The architecture of the shared encoder.
public enum EncoderKind: String, CaseIterable, Sendable, Codable {
  /// Fully connected layers with ReLU on the flattened image (``SharedEncoder``).
  case mlp
  /// 3x3 convolutions with batch normalisation, ReLU and pooling (``ConvEncoder``).
  case conv
}

/// The shape of the convolutional encoder: the image size, the channels of each block and
/// the fully connected layers after the last.
///
/// Block `i` takes an image of `height >> i` by `width >> i` pixels, and every block but the
/// last halves both sides with 2x2 max pooling. Without fully connected layers the last block
/// ends in a global average pool, so the representation has `channels.last` features. With
/// them, the last block is max pooled too, its output is flattened, and the representation is
/// the output of the last fully connected layer.
public struct ConvEncoderShape: Sendable, Equatable, Codable {
  /// The image height in pixels.
  public var height: Int
  /// The image width in pixels.
  public var width: Int
  /// The output channels of each convolution block, input side first.
  public var channels: [Int]
  /// The widths of the fully connected layers after the convolution blocks, each followed by
  /// ReLU, or empty for a global average pool.
  public var hiddenSizes: [Int]

  /// Creates a shape for single-channel images of `height` x `width` pixels.
  public init(height: Int, width: Int, channels: [Int], hiddenSizes: [Int] = []) {
    self.height = height
    self.width = width
    self.channels = channels
    self.hiddenSizes = hiddenSizes
  }

  /// Decodes a shape, which has no fully connected layers when `hiddenSizes` is missing.
  public init(from decoder: Decoder) throws {
    let container = try decoder.container(keyedBy: CodingKeys.self)
    height = try container.decode(Int.self, forKey: .height)
    width = try container.decode(Int.self, forKey: .width)
    channels = try container.decode([Int].self, forKey: .channels)
    hiddenSizes = try container.decodeIfPresent([Int].self, forKey: .hiddenSizes) ?? []
  }

  /// The number of times the image is halved: after every block, or after every block but
  /// the last when a global average pool ends the network.
  public var poolings: Int { hiddenSizes.isEmpty ? channels.count - 1 : channels.count }

  /// The values per image that the fully connected layers take: the last block's pooled
  /// output, flattened.
  public var flattenedSize: Int {
    (height >> poolings) * (width >> poolings) * (channels.last ?? 0)
  }

  /// The number of features of the representation.
  public var featureSize: Int { hiddenSizes.last ?? channels.last ?? 0 }

  /// Whether every block's input image has at least one pixel, and so does the flattened
  /// output, so that the shape can be built.
  public var isValid: Bool {
    !channels.isEmpty && channels.allSatisfy { $0 > 0 } && hiddenSizes.allSatisfy { $0 > 0 }
      && height > 0 && width > 0 && (height >> poolings) > 0 && (width >> poolings) > 0
  }
}
