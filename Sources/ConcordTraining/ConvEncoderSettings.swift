import ConcordDistributed
import ConcordModel

extension TrainingConfiguration {
  /// Returns the model shape that these settings describe for images of `height` x `width`
  /// pixels: ``modelConfiguration(inputSize:classCount:augmentationCount:)`` with the
  /// convolutional encoder of ``convChannels`` and ``convHiddenSizes`` when ``encoder`` is
  /// ``EncoderKind/conv``.
  public func modelConfiguration(
    height: Int, width: Int, classCount: Int, augmentationCount: Int
  ) -> ModelConfiguration {
    var shape = modelConfiguration(
      inputSize: height * width, classCount: classCount, augmentationCount: augmentationCount)
    if encoder == .conv {
      shape.hiddenSizes = convChannels + convHiddenSizes
      shape.conv = ConvEncoderShape(
        height: height, width: width, channels: convChannels, hiddenSizes: convHiddenSizes)
    }
    return shape
  }

  /// The encoder in the words of the flags: `mlp 512,256`, `conv 32,64,128`, or
  /// `conv 32,64,128 hidden 256` with fully connected layers.
  public var encoderDescription: String {
    guard encoder == .conv else { return "mlp \(Self.list(hiddenSizes))" }
    return "conv \(Self.list(convChannels))"
      + (convHiddenSizes.isEmpty ? "" : " hidden \(Self.list(convHiddenSizes))")
  }

  /// The fully connected widths of the convolutional encoder as `--conv-hidden` takes them.
  public var convHiddenDescription: String {
    convHiddenSizes.isEmpty ? "none" : Self.list(convHiddenSizes)
  }

  private static func list(_ values: [Int]) -> String {
    values.map(String.init).joined(separator: ",")
  }
}

/// Sums batch normalisation statistics over the ranks of a ``Communicator``.
///
/// The model calls it from the compute thread, between the step's other collectives, so it
/// cannot run while a communication thread owns MPI (``AllreduceMode/overlap``). The model's
/// passes cannot throw, so the error of a failed call is kept until ``throwIfFailed()``, and
/// the sums of that call stay local.
final class CommunicatorStatisticsReducer: BatchStatisticsReducer {
  private let communicator: Communicator
  private var staging: [Double] = []
  private var failure: Error?

  /// Creates the reducer over `communicator`, with staging for `capacity` values reserved.
  init(communicator: Communicator, capacity: Int = 4096) {
    self.communicator = communicator
    staging.reserveCapacity(capacity)
  }

  func sum(_ values: UnsafeMutablePointer<Double>, count: Int) {
    guard communicator.size > 1, failure == nil else { return }
    staging.removeAll(keepingCapacity: true)
    staging.append(contentsOf: UnsafeBufferPointer(start: values, count: count))
    do {
      try communicator.allreduceSum(&staging)
      staging.withUnsafeBufferPointer { values.update(from: $0.baseAddress!, count: count) }
    } catch {
      failure = error
    }
  }

  /// Throws the error of the first failed sum since the last call, if any.
  func throwIfFailed() throws {
    guard let failure else { return }
    self.failure = nil
    throw failure
  }
}

extension Trainer {
  /// Rejects a convolutional encoder with more blocks than the images can halve for.
  ///
  /// - Throws: ``UsageError`` naming `--conv-channels` and the image size.
  static func checkConvShape(_ shape: ModelConfiguration) throws {
    guard let conv = shape.conv, !conv.isValid else { return }
    let flattens = !conv.hiddenSizes.isEmpty
    var blocks = flattens ? 0 : 1
    while (conv.height >> (flattens ? blocks + 1 : blocks)) > 0
      && (conv.width >> (flattens ? blocks + 1 : blocks)) > 0
    {
      blocks += 1
    }
    throw UsageError(
      "--conv-channels \(conv.channels.map(String.init).joined(separator: ",")) has \(conv.channels.count) blocks, but "
        + "\(conv.height)x\(conv.width) images, halved after every block"
        + (flattens ? " when --conv-hidden is given" : " but the last")
        + ", allow at most \(blocks): pass fewer channels")
  }
}
