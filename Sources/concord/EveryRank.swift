import ConcordDistributed
import ConcordTensors
import ConcordTraining

/// Runs a command of every rank, such as `concord train`, and returns its exit code, the same
/// on every rank.
///
/// The arguments were parsed before MPI started, and a parse failure is reported only now,
/// once by rank 0, so that every rank exits alike. `body` then runs with the parsed settings
/// and BLAS set to `blasThreads` threads per rank, or the rank's cores when it is 0. A
/// ``CollectiveFailure`` or a collective ``TrainingError`` ends every rank with 2 for a usage
/// error and 1 otherwise, and any other error, which only this rank may have met, aborts the
/// job.
///
/// A usage error of `body` that does not name `settingsFile`, the `--config` file the
/// settings came from, gets it appended: such an error comes from a check across several
/// settings, and the file may have set any of them.
func runOnEveryRank<Settings>(
  _ parsed: Result<Settings, Error>, blasThreads: (Settings) -> Int,
  settingsFile: String? = nil, _ body: (Settings, MPICommunicator) throws -> Void
) -> Int32 {
  guard let communicator = startMPI() else { return failureExitCode }

  // A failure that all ranks saw alike: rank 0 (or the ranks that failed) print, every
  // rank waits for the others and leaves with the same code.
  func endTogether(_ message: String, shouldPrint: Bool, code: Int32) -> Int32 {
    if shouldPrint { printError(message, rank: communicator.rank) }
    try? communicator.barrier()
    try? communicator.finalize()
    return code
  }

  // A --config file may be readable on some nodes only, so the ranks agree on the outcome.
  let settings: Settings
  do {
    settings = try collectively(communicator) { try parsed.get() }
  } catch let failure as CollectiveFailure {
    return endTogether("\(failure)", shouldPrint: failure.shouldPrint, code: usageExitCode)
  } catch {
    printError("\(error)", rank: communicator.rank)
    communicator.abort(exitCode: failureExitCode)
  }

  let threads = blasThreads(settings)
  BLAS.threadCount = threads > 0 ? threads : HostCores.perRank()

  do {
    try body(settings, communicator)
  } catch let failure as CollectiveFailure {
    let code = failure.isUsageError ? usageExitCode : failureExitCode
    var message = "\(failure)"
    if failure.isUsageError, let settingsFile, !message.contains(settingsFile) {
      message += settingsFileClause(settingsFile)
    }
    return endTogether(message, shouldPrint: failure.shouldPrint, code: code)
  } catch let error as TrainingError where error.isCollective {
    return endTogether("\(error)", shouldPrint: communicator.isRoot, code: failureExitCode)
  } catch {
    // A failure of this rank alone: the others may be waiting in a collective, so end the
    // whole job.
    printError(systemErrorDescription(error), rank: communicator.rank)
    communicator.abort(exitCode: failureExitCode)
  }
  try? communicator.finalize()
  return 0
}
