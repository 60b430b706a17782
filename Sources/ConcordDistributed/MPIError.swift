import CMPIShims
import COpenMPI

/// A failed MPI call, with MPI's own error text and the place of the call.
public struct MPIError: Error, CustomStringConvertible {
  /// The MPI function that failed, such as `MPI_Allreduce`.
  public let call: String
  /// The error code the call returned.
  public let code: Int32
  /// MPI's text for ``code``, from `MPI_Error_string`.
  public let message: String
  /// The rank of the failing process, or `nil` when MPI is not running.
  public let rank: Int?
  /// The source file of the call, as `#fileID`.
  public let file: String
  /// The source line of the call.
  public let line: UInt

  /// One line: the rank, the call, MPI's message, the call site and what to check.
  public var description: String {
    let origin = rank.map { "rank \($0)" } ?? "MPI"
    return "\(origin): \(call) failed with error \(code) (\(message)) at \(file):\(line); "
      + "check that every rank calls the same collectives in the same order with matching "
      + "counts, and that mpirun started all ranks"
  }
}

/// Throws an ``MPIError`` when `code`, the result of the MPI function `call`, is not success.
///
/// Communicators set `MPI_ERRORS_RETURN` on `MPI_COMM_WORLD`, so failed calls return their
/// code here instead of ending the process inside MPI.
///
/// - Throws: ``MPIError`` naming `call`, MPI's text for `code`, this process's rank and the
///   call site.
public func mpiCheck(
  _ code: Int32, _ call: String, file: StaticString = #fileID, line: UInt = #line
) throws {
  guard code != MPI_SUCCESS else { return }
  let rank = currentMPIRank()
  // Open MPI 4.1 aborts the process when MPI_Error_string runs before MPI_Init or after
  // MPI_Finalize, so the text is looked up only while MPI is running.
  let message = rank == nil ? "MPI is not running" : mpiErrorString(code)
  throw MPIError(call: call, code: code, message: message, rank: rank, file: "\(file)", line: line)
}

/// Returns MPI's text for `code`, valid only between `MPI_Init` and `MPI_Finalize`.
private func mpiErrorString(_ code: Int32) -> String {
  var text = [CChar](repeating: 0, count: Int(MPI_MAX_ERROR_STRING) + 1)
  var length: Int32 = 0
  guard MPI_Error_string(code, &text, &length) == MPI_SUCCESS else {
    return "unknown MPI error code"
  }
  return String(decoding: text.prefix(Int(length)).map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Returns this process's rank in `MPI_COMM_WORLD`, or `nil` when MPI is not running.
private func currentMPIRank() -> Int? {
  var initialized: Int32 = 0
  var finalized: Int32 = 0
  MPI_Initialized(&initialized)
  MPI_Finalized(&finalized)
  guard initialized != 0, finalized == 0 else { return nil }
  var rank: Int32 = 0
  guard MPI_Comm_rank(concord_mpi_comm_world(), &rank) == MPI_SUCCESS else { return nil }
  return Int(rank)
}
