import ConcordDistributed
import ConcordModel
import ConcordTensors

/// The allreduce calls that sum a model's reduce buffer over the ranks, in the fusion and
/// precision that the run configures.
///
/// Every buffer it needs is allocated in `init`, so a step allocates nothing. Calls must come
/// from one thread at a time, as for ``Communicator``.
final class GradientAllreduce: @unchecked Sendable {
  // @unchecked: the buffers are used by one thread at a time, the communication thread of
  // GradientReducer or the compute thread, which hand over through semaphores.

  let communicator: Communicator
  let fusion: AllreduceFusion
  let precision: AllreducePrecision
  /// The number of allreduce calls since the last ``resetCallCount()``.
  private(set) var callCount = 0

  private let buffer: FloatBuffer
  /// The range of the T losses in the buffer, which stay float32.
  private let lossRange: Range<Int>
  /// For each task, the ranges of the buffer that contain its gradients, in buffer order.
  private let taskRanges: [[Range<Int>]]
  /// Float32 staging of one task's gradients and loss (per-task fusion in float32).
  private let staging: UnsafeMutablePointer<Float>?
  /// bfloat16 work space: with fused buffers, the reduce buffer's gradients at the same
  /// offsets; per task, one task's gradients from offset 0.
  private let bfloat16Staging: UnsafeMutablePointer<UInt16>?
  private let stagingCount: Int

  /// Creates the calls for `model`'s ``MultiTaskModel/reduceBuffer``.
  init(
    communicator: Communicator, model: MultiTaskModel, fusion: AllreduceFusion,
    precision: AllreducePrecision
  ) {
    self.communicator = communicator
    self.fusion = fusion
    self.precision = precision
    buffer = model.reduceBuffer
    lossRange = model.lossOffset..<(model.lossOffset + model.taskCount)
    taskRanges = (0..<model.taskCount).map { model.reduceBufferGradientRanges(task: $0) }

    let taskLength = taskRanges.map { $0.reduce(0) { $0 + $1.count } }.max() ?? 0
    switch (fusion, precision) {
    case (.all, .float32):
      staging = nil
      bfloat16Staging = nil
      stagingCount = 0
    case (.perTask, .float32):
      stagingCount = taskLength + 1
      staging = .allocate(capacity: stagingCount)
      bfloat16Staging = nil
    case (.all, .bfloat16):
      stagingCount = lossRange.lowerBound
      staging = nil
      bfloat16Staging = .allocate(capacity: stagingCount)
    case (.perTask, .bfloat16):
      stagingCount = taskLength
      staging = nil
      bfloat16Staging = .allocate(capacity: stagingCount)
    }
  }

  deinit {
    staging?.deallocate()
    bfloat16Staging?.deallocate()
  }

  /// The bytes of staging buffers beside the reduce buffer.
  var stagingBytes: Int {
    stagingCount
      * (precision == .bfloat16 ? MemoryLayout<UInt16>.stride : MemoryLayout<Float>.stride)
  }

  /// Starts counting calls from zero.
  func resetCallCount() { callCount = 0 }

  /// Sums the whole buffer over the ranks, as ``fusion`` groups it.
  ///
  /// Every rank must call it. It blocks until the sums have arrived.
  ///
  /// - Throws: ``MPIError`` when a call fails.
  func reduceAll() throws {
    switch fusion {
    case .all: try reduce(region: buffer.baseAddress, count: buffer.count)
    case .perTask: try reducePerTask()
    }
  }

  /// Sums `count` floats of the buffer from `start` over the ranks in one call, or in two
  /// when the region contains losses and the precision is bfloat16.
  ///
  /// Every rank must call it with the same region. It blocks until the sum has arrived.
  ///
  /// - Throws: ``MPIError`` when a call fails.
  func reduce(region start: UnsafeMutablePointer<Float>, count: Int) throws {
    guard precision == .bfloat16 else {
      callCount += 1
      try communicator.allreduceSum(start, count: count)
      return
    }
    precondition(fusion == .all, "regions are reduced one by one only with fused buffers")
    let offset = start - buffer.baseAddress
    precondition(
      offset >= 0 && offset + count <= buffer.count,
      "region \(offset)..<\(offset + count) is outside the reduce buffer of \(buffer.count)")
    // The losses are the buffer's tail, so a region contains gradients, then perhaps losses.
    let gradientCount = max(min(offset + count, lossRange.lowerBound) - offset, 0)
    if gradientCount > 0, let bfloat16Staging {
      callCount += 1
      try communicator.allreduceSumBFloat16(
        start, count: gradientCount, staging: bfloat16Staging + offset)
    }
    if gradientCount < count {
      callCount += 1
      try communicator.allreduceSum(start + gradientCount, count: count - gradientCount)
    }
  }

  /// Sums each task's gradients and loss in a call of its own, through the staging buffer;
  /// in bfloat16, the losses follow in one float32 call.
  private func reducePerTask() throws {
    for (task, ranges) in taskRanges.enumerated() {
      callCount += 1
      if let staging {
        var length = gather(ranges, into: staging)
        staging[length] = buffer.baseAddress[lossRange.lowerBound + task]
        length += 1
        try communicator.allreduceSum(staging, count: length)
        scatter(ranges, from: staging)
        buffer.baseAddress[lossRange.lowerBound + task] = staging[length - 1]
      } else if let bfloat16Staging {
        var length = 0
        for range in ranges {
          BFloat16.round(
            buffer.baseAddress + range.lowerBound, into: bfloat16Staging + length,
            count: range.count)
          length += range.count
        }
        try communicator.allreduceSumBFloat16(bfloat16Staging, count: length)
        length = 0
        for range in ranges {
          BFloat16.widen(
            bfloat16Staging + length, into: buffer.baseAddress + range.lowerBound,
            count: range.count)
          length += range.count
        }
      }
    }
    if precision == .bfloat16 {
      callCount += 1
      try communicator.allreduceSum(
        buffer.baseAddress + lossRange.lowerBound, count: lossRange.count)
    }
  }

  /// Copies `ranges` of the buffer one after another into `staging` and returns the count.
  private func gather(_ ranges: [Range<Int>], into staging: UnsafeMutablePointer<Float>) -> Int {
    var length = 0
    for range in ranges {
      (staging + length).update(from: buffer.baseAddress + range.lowerBound, count: range.count)
      length += range.count
    }
    return length
  }

  /// Copies `staging` back into `ranges` of the buffer: the inverse of ``gather(_:into:)``.
  private func scatter(_ ranges: [Range<Int>], from staging: UnsafeMutablePointer<Float>) {
    var length = 0
    for range in ranges {
      (buffer.baseAddress + range.lowerBound).update(from: staging + length, count: range.count)
      length += range.count
    }
  }
}

extension MultiTaskModel {
  /// Returns the ranges of ``reduceBuffer`` that contain task `task`'s gradients.
  ///
  /// The ranges are in buffer order: the task's row of each encoder gradient block (per layer,
  /// weight then bias), of each adapter gradient block, then its head's gradients. Its loss is
  /// at ``lossOffset`` + `task`.
  func reduceBufferGradientRanges(task: Int) -> [Range<Int>] {
    var ranges: [Range<Int>] = []
    for block in encoder.gradientBlocks + adapterGradientBlocks {
      let start = block.base - reduceBuffer.baseAddress + task * block.rowStride
      ranges.append(start..<(start + block.columns))
    }
    let head = headRanges[task]
    let start = headGradientStart + head.lowerBound - encoderParameterCount
    ranges.append(start..<(start + head.count))
    return ranges
  }
}
