import CMPIShims
import COpenMPI
import ConcordTensors

#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// The processes of `MPI_COMM_WORLD`, communicating through Open MPI.
///
/// Start the job with `mpirun -np N concord ...`: each process creates one communicator, which
/// initializes MPI. A binary started without `mpirun` becomes an MPI singleton, a group of
/// size 1, and ``isLaunchedByMPI`` distinguishes the two cases before initializing.
///
/// MPI is initialized with `MPI_THREAD_SERIALIZED`, so any thread may make the calls as long as
/// no two calls overlap, and `MPI_COMM_WORLD` gets `MPI_ERRORS_RETURN`, so a failed call throws
/// an ``MPIError`` instead of ending the process inside MPI.
///
/// Call ``finalize()`` only at the end of a successful run. After a fatal error, call
/// ``abort(exitCode:)``: with Open MPI 4.1, a rank that finalizes and then exits with a
/// non-zero status leaves the other ranks waiting, while `MPI_Abort` ends the whole job.
public final class MPICommunicator: Communicator, @unchecked Sendable {
  // @unchecked: the handles are immutable after `init`, and `isFinalized` and the bfloat16
  // operation change only in `finalize()`, which like every other call must not overlap
  // another call.

  public let rank: Int
  public let size: Int

  /// Whether ``finalize()`` has run.
  ///
  /// No MPI call is allowed afterwards.
  public private(set) var isFinalized = false

  /// The largest element count passed to one MPI call: counts are `Int32` in the C interface.
  static let maximumChunk = 1 << 30

  private let world: MPI_Comm
  private let floatType: MPI_Datatype
  private let doubleType: MPI_Datatype
  private let int64Type: MPI_Datatype
  private let byteType: MPI_Datatype
  private let uint16Type: MPI_Datatype
  private let sumOperation: MPI_Op
  private let maxOperation: MPI_Op
  /// The commutative operation that sums bfloat16 values in float32 (``BFloat16/accumulate``).
  private var bfloat16SumOperation: MPI_Op?
  private let inPlace: UnsafeRawPointer?

  /// Whether this process was started by an MPI launcher such as `mpirun` or `srun`.
  ///
  /// Reads the variables that launchers set for each process: `OMPI_COMM_WORLD_SIZE` (Open
  /// MPI's `mpirun`), `PMI_SIZE` (MPICH's Hydra, Slurm with PMI) and `PMIX_RANK` (PMIx).
  public static var isLaunchedByMPI: Bool {
    let names: [String] = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"]
    return names.contains { name in getenv(name) != nil }
  }

  /// Initializes MPI and joins `MPI_COMM_WORLD`.
  ///
  /// Create one communicator per process: MPI can be initialized only once.
  ///
  /// - Throws: ``MPIInitializationError`` when MPI was already initialized or finalized, or
  ///   when it cannot provide `MPI_THREAD_SERIALIZED`, and ``MPIError`` when a call fails. After a
  ///   thrown error, exit with a non-zero status without finalizing.
  public init() throws {
    var initialized: Int32 = 0
    var finalized: Int32 = 0
    try mpiCheck(MPI_Initialized(&initialized), "MPI_Initialized")
    try mpiCheck(MPI_Finalized(&finalized), "MPI_Finalized")
    guard initialized == 0, finalized == 0 else {
      throw MPIInitializationError(
        reason: "MPI is already \(finalized != 0 ? "finalized" : "initialized") in this "
          + "process; create exactly one MPICommunicator per process")
    }

    var provided: Int32 = 0
    let required = Int32(MPI_THREAD_SERIALIZED)
    try mpiCheck(MPI_Init_thread(nil, nil, required, &provided), "MPI_Init_thread")
    guard provided >= required else {
      throw MPIInitializationError(
        reason: "MPI provides thread level \(provided), below MPI_THREAD_SERIALIZED "
          + "(\(required)); use an Open MPI build with thread support")
    }

    world = concord_mpi_comm_world()
    floatType = concord_mpi_float()
    doubleType = concord_mpi_double()
    int64Type = concord_mpi_int64()
    byteType = concord_mpi_byte()
    uint16Type = concord_mpi_uint16()
    sumOperation = concord_mpi_sum()
    maxOperation = concord_mpi_max()
    inPlace = UnsafeRawPointer(concord_mpi_in_place())
    try mpiCheck(
      MPI_Comm_set_errhandler(world, concord_mpi_errors_return()), "MPI_Comm_set_errhandler")

    var rank: Int32 = 0
    var size: Int32 = 0
    try mpiCheck(MPI_Comm_rank(world, &rank), "MPI_Comm_rank")
    try mpiCheck(MPI_Comm_size(world, &size), "MPI_Comm_size")
    self.rank = Int(rank)
    self.size = Int(size)

    var operation: MPI_Op?
    try mpiCheck(MPI_Op_create(bfloat16SumFunction, 1, &operation), "MPI_Op_create")
    bfloat16SumOperation = operation
  }

  /// Shuts MPI down, once on every rank at the end of a successful run.
  ///
  /// Blocks until the other ranks finalize too, so never call it on a path where another
  /// rank may be waiting in a collective: call ``abort(exitCode:)`` there.
  ///
  /// - Throws: ``MPIError`` when `MPI_Finalize` fails.
  public func finalize() throws {
    guard !isFinalized else { return }
    isFinalized = true
    try mpiCheck(MPI_Op_free(&bfloat16SumOperation), "MPI_Op_free")
    try mpiCheck(MPI_Finalize(), "MPI_Finalize")
  }

  public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
    precondition(count >= 0, "allreduceSum count must be non-negative, got \(count)")
    try forEachChunk(of: count) { offset, length in
      try mpiCheck(
        MPI_Allreduce(inPlace, buffer + offset, length, floatType, sumOperation, world),
        "MPI_Allreduce")
    }
  }

  public func allreduceSum(_ values: inout [Double]) throws {
    try allreduce(&values, sumOperation)
  }

  public func allreduceSumBFloat16(_ buffer: UnsafeMutablePointer<UInt16>, count: Int) throws {
    precondition(count >= 0, "allreduceSumBFloat16 count must be non-negative, got \(count)")
    try forEachChunk(of: count) { offset, length in
      try mpiCheck(
        MPI_Allreduce(
          inPlace, buffer + offset, length, uint16Type, bfloat16SumOperation, world),
        "MPI_Allreduce")
    }
  }

  /// Sums `count` floats of `send` over the ranks into `receive` with one `MPI_Allreduce`
  /// (`MPI_FLOAT`, `MPI_SUM`) made by the C shim: the baseline that benchmarks compare
  /// ``allreduceSum(_:count:)`` with.
  ///
  /// All ranks call it with the same `count`, and it blocks until the sum has arrived.
  ///
  /// - Throws: ``MPIError`` when the call fails.
  public func plainAllreduceSum(
    _ send: UnsafePointer<Float>, into receive: UnsafeMutablePointer<Float>, count: Int
  ) throws {
    precondition(
      (0...Int(Int32.max)).contains(count), "plainAllreduceSum count \(count) is not an Int32")
    checkRunning()
    try mpiCheck(
      concord_mpi_allreduce_float_sum(send, receive, Int32(count)), "MPI_Allreduce")
  }

  public func allreduceMax(_ values: inout [Double]) throws {
    try allreduce(&values, maxOperation)
  }

  /// Replaces `values` in place with the result of `operation` over the ranks.
  private func allreduce(_ values: inout [Double], _ operation: MPI_Op) throws {
    try values.withUnsafeMutableBufferPointer { values in
      guard let base = values.baseAddress else { return }
      try forEachChunk(of: values.count) { offset, length in
        try mpiCheck(
          MPI_Allreduce(inPlace, base + offset, length, doubleType, operation, world),
          "MPI_Allreduce")
      }
    }
  }

  public func allreduceMax(_ value: Int) throws -> Int {
    checkRunning()
    var maximum = Int64(value)
    try mpiCheck(
      MPI_Allreduce(inPlace, &maximum, 1, int64Type, maxOperation, world), "MPI_Allreduce")
    return Int(maximum)
  }

  public func broadcast(_ bytes: inout [UInt8], root: Int) throws {
    precondition((0..<size).contains(root), "broadcast root \(root) is not in 0..<\(size)")
    checkRunning()
    // The other ranks learn the length first, so they can size their arrays to receive.
    var length = Int64(bytes.count)
    try mpiCheck(MPI_Bcast(&length, 1, int64Type, Int32(root), world), "MPI_Bcast")
    precondition(length >= 0, "broadcast received a negative length \(length) from rank \(root)")
    if bytes.count != Int(length) {
      bytes = [UInt8](repeating: 0, count: Int(length))
    }
    try bytes.withUnsafeMutableBytes { raw in
      guard let base = raw.baseAddress else { return }
      try forEachChunk(of: raw.count) { offset, length in
        try mpiCheck(
          MPI_Bcast(base + offset, length, byteType, Int32(root), world), "MPI_Bcast")
      }
    }
  }

  public func allgather(_ value: Int64) throws -> [Int64] {
    checkRunning()
    var local = value
    var values = [Int64](repeating: 0, count: size)
    try mpiCheck(
      MPI_Allgather(&local, 1, int64Type, &values, 1, int64Type, world), "MPI_Allgather")
    return values
  }

  public func allgather(
    _ local: UnsafePointer<Float>, count: Int, into all: UnsafeMutablePointer<Float>
  ) throws {
    checkBlockCount(count, "allgather")
    try mpiCheck(
      MPI_Allgather(local, Int32(count), floatType, all, Int32(count), floatType, world),
      "MPI_Allgather")
  }

  public func reduceScatterSum(
    _ all: UnsafePointer<Float>, into local: UnsafeMutablePointer<Float>, count: Int
  ) throws {
    checkBlockCount(count, "reduceScatterSum")
    try mpiCheck(
      MPI_Reduce_scatter_block(all, local, Int32(count), floatType, sumOperation, world),
      "MPI_Reduce_scatter_block")
  }

  /// Checks that the `size * count` floats of an allgather or reduce-scatter fit the `Int32` counts
  /// of the C interface.
  ///
  /// Unlike the allreduce, these calls are not split into pieces, because each rank's block would
  /// have to be split alike. The SimCLR projections they move are far smaller than the limit.
  private func checkBlockCount(_ count: Int, _ name: String) {
    checkRunning()
    precondition(
      count >= 0 && count * size <= Int(Int32.max),
      "\(name) of \(count) floats per rank on \(size) ranks exceeds MPI's Int32 counts")
  }

  public func gather(_ bytes: [UInt8], root: Int) throws -> [[UInt8]] {
    precondition((0..<size).contains(root), "gather root \(root) is not in 0..<\(size)")
    // Every rank learns every length, not only the root as with MPI_Gather, because every
    // rank must make the same number of MPI_Gatherv calls below.
    let lengths = try allgather(Int64(bytes.count)).map { Int($0) }

    // MPI_Gatherv takes Int32 counts and displacements into one receive buffer, so each
    // call moves at most maximumChunk bytes in all: a piece of up to maximumChunk / size
    // bytes from every rank.
    let piece = max(Self.maximumChunk / size, 1)
    let rounds = ((lengths.max() ?? 0) + piece - 1) / piece
    var gathered = rank == root ? lengths.map { [UInt8](repeating: 0, count: $0) } : []
    let largestRound = lengths.map { min($0, piece) }.reduce(0, +)
    var received = [UInt8](repeating: 0, count: rank == root ? largestRound : 0)

    for round in 0..<rounds {
      let offset = round * piece
      let counts = lengths.map { Int32(min(max($0 - offset, 0), piece)) }
      var displacements = [Int32](repeating: 0, count: size)
      for r in 1..<max(size, 1) { displacements[r] = displacements[r - 1] + counts[r - 1] }

      try bytes.withUnsafeBytes { send in
        try received.withUnsafeMutableBytes { receive in
          try mpiCheck(
            MPI_Gatherv(
              send.baseAddress.map { $0 + min(offset, send.count) }, counts[rank], byteType,
              receive.baseAddress, counts, displacements, byteType, Int32(root), world),
            "MPI_Gatherv")
        }
      }

      guard rank == root else { continue }
      for r in 0..<size where counts[r] > 0 {
        let start = Int(displacements[r])
        gathered[r].replaceSubrange(
          offset..<(offset + Int(counts[r])), with: received[start..<(start + Int(counts[r]))])
      }
    }
    return gathered
  }

  public func barrier() throws {
    checkRunning()
    try mpiCheck(MPI_Barrier(world), "MPI_Barrier")
  }

  public func abort(exitCode: Int32) -> Never {
    if !isFinalized { MPI_Abort(world, exitCode) }
    // MPI_Abort does not return in Open MPI. Exit covers the case of a finalized MPI.
    exit(exitCode)
  }

  /// Calls `body` with the offset and length of consecutive pieces of `count` elements, each
  /// at most ``maximumChunk`` long.
  ///
  /// Every rank passes the same `count`, so all ranks make the same sequence of MPI calls.
  private func forEachChunk(of count: Int, _ body: (Int, Int32) throws -> Void) throws {
    checkRunning()
    var offset = 0
    while offset < count {
      let length = min(count - offset, Self.maximumChunk)
      try body(offset, Int32(length))
      offset += length
    }
  }

  private func checkRunning() {
    precondition(!isFinalized, "MPI collective called after finalize() on rank \(rank)")
  }
}

/// MPI could not be initialized as Concord needs it.
public struct MPIInitializationError: Error, CustomStringConvertible {
  /// The problem and the fix, as one sentence.
  public let reason: String

  /// One line: what is wrong and what to do.
  public var description: String { "cannot start MPI: \(reason)" }
}

/// The reduction function of ``MPICommunicator``'s bfloat16 sum, in the form `MPI_Op_create`
/// takes: `inoutvec[i] = round(invec[i] + inoutvec[i])` for `len` values.
private func bfloat16SumFunction(
  _ input: UnsafeMutableRawPointer?, _ inputOutput: UnsafeMutableRawPointer?,
  _ length: UnsafeMutablePointer<Int32>?, _ datatype: UnsafeMutablePointer<MPI_Datatype?>?
) {
  guard let input, let inputOutput, let length else { return }
  BFloat16.accumulate(
    input.assumingMemoryBound(to: UInt16.self),
    into: inputOutput.assumingMemoryBound(to: UInt16.self), count: Int(length.pointee))
}
