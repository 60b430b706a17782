import ConcordDistributed
import ConcordTraining
import Foundation

/// Runs `concord bench allreduce` with the arguments after its name and returns the exit code.
func benchAllreduce(arguments: [String]) -> Int32 {
  let parsed = Result { try parseAllreduceBenchmarkArguments(arguments) }

  guard let communicator = startMPI() else { return failureExitCode }
  let options: AllreduceBenchmarkOptions
  let json: Bool
  switch parsed {
  case .success(let value): (options, json) = value
  case .failure(let error):
    return endBenchmark(communicator, message: "\(error)", code: usageExitCode)
  }
  // A send and a receive buffer of floats and a bfloat16 staging buffer, per rank.
  let bytesPerRank = Double(options.maximumBytes) * 2.5
  let available = Double(ProcessInfo.processInfo.physicalMemory) / Double(communicator.size)
  guard bytesPerRank < available else {
    return endBenchmark(
      communicator,
      message:
        "--max-bytes \(options.maximumBytes) needs about \(Int(bytesPerRank / 1e6)) MB per rank, "
        + "more than this host's \(Int(available / 1e6)) MB per rank: pass a smaller --max-bytes",
      code: usageExitCode)
  }

  if communicator.isRoot && !json {
    let sizes = options.messageSizes
    writeLine(
      "concord bench allreduce: \(communicator.size) rank(s), \(sizes.count) sizes from "
        + "\(sizes.first ?? 0) to \(sizes.last ?? 0) bytes of float32; times in microseconds, "
        + "each the slowest rank's; bandwidths in GB/s of float32 bytes")
    writeLine(AllreduceBenchmarkRow.textHeader)
  }
  do {
    try AllreduceBenchmark.run(communicator: communicator, options: options) { row in
      guard communicator.isRoot else { return }
      writeLine(json ? row.jsonLine : row.textLines.joined(separator: "\n"))
    }
  } catch {
    return endBenchmark(communicator, after: error)
  }
  try? communicator.finalize()
  return 0
}

/// Parses the flags of `concord bench allreduce` and returns the options and whether to print
/// JSON.
///
/// - Throws: ``UsageError`` naming the flag and value at fault.
func parseAllreduceBenchmarkArguments(_ arguments: [String]) throws -> (
  AllreduceBenchmarkOptions, Bool
) {
  var options = AllreduceBenchmarkOptions()
  var json = false
  var index = 0
  while index < arguments.count {
    let flag = arguments[index]
    switch flag {
    case "--json":
      json = true
      index += 1
    case "--min-bytes", "--max-bytes", "--repeats", "--warmup":
      guard index + 1 < arguments.count else {
        throw UsageError("\(flag) needs a value: pass \(flag) N")
      }
      let text = arguments[index + 1]
      guard let value = Int(text), value > 0 else {
        throw UsageError("invalid \(flag) \(text): pass a whole number greater than 0")
      }
      switch flag {
      case "--min-bytes": options.minimumBytes = value
      case "--max-bytes": options.maximumBytes = value
      case "--repeats": options.repeats = value
      default: options.warmup = value
      }
      index += 2
    default:
      throw UsageError(
        "unknown flag \(flag) for concord bench allreduce (concord bench --help)")
    }
  }

  let floatSize = MemoryLayout<Float>.stride
  for (flag, value) in [
    ("--min-bytes", options.minimumBytes), ("--max-bytes", options.maximumBytes),
  ]
  where value % floatSize != 0 {
    throw UsageError(
      "invalid \(flag) \(value): pass a multiple of \(floatSize), the bytes of one float")
  }
  guard options.maximumBytes >= options.minimumBytes else {
    throw UsageError(
      "--max-bytes \(options.maximumBytes) is below --min-bytes \(options.minimumBytes): pass "
        + "a --max-bytes of at least \(options.minimumBytes)")
  }
  // The plain MPI_Allreduce takes an Int32 count of floats.
  let largest = Int(Int32.max) * floatSize
  guard options.maximumBytes <= largest else {
    throw UsageError(
      "invalid --max-bytes \(options.maximumBytes): pass at most \(largest), the largest float "
        + "count of one MPI call")
  }
  return (options, json)
}

/// Writes `text` and a newline to standard output at once, unbuffered, so that each size's
/// figures appear as soon as they are measured.
private func writeLine(_ text: String) {
  FileHandle.standardOutput.write(Data((text + "\n").utf8))
}
