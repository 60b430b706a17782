import ConcordTraining
import Foundation

/// The usage text of `concord inspect`.
let inspectUsage = """
  usage: concord inspect FILE

  Checks a safetensors file and lists it: the metadata, one `key: value` per line; then one
  line per tensor: name, dtype, shape and size in bytes; then the tensor count and the total
  bytes. A Concord checkpoint is also checked as resuming checks it: every tensor of the
  model's state present with its shape, counters and task weights valid, and the data
  matching its data_crc32. Exits 2 when the file is unreadable, malformed or damaged.
  """

/// Runs `concord inspect` and returns the exit code.
func inspect(arguments: [String]) -> Int32 {
  if arguments.contains("--help") || arguments.contains("-h") {
    print(inspectUsage)
    return 0
  }
  guard arguments.count == 1, let path = arguments.first, !path.hasPrefix("-") else {
    printError("concord inspect takes one FILE (concord inspect --help)", rank: nil)
    return usageExitCode
  }
  do {
    print(try CheckpointInspection.lines(path: path).joined(separator: "\n"))
    return 0
  } catch {
    printError("\(error)", rank: nil)
    return usageExitCode
  }
}
