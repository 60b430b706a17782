#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A group of one process, for training and tests without MPI.
///
/// With one rank every collective is the identity: sums and maxima return the local values,
/// and a broadcast from rank 0 leaves the bytes as they are.
public final class SingleProcessCommunicator: Communicator, Sendable {
  public let rank = 0
  public let size = 1

  /// Creates the group of this process alone.
  public init() {}

  public func allreduceSum(_ buffer: UnsafeMutablePointer<Float>, count: Int) throws {
    precondition(count >= 0, "allreduceSum count must be non-negative, got \(count)")
  }

  public func allreduceSum(_ values: inout [Double]) throws {}

  public func allreduceSumBFloat16(_ buffer: UnsafeMutablePointer<UInt16>, count: Int) throws {
    precondition(count >= 0, "allreduceSumBFloat16 count must be non-negative, got \(count)")
  }

  public func allreduceMax(_ value: Int) throws -> Int { value }

  public func allreduceMax(_ values: inout [Double]) throws {}

  public func broadcast(_ bytes: inout [UInt8], root: Int) throws {
    precondition(root == 0, "broadcast root \(root) is not a rank of a group of size 1")
  }

  public func allgather(_ value: Int64) throws -> [Int64] { [value] }

  public func allgather(
    _ local: UnsafePointer<Float>, count: Int, into all: UnsafeMutablePointer<Float>
  ) throws {
    precondition(count >= 0, "allgather count must be non-negative, got \(count)")
    all.update(from: local, count: count)
  }

  public func reduceScatterSum(
    _ all: UnsafePointer<Float>, into local: UnsafeMutablePointer<Float>, count: Int
  ) throws {
    precondition(count >= 0, "reduceScatterSum count must be non-negative, got \(count)")
    local.update(from: all, count: count)
  }

  public func barrier() throws {}

  public func abort(exitCode: Int32) -> Never {
    exit(exitCode)
  }
}
