import ConcordTensors

/// The group of processes (ranks) that train together, and the collective operations on it.
///
/// Every operation here is a collective: all ranks of the group must call it, in the same
/// order relative to the other collectives, with matching arguments (the same `count`, the
/// same `root`), and it blocks until the local rank's part is complete. A rank that skips a
/// collective or calls another one leaves the others waiting forever, so a rank that fails
/// between collectives should agree on the failure with the others through
/// ``allreduceMax(_:)`` or end the job with ``abort(exitCode:)``.
///
/// Implementations are not safe for concurrent use: calls must come from one thread at a time.
public protocol Communicator: AnyObject {
  /// The index of this process in the group, in `0..<size`.
  var rank: Int { get }

  /// The number of processes in the group.
  var size: Int { get }

  /// Whether this process is rank 0, the one that logs and writes files.
  var isRoot: Bool { get }

  /// Replaces `buffer[0..<count]` on every rank with the element-wise sum over all ranks.
  ///
  /// All ranks call it with the same `count`. It blocks until the sum has arrived.
  ///
  /// - Throws: ``MPIError`` when the communication fails.
  func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws

  /// Replaces `values` on every rank with the element-wise sum over all ranks.
  ///
  /// All ranks call it with arrays of the same length. It blocks until the sum has arrived.
  ///
  /// - Throws: ``MPIError`` when the communication fails.
  func allreduceSum(_ values: inout [Double]) throws

  /// Replaces `buffer[0..<count]`, bfloat16 bit patterns, on every rank with their
  /// element-wise sum over all ranks.
  ///
  /// Each addition of two bfloat16 values is done in float32 and rounded back to bfloat16
  /// (``BFloat16/sum(_:_:)``). That sum is commutative but not associative, so with more
  /// than two ranks the result depends on the order in which MPI adds the ranks' values. All
  /// ranks call it with the same `count`. It blocks until the sum has arrived.
  ///
  /// - Throws: ``MPIError`` when the communication fails.
  func allreduceSumBFloat16(_ buffer: UnsafeMutablePointer<UInt16>, count: Int) throws

  /// Returns the maximum of `value` over all ranks, the same on every rank.
  ///
  /// All ranks call it, and it blocks until every rank has contributed. With `value` set to 1 on
  /// failure and 0 otherwise, all ranks learn whether any of them failed.
  ///
  /// - Throws: ``MPIError`` when the communication fails.
  func allreduceMax(_ value: Int) throws -> Int

  /// Replaces each element of `values` on every rank with its maximum over all ranks.
  ///
  /// All ranks call it with arrays of the same length. It blocks until every rank has
  /// contributed.
  ///
  /// - Throws: ``MPIError`` when the communication fails.
  func allreduceMax(_ values: inout [Double]) throws

  /// Replaces `bytes` on every rank with the bytes of rank `root`, resizing as needed.
  ///
  /// All ranks call it with the same `root`, and the other ranks' arrays may have any length.
  /// It blocks until the bytes have arrived, and on `root` until they are sent.
  ///
  /// - Throws: ``MPIError`` when the communication fails.
  func broadcast(_ bytes: inout [UInt8], root: Int) throws

  /// Returns the `value` of every rank, indexed by rank.
  ///
  /// All ranks call it, and it blocks until every rank has contributed.
  ///
  /// - Throws: ``MPIError`` when the communication fails.
  func allgather(_ value: Int64) throws -> [Int64]

  /// Writes every rank's `count` floats of `local` into `all`, rank r's at
  /// `all[r * count ..< (r + 1) * count]`, on every rank.
  ///
  /// All ranks call it with the same `count`; `all` has room for `size * count` floats and must not
  /// overlap `local`. It blocks until every rank's floats have arrived.
  ///
  /// - Throws: ``MPIError`` when the communication fails.
  func allgather(_ local: UnsafePointer<Float>, count: Int, into all: UnsafeMutablePointer<Float>)
    throws

  /// Sums `all`, `size * count` floats, element-wise over the ranks and writes rank r's block
  /// of the sum, `sum[r * count ..< (r + 1) * count]`, into `local` on rank r.
  ///
  /// The inverse of ``allgather(_:count:into:)`` in its data movement: a reduce-scatter. All
  /// ranks call it with the same `count`; `local` must not overlap `all`. It blocks until this
  /// rank's block of the sum has arrived.
  ///
  /// - Throws: ``MPIError`` when the communication fails.
  func reduceScatterSum(
    _ all: UnsafePointer<Float>, into local: UnsafeMutablePointer<Float>, count: Int) throws

  /// Returns every rank's `bytes`, indexed by rank, on rank `root`, and an empty array on
  /// the other ranks.
  ///
  /// All ranks call it with the same `root`; the arrays may differ in length. It blocks until
  /// this rank's bytes are sent, and on `root` until every rank's bytes have arrived.
  ///
  /// - Throws: ``MPIError`` when the communication fails.
  func gather(_ bytes: [UInt8], root: Int) throws -> [[UInt8]]

  /// Returns once every rank has called it.
  ///
  /// - Throws: ``MPIError`` when the communication fails.
  func barrier() throws

  /// Ends every process of the job with `exitCode`, without waiting for the other ranks.
  ///
  /// Any single rank may call it: use it after reporting a fatal error that the other ranks
  /// may not have seen, because a rank that just exits can leave them blocked in a collective.
  func abort(exitCode: Int32) -> Never
}

extension Communicator {
  public var isRoot: Bool { rank == 0 }

  /// Gathers by broadcasting each rank's bytes in turn: `size` broadcasts, for
  /// communicators without a gather of their own.
  public func gather(_ bytes: [UInt8], root: Int) throws -> [[UInt8]] {
    var gathered: [[UInt8]] = []
    for sender in 0..<size {
      var message = sender == rank ? bytes : []
      try broadcast(&message, root: sender)
      if rank == root { gathered.append(message) }
    }
    return gathered
  }

  /// Replaces the elements of `buffer` on every rank with their sum over all ranks.
  ///
  /// All ranks call it with buffers of the same count. It blocks until the sum has arrived.
  ///
  /// - Throws: ``MPIError`` when the communication fails.
  public func allreduceSum(_ buffer: FloatBuffer) throws {
    try allreduceSum(buffer.baseAddress, count: buffer.count)
  }

  /// Replaces `buffer[0..<count]` on every rank with the element-wise sum over all ranks of
  /// the values rounded to bfloat16, widened back to float32.
  ///
  /// Sends half the bytes of ``allreduceSum(_:count:)``. Every value is rounded to the
  /// nearest bfloat16 (``BFloat16``), the ranks sum the rounded values with
  /// ``allreduceSumBFloat16(_:count:)``, and each widened sum replaces its float in `buffer`.
  /// All ranks call it with the same `count`, and it blocks until the sum has arrived.
  ///
  /// - Parameter staging: at least `count` values of work space, which it overwrites.
  /// - Throws: ``MPIError`` when the communication fails.
  public func allreduceSumBFloat16(
    _ buffer: UnsafeMutablePointer<Float>, count: Int, staging: UnsafeMutablePointer<UInt16>
  ) throws {
    BFloat16.round(buffer, into: staging, count: count)
    try allreduceSumBFloat16(staging, count: count)
    BFloat16.widen(staging, into: buffer, count: count)
  }
}
