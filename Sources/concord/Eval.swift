import ConcordDistributed
import ConcordModel
import ConcordTensors
import ConcordTraining
import Foundation

/// The usage text of `concord eval`.
let evalUsage = """
  usage: concord eval --checkpoint FILE [--data DIR] [--out DIR] [--test-limit N] [--knn K]
                     [--knn-temperature T] [--linear-probe] [--probe-epochs N]
                     [--encoder mlp|conv]

  Evaluates a checkpoint as training does at its end: the supervised head's test accuracy,
  the kNN accuracy of the representation and, with --linear-probe, the test accuracy of a
  linear classifier trained on the frozen features. The model shape, the training images
  used as kNN memory and probe data, and the defaults of the flags below come from the
  checkpoint. Under mpirun the ranks split the test set. Writes DIR/eval.json.

    --checkpoint FILE   the checkpoint (a step-NNNNNNN.safetensors file)
    --data DIR          folder of MNIST-format IDX files (default: the run's --data)
    --out DIR           folder of eval.json (default: the run folder of the checkpoint)
    --test-limit N      evaluate on only the first N test images (default: the run's)
    --knn K             neighbours of the kNN evaluation (default: the run's)
    --knn-temperature T temperature of the kNN vote weights exp(similarity / T)
                        (default: the run's)
    --linear-probe      also train and test a linear probe on the frozen features
    --probe-epochs N    passes of the linear probe over the training features
                        (default: the run's)
    --encoder KIND      the encoder the checkpoint must hold, mlp or conv; another is an
                        error (default: whichever it holds)
  """

/// Parses the arguments of `concord eval` (without the subcommand).
func parseEvalArguments(_ arguments: [String]) throws -> CheckpointEvaluation.Options {
  var options = CheckpointEvaluation.Options()
  var index = 0
  while index < arguments.count {
    let flag = arguments[index]
    if flag == "--linear-probe" {
      options.linearProbe = true
      index += 1
      continue
    }
    let names = [
      "--checkpoint", "--data", "--out", "--test-limit", "--knn", "--knn-temperature",
      "--probe-epochs", "--encoder",
    ]
    guard names.contains(flag) else {
      throw UsageError("unknown flag \(flag): concord eval --help lists the flags")
    }
    guard index + 1 < arguments.count, !arguments[index + 1].isEmpty else {
      throw UsageError("\(flag) needs a value (concord eval --help)")
    }
    let value = arguments[index + 1]
    switch flag {
    case "--checkpoint": options.checkpointPath = value
    case "--data": options.dataDirectory = value
    case "--out": options.outputDirectory = value
    case "--encoder":
      guard let encoder = EncoderKind(rawValue: value) else {
        throw UsageError("invalid --encoder \(value): pass mlp or conv")
      }
      options.encoder = encoder
    case "--knn-temperature":
      guard let temperature = Float(value), temperature.isFinite, temperature > 0 else {
        throw UsageError("invalid --knn-temperature \(value): pass a number greater than 0")
      }
      options.knnTemperature = temperature
    default:
      guard let number = Int(value), number > 0 else {
        throw UsageError("invalid \(flag) \(value): pass a whole number greater than 0")
      }
      switch flag {
      case "--knn": options.neighbours = number
      case "--probe-epochs": options.probeEpochs = number
      default: options.testLimit = number
      }
    }
    index += 2
  }
  guard !options.checkpointPath.isEmpty else {
    throw UsageError("concord eval needs --checkpoint FILE (concord eval --help)")
  }
  return options
}

/// Runs `concord eval` on this rank and returns the exit code: 2 when the command line or
/// the checkpoint file is at fault, 1 for other failures.
func evaluate(arguments: [String]) -> Int32 {
  if arguments.contains("--help") || arguments.contains("-h") {
    print(evalUsage)
    return 0
  }
  let parsed = Result { try parseEvalArguments(arguments) }
  guard let communicator = startMPI() else { return failureExitCode }
  BLAS.threadCount = HostCores.perRank()

  var message = ""
  var shouldPrint = communicator.isRoot
  var code = usageExitCode
  do {
    _ = try CheckpointEvaluation.run(try parsed.get(), communicator: communicator)
    code = 0
  } catch let failure as CollectiveFailure {
    message = "\(failure)"
    shouldPrint = failure.shouldPrint
    let underlying = failure.underlying
    let isFileFault =
      failure.isUsageError || underlying is CheckpointError || underlying is SafeTensorsError
    code = isFileFault ? usageExitCode : failureExitCode
  } catch let error as UsageError {
    message = "\(error)"
  } catch {
    // A failure of this rank alone: the others may be waiting in a collective.
    printError("\(error)", rank: communicator.rank)
    communicator.abort(exitCode: failureExitCode)
  }
  if code != 0 && shouldPrint {
    printError(message, rank: communicator.isRoot ? nil : communicator.rank)
  }
  try? communicator.barrier()
  try? communicator.finalize()
  return code
}
