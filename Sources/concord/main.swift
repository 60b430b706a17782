// concord: a distributed data-parallel multi-task trainer.
//
//   concord train [FLAGS]                    one rank, on this machine
//   mpirun -np 2 concord train [FLAGS]       two ranks
//   concord train --help                     every flag
//
// Exit codes: 0 success, 1 a failure while running, 2 a bad command line.

import ConcordDistributed
import ConcordTensors
import ConcordTraining
import Foundation

/// Exit code of a failure while running.
let failureExitCode: Int32 = 1
/// Exit code of a bad command line.
let usageExitCode: Int32 = 2

func printError(_ message: String, rank: Int?) {
  let prefix = rank.map { "concord: rank \($0): error: " } ?? "concord: error: "
  FileHandle.standardError.write((prefix + message + "\n").data(using: .utf8)!)
}

let topUsage = """
  usage: concord <command> [FLAGS]

  commands:
    train    train the shared encoder and task heads (concord train --help)
    balance  replay one gradient balancing step (concord balance --help)
    bench    time the training step against the machine's limits (concord bench --help)
    inspect  check a checkpoint and list its metadata and tensors (concord inspect --help)
    eval     evaluate a checkpoint as training does at its end (concord eval --help)
    plot     draw a run's metrics as an SVG page (concord plot --help)
    study    train every balancer over several seeds and compare them (concord study --help)
  """

var arguments = Array(CommandLine.arguments.dropFirst())
guard let command = arguments.first else {
  FileHandle.standardError.write((topUsage + "\n").data(using: .utf8)!)
  exit(usageExitCode)
}
arguments.removeFirst()

switch command {
case "--help", "-h", "help":
  print(topUsage)
  exit(0)
case "train":
  if arguments.contains("--help") || arguments.contains("-h") {
    print(trainUsage())
    exit(0)
  }
  exit(train(arguments: arguments))
case "balance":
  exit(balance(arguments: arguments))
case "bench":
  exit(bench(arguments: arguments))
case "inspect":
  exit(inspect(arguments: arguments))
case "eval":
  exit(evaluate(arguments: arguments))
case "plot":
  exit(plot(arguments: arguments))
case "study":
  exit(study(arguments: arguments))
default:
  printError(
    "unknown command \(command): pass train, balance, bench, inspect, eval, plot or study "
      + "(concord --help)",
    rank: nil)
  exit(usageExitCode)
}

/// Runs `concord train` on this rank and returns the exit code.
func train(arguments: [String]) -> Int32 {
  // Parse first, but report only once MPI is up, so that every rank exits alike and only
  // rank 0 prints.
  let parsed = Result { try parseTrainArguments(arguments) }
  let settingsFile = (try? configurationFilePath(in: arguments)) ?? nil
  return runOnEveryRank(parsed, blasThreads: \.blasThreads, settingsFile: settingsFile) {
    configuration, communicator in
    let trainer = try collectively(communicator) {
      try Trainer(configuration: configuration, communicator: communicator)
    }
    try collectively(communicator) { try trainer.resumeIfRequested() }
    _ = try trainer.run()
  }
}

/// Starts MPI (a singleton world without mpirun), or prints why it cannot and returns nil.
func startMPI() -> MPICommunicator? {
  do {
    return try MPICommunicator()
  } catch {
    printError("cannot start MPI: \(error)", rank: nil)
    return nil
  }
}
