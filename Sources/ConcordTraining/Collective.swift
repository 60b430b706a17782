import ConcordDistributed

/// A failure that every rank has agreed on, so that every rank can exit alike.
///
/// Only one rank prints it: rank 0 when it failed itself, otherwise each rank that failed.
public struct CollectiveFailure: Error, CustomStringConvertible {
  /// The failure of this rank, or nil when only other ranks failed.
  public let underlying: Error?
  /// Whether this rank should print the failure.
  public let shouldPrint: Bool
  /// Whether a failing rank's error was a ``UsageError``, the same on every rank, so that
  /// every rank picks the same exit code.
  public let isUsageError: Bool

  public var description: String {
    underlying.map(systemErrorDescription) ?? "another rank failed"
  }
}

/// Runs `body` on every rank and, if it throws on any rank, throws ``CollectiveFailure``
/// on every rank.
///
/// Every rank must call it at the same point, as any collective; it blocks until all have.
/// Use it around work that may fail on some ranks and not others (reading files, creating
/// folders), before the next collective, which would otherwise wait forever for a rank
/// that has given up.
public func collectively<T>(_ communicator: Communicator, _ body: () throws -> T) throws -> T {
  let result: Result<T, Error>
  do {
    result = .success(try body())
  } catch {
    result = .failure(error)
  }
  var failed = 0
  var usage = 0
  if case .failure(let error) = result {
    failed = 1
    let isUsage = (error as? CollectiveFailure)?.isUsageError ?? (error is UsageError)
    usage = isUsage ? 1 : 0
  }
  // Bit 0: some rank failed. Bit 1: rank 0 failed. Bit 2: some rank's error is a usage error.
  // The maximum of the ranks' flags keeps the highest bit set by any rank, so bit 2 is
  // agreed on separately.
  let flags = try communicator.allreduceMax(failed | (communicator.isRoot ? failed << 1 : 0))
  guard flags != 0 else { return try result.get() }
  let isUsageError = try communicator.allreduceMax(usage) == 1
  switch result {
  case .failure(let error as CollectiveFailure):
    // Already agreed on in a nested call: keep who prints.
    throw CollectiveFailure(
      underlying: error.underlying, shouldPrint: error.shouldPrint, isUsageError: isUsageError)
  case .failure(let error):
    throw CollectiveFailure(
      underlying: error, shouldPrint: communicator.isRoot || flags & 2 == 0,
      isUsageError: isUsageError)
  case .success:
    throw CollectiveFailure(underlying: nil, shouldPrint: false, isUsageError: isUsageError)
  }
}
