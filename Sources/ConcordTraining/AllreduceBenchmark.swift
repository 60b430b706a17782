import ConcordDistributed
import ConcordTensors
import Foundation

/// The settings of `concord bench allreduce`.
public struct AllreduceBenchmarkOptions: Sendable {
  /// The smallest message in bytes of float32 data, a positive multiple of 4.
  public var minimumBytes = 4096
  /// The largest message in bytes, at least ``minimumBytes``.
  public var maximumBytes = 67_108_864
  /// Timed iterations per size; nil picks as many as fit in about a second, at least 5 and
  /// at most 1000.
  public var repeats: Int? = nil
  /// Untimed iterations per size before the timed ones, at least 1.
  public var warmup = 3

  /// Creates the default settings.
  public init() {}

  /// Returns the message sizes: from ``minimumBytes`` doubling up to ``maximumBytes``, and
  /// 8 MiB when it lies in that range, ascending.
  public var messageSizes: [Int] {
    var sizes: [Int] = []
    var bytes = minimumBytes
    while bytes <= maximumBytes {
      sizes.append(bytes)
      bytes *= 2
    }
    let eightMiB = 8 << 20
    if (minimumBytes...maximumBytes).contains(eightMiB) && !sizes.contains(eightMiB) {
      sizes.append(eightMiB)
      sizes.sort()
    }
    return sizes
  }
}

/// The times of one allreduce path at one message size, in microseconds.
public struct AllreduceTimes: Sendable {
  /// The median sample.
  public var median: Double
  /// The 10th percentile.
  public var p10: Double
  /// The 90th percentile.
  public var p90: Double
}

/// The figures of one message size of `concord bench allreduce`.
public struct AllreduceBenchmarkRow: Sendable {
  /// The message in bytes of float32 data.
  public var bytes: Int
  /// The number of ranks.
  public var ranks: Int
  /// The timed iterations.
  public var repeats: Int
  /// `MPI_Allreduce` of `MPI_FLOAT` with `MPI_SUM` from a send buffer into a receive buffer.
  public var plain: AllreduceTimes
  /// ``Communicator/allreduceSum(_:count:)``, in place.
  public var concord: AllreduceTimes
  /// ``Communicator/allreduceSumBFloat16(_:count:staging:)`` of the same floats: rounding,
  /// the 16-bit allreduce and widening.
  public var bfloat16: AllreduceTimes

  /// Returns the algorithm bandwidth of `times` in GB/s (10^9 bytes per second): ``bytes``
  /// over the median time.
  public func algorithmBandwidth(_ times: AllreduceTimes) -> Double {
    Double(bytes) / (times.median * 1e3)
  }

  /// Returns the bus bandwidth of `times` in GB/s: the algorithm bandwidth times
  /// `2 (p - 1) / p`, as nccl-tests define it, which is 0 for one rank.
  ///
  /// The factor is the share of the data that each rank sends and receives in a ring
  /// allreduce, so the bus bandwidth compares with the bandwidth of the links.
  public func busBandwidth(_ times: AllreduceTimes) -> Double {
    algorithmBandwidth(times) * 2 * Double(ranks - 1) / Double(ranks)
  }

  /// The header of the lines of ``textLines``.
  public static let textHeader =
    "     bytes  path      repeats     median        p10        p90  algbw GB/s  busbw GB/s"
    + "  vs plain"

  /// Returns three lines, one per path, in the columns of ``textHeader``; "vs plain" is the
  /// path's median time over the plain one.
  public var textLines: [String] {
    let paths = [("plain", plain), ("concord", concord), ("bfloat16", bfloat16)]
    return paths.enumerated().map { index, path in
      let (name, times) = path
      let size = index == 0 ? String(bytes) : ""
      return pad(size, 10) + "  " + name.padding(toLength: 8, withPad: " ", startingAt: 0)
        + pad(String(repeats), 9) + pad(format(times.median, 1), 11) + pad(format(times.p10, 1), 11)
        + pad(format(times.p90, 1), 11) + pad(format(algorithmBandwidth(times), 3), 12)
        + pad(format(busBandwidth(times), 3), 12) + pad(format(times.median / plain.median, 2), 10)
    }
  }

  /// Returns one JSON object with fixed keys, times in microseconds and bandwidths in GB/s.
  public var jsonLine: String {
    var line = JSONLine()
    line.add("bytes", bytes)
    line.add("floats", bytes / MemoryLayout<Float>.stride)
    line.add("ranks", ranks)
    line.add("repeats", repeats)
    let paths = [("plain", plain), ("concord", concord), ("bfloat16", bfloat16)]
    for (name, times) in paths {
      line.add(name + "_us", [("median", times.median), ("p10", times.p10), ("p90", times.p90)])
    }
    for (name, times) in paths {
      line.add(name + "_algbw_gbps", algorithmBandwidth(times))
      line.add(name + "_busbw_gbps", busBandwidth(times))
    }
    line.add("concord_plain_ratio", concord.median / plain.median)
    line.add("bfloat16_plain_ratio", bfloat16.median / plain.median)
    return line.text
  }

  private func pad(_ text: String, _ width: Int) -> String {
    String(repeating: " ", count: max(width - text.count, 0)) + text
  }

  private func format(_ value: Double, _ digits: Int) -> String {
    String(format: "%.\(digits)f", value)
  }
}

/// Measures three allreduce paths of the same float32 data at a range of message sizes: a
/// plain `MPI_Allreduce` called through the C shim, Concord's in-place
/// ``Communicator/allreduceSum(_:count:)``, and its bfloat16 allreduce.
///
/// Each iteration runs the three paths in turn, each after a barrier, so that drift in the
/// machine's load reaches all three alike. A sample is the slowest rank's time of one call,
/// found with one `allreduceMax` of all samples after the loop. Before timing, each path's sum
/// is checked once against the sum that every rank can compute alone.
public enum AllreduceBenchmark {
  /// Runs the benchmark and calls `report` with each size's figures, smallest first, on every
  /// rank.
  ///
  /// Every rank must call it with the same options.
  ///
  /// - Throws: ``TrainingError`` when a path returns a wrong sum, ``MPIError`` when a call
  ///   fails.
  public static func run(
    communicator: MPICommunicator, options: AllreduceBenchmarkOptions,
    report: (AllreduceBenchmarkRow) -> Void
  ) throws {
    precondition(options.warmup >= 1, "warmup must be at least 1, got \(options.warmup)")
    let capacity = options.maximumBytes / MemoryLayout<Float>.stride
    let send = FloatBuffer(count: capacity)
    let receive = FloatBuffer(count: capacity)
    let staging = UnsafeMutablePointer<UInt16>.allocate(capacity: capacity)
    defer { staging.deallocate() }
    let buffers = Buffers(send: send, receive: receive, staging: staging)

    for bytes in options.messageSizes {
      let count = bytes / MemoryLayout<Float>.stride
      try collectively(communicator) {
        try checkSums(count: count, buffers: buffers, communicator: communicator)
      }
      report(
        try measure(count: count, buffers: buffers, options: options, communicator: communicator))
    }
  }

  /// The three paths' buffers, sized for the largest message.
  private struct Buffers {
    let send: FloatBuffer
    let receive: FloatBuffer
    let staging: UnsafeMutablePointer<UInt16>
  }

  private enum Path: Int, CaseIterable {
    case plain, concord, bfloat16
  }

  private static func call(
    _ path: Path, count: Int, buffers: Buffers, communicator: MPICommunicator
  ) throws {
    switch path {
    case .plain:
      try communicator.plainAllreduceSum(
        buffers.send.baseAddress, into: buffers.receive.baseAddress, count: count)
    case .concord:
      try communicator.allreduceSum(buffers.receive.baseAddress, count: count)
    case .bfloat16:
      try communicator.allreduceSumBFloat16(
        buffers.receive.baseAddress, count: count, staging: buffers.staging)
    }
  }

  /// Times the three paths at `count` floats and returns the percentiles of the slowest
  /// rank's samples.
  private static func measure(
    count: Int, buffers: Buffers, options: AllreduceBenchmarkOptions,
    communicator: MPICommunicator
  ) throws -> AllreduceBenchmarkRow {
    // Returns the microseconds of one call of each path, each after a barrier.
    func iteration() throws -> [Double] {
      try Path.allCases.map { path in
        try communicator.barrier()
        let start = StepRecorder.now()
        try call(path, count: count, buffers: buffers, communicator: communicator)
        return Double(StepRecorder.now() - start) / 1e3
      }
    }

    // The fastest warm-up iteration estimates an iteration's time, unaffected by a pause.
    var fastest = Double.infinity
    for _ in 0..<options.warmup { fastest = min(fastest, try iteration().reduce(0, +)) }
    var repeats = options.repeats ?? 0
    if repeats == 0 {
      // Every rank must loop equally often, so the ranks agree on the slowest estimate.
      var estimate = [fastest]
      try communicator.allreduceMax(&estimate)
      repeats = min(max(Int(1e6 / max(estimate[0], 1)), 5), 1000)
    }

    // Sample i of path p at index p * repeats + i.
    var samples = [Double](repeating: 0, count: Path.allCases.count * repeats)
    for i in 0..<repeats {
      for (p, microseconds) in try iteration().enumerated() {
        samples[p * repeats + i] = microseconds
      }
    }
    try communicator.allreduceMax(&samples)

    func times(_ path: Path) -> AllreduceTimes {
      let start = path.rawValue * repeats
      let sorted = samples[start..<(start + repeats)].sorted()
      return AllreduceTimes(
        median: StepBenchmark.percentile(sorted, 0.5), p10: StepBenchmark.percentile(sorted, 0.1),
        p90: StepBenchmark.percentile(sorted, 0.9))
    }
    return AllreduceBenchmarkRow(
      bytes: count * MemoryLayout<Float>.stride, ranks: communicator.size, repeats: repeats,
      plain: times(.plain), concord: times(.concord), bfloat16: times(.bfloat16))
  }

  /// Runs each path once on values whose sums are exact in float32 and in bfloat16, and
  /// checks every element against the sum computed locally.
  ///
  /// Rank r contributes `(i + r) % 2` at index i, so every partial sum is an integer of at
  /// most the rank count. bfloat16's 8-bit significand represents those exactly up to 256
  /// ranks, and beyond that the bfloat16 sum is not checked.
  private static func checkSums(count: Int, buffers: Buffers, communicator: MPICommunicator)
    throws
  {
    let ranks = communicator.size
    func fill(_ buffer: FloatBuffer) {
      for i in 0..<count { buffer.baseAddress[i] = Float((i + communicator.rank) % 2) }
    }
    // The number of ranks r in 0..<p with i + r odd: p / 2, plus one when p and i are odd.
    func expected(_ i: Int) -> Float { Float(ranks / 2 + (ranks % 2 == 1 && i % 2 == 1 ? 1 : 0)) }

    for path in Path.allCases where path != .bfloat16 || ranks <= 256 {
      fill(buffers.send)
      fill(buffers.receive)
      try call(path, count: count, buffers: buffers, communicator: communicator)
      for i in 0..<count where buffers.receive.baseAddress[i] != expected(i) {
        throw TrainingError(
          "bench allreduce: the \(path) allreduce of \(count) floats on \(ranks) ranks returned "
            + "\(buffers.receive.baseAddress[i]) at index \(i) where the sum is \(expected(i)); "
            + "report this with the Open MPI version (ompi_info)")
      }
    }
  }
}
