import ConcordDistributed
import ConcordModel
import ConcordTensors
import ConcordTraining
import Foundation

/// The usage text of `concord bench`.
let benchUsage = """
  usage: concord bench step [--batch-size N] [--hidden LIST] [--tasks LIST] [--balancer NAME]
                            [--encoder mlp|conv] [--conv-channels LIST]
                            [--conv-hidden LIST|none] [--adapters none|parallel]
                            [--adapter-rank R]
                            [--steps N] [--warmup N] [--blas-threads N] [--allreduce MODE]
                            [--allreduce-fusion all|per-task]
                            [--allreduce-precision float32|bfloat16] [--json]
                            [--config FILE]
         concord bench allreduce [--min-bytes N] [--max-bytes N] [--repeats N] [--warmup N]
                                 [--json]
         concord bench report --records FILE [--json FILE] [--markdown FILE] [--svg FILE]

  step: times the training step on synthetic 28x28 images after --warmup steps (default 10),
  over --steps steps (default 50), and prints next to it what the machine allows, measured in
  the same run: cblas_sgemm on the step's matrix shapes and a plain MPI_Allreduce of the
  step's bytes. The allreduce flags are those of concord train. --json prints one JSON object
  instead. --config FILE reads the training settings of a concord train --config file; the
  flags above win over it.

  allreduce: times, for message sizes from --min-bytes (default 4096) to --max-bytes (default
  67108864) doubling, and 8 MiB when in that range, a plain MPI_Allreduce of MPI_FLOAT with
  MPI_SUM into a separate buffer, Concord's in-place allreduce of the same floats, and its
  bfloat16 allreduce of the same floats. Each of --repeats iterations (default: as many as fit
  in about a second per size, at least 5) times the three in turn, each after a barrier,
  after --warmup untimed iterations (default 3); a sample is the slowest rank's time. It prints
  the median, 10th and 90th percentile in microseconds, the algorithm bandwidth
  (bytes / time) and bus bandwidth (2 (p - 1) / p * bytes / time for p ranks, as nccl-tests
  define it) in GB/s of float32 bytes, and Concord's median time over the plain one. --json
  prints one JSON object per size and line.

  Run either under mpirun for several ranks.

  report: fits Concord's scaling model to the records of launch/bench-scaling and writes the
  results, the benchmark page and its plot (concord bench report --help).
  """

/// Runs `concord bench` and returns the exit code.
func bench(arguments: [String]) -> Int32 {
  if arguments.first == "report" { return benchReport(arguments: Array(arguments.dropFirst())) }
  if arguments.contains("--help") || arguments.contains("-h") {
    print(benchUsage)
    return 0
  }
  if arguments.first == "allreduce" {
    return benchAllreduce(arguments: Array(arguments.dropFirst()))
  }
  guard arguments.first == "step" else {
    let problem = arguments.first.map { "unknown benchmark \($0)" } ?? "missing benchmark name"
    printError(
      "concord bench: \(problem): pass step, allreduce or report (concord bench --help)",
      rank: nil)
    return usageExitCode
  }

  // Parse the benchmark's own flags, and hand the rest to the training flag parser.
  var measured = 50
  var warmup = 10
  var json = false
  var trainArguments: [String] = []
  var parseError: String?
  var index = 1
  while index < arguments.count {
    let flag = arguments[index]
    switch flag {
    case "--json":
      json = true
      index += 1
    case "--steps", "--warmup":
      guard index + 1 < arguments.count, let value = Int(arguments[index + 1]), value > 0 else {
        parseError = "\(flag) needs a whole number greater than 0"
        index = arguments.count
        break
      }
      if flag == "--steps" { measured = value } else { warmup = value }
      index += 2
    case "--batch-size", "--hidden", "--tasks", "--balancer", "--blas-threads", "--seed", "--lr",
      "--allreduce", "--allreduce-fusion", "--allreduce-precision", "--config", "--encoder",
      "--adapters", "--adapter-rank",
      "--conv-channels", "--conv-hidden":
      trainArguments += arguments[index..<min(index + 2, arguments.count)]
      index += 2
    default:
      parseError = "unknown flag \(flag) for concord bench step (concord bench --help)"
      index = arguments.count
    }
  }
  let parsed = Result { try parseTrainArguments(trainArguments) }

  guard let communicator = startMPI() else { return failureExitCode }
  if let parseError {
    return endBenchmark(communicator, message: parseError, code: usageExitCode)
  }
  let configuration: TrainingConfiguration
  switch parsed {
  case .success(let value): configuration = value
  case .failure(let error):
    return endBenchmark(communicator, message: "\(error)", code: usageExitCode)
  }
  BLAS.threadCount =
    configuration.blasThreads > 0
    ? configuration.blasThreads : HostCores.perRank()

  do {
    let report = try collectively(communicator) {
      try StepBenchmark.run(
        configuration: configuration, communicator: communicator, warmupSteps: warmup,
        steps: measured)
    }
    if communicator.isRoot {
      print(json ? benchJSON(report) : benchText(report, configuration, warmup, measured))
    }
  } catch {
    return endBenchmark(communicator, after: error)
  }
  try? communicator.finalize()
  return 0
}

/// Prints `message` on rank 0, finalizes MPI on every rank and returns `code`: the end of a
/// benchmark after an error that every rank saw alike, such as a bad flag.
func endBenchmark(_ communicator: MPICommunicator, message: String, code: Int32) -> Int32 {
  if communicator.isRoot { printError(message, rank: nil) }
  try? communicator.barrier()
  try? communicator.finalize()
  return code
}

/// Ends a benchmark after `error` and returns the exit code.
///
/// A ``CollectiveFailure`` is printed by the ranks it names, and every rank returns 2 for a
/// usage error, else 1. Any other error is this rank's alone, so it ends the whole job.
func endBenchmark(_ communicator: MPICommunicator, after error: Error) -> Int32 {
  guard let failure = error as? CollectiveFailure else {
    printError("\(error)", rank: communicator.rank)
    communicator.abort(exitCode: failureExitCode)
  }
  if failure.shouldPrint { printError("\(failure)", rank: communicator.rank) }
  try? communicator.barrier()
  return failure.isUsageError ? usageExitCode : failureExitCode
}

private func benchText(
  _ r: StepBenchmarkReport, _ c: TrainingConfiguration, _ warmup: Int, _ steps: Int
) -> String {
  func f(_ value: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", value) }
  var lines = [
    "concord bench step: \(r.ranks) rank(s) x \(r.blasThreads) BLAS thread(s), global batch "
      + "\(r.batchSize), "
      + (c.encoder == .conv
        ? "encoder \(r.encoder)"
        : "hidden \(c.hiddenSizes.map(String.init).joined(separator: ","))")
      + (c.adapters == .none ? "" : ", adapters \(r.adapters)")
      + ", tasks "
      + "\(c.tasks.map(\.rawValue).joined(separator: ",")), balancer \(c.balancer), "
      + "\(r.allreduceMode.rawValue) allreduce (fusion \(r.allreduceFusion.rawValue), "
      + "\(r.allreducePrecision.rawValue), \(r.allreduceCalls) call(s) per step), "
      + "\(steps) steps after \(warmup) warm-up",
    "step ms            median \(f(r.stepMilliseconds.median))  p10 \(f(r.stepMilliseconds.p10))"
      + "  p90 \(f(r.stepMilliseconds.p90))",
  ]
  for (name, milliseconds) in r.phaseMilliseconds {
    lines.append("  " + name.padding(toLength: 17, withPad: " ", startingAt: 0) + f(milliseconds))
  }
  lines.append(
    "matrix products    \(f(r.flopsPerStep / 1e9, 3)) GFLOP per rank per step: model "
      + "\(f(r.modelGFLOPS, 1)) GFLOP/s, cblas_sgemm \(f(r.sgemmGFLOPS, 1)) GFLOP/s, ratio "
      + f(r.modelGFLOPS / r.sgemmGFLOPS))
  for (shape, calls, sgemm) in r.gemmShapes {
    let name =
      "\(shape.m) x \(shape.n) x \(shape.k)" + (shape.transposeA ? " A^T" : "")
      + (shape.transposeB ? " B^T" : "")
    lines.append(
      "  " + name.padding(toLength: 26, withPad: " ", startingAt: 0) + "\(calls) call(s), "
        + "\(f(Double(calls * shape.flops) / 1e9, 3)) GFLOP, cblas_sgemm \(f(sgemm, 1)) GFLOP/s")
  }
  if r.ranks > 1 {
    lines.append(
      "allreduce          \(f(Double(r.allreduceBytes) / 1e6, 1)) MB per step: step "
        + "\(f(r.allreduceGBPS)) GB/s (\(f(r.allreduceMilliseconds)) ms, exposed \(f(r.exposedAllreduceMilliseconds)) ms = "
        + "\(f(100 * r.exposedAllreduceMilliseconds / r.allreduceMilliseconds, 0))%), "
        + "plain MPI_Allreduce \(f(r.mpiAllreduceGBPS)) GB/s (\(f(r.mpiAllreduceMilliseconds)) ms), ratio "
        + f(r.allreduceGBPS / r.mpiAllreduceGBPS))
  }
  lines.append("throughput         \(f(r.samplesPerSecond, 0)) samples/s")
  lines.append(
    "memory             peak RSS \(f(r.peakResidentMB, 1)) MB per rank, analytic "
      + "\(f(r.analyticMB, 1)) MB, ratio \(f(r.peakResidentMB / r.analyticMB)); before "
      + "allocating \(f(r.baselineResidentMB, 1)) MB (runtime, MPI, OpenBLAS), peak above it "
      + "\(f(r.peakResidentMB - r.baselineResidentMB, 1)) MB, ratio "
      + f((r.peakResidentMB - r.baselineResidentMB) / r.analyticMB))
  return lines.joined(separator: "\n")
}

private func benchJSON(_ r: StepBenchmarkReport) -> String {
  let phases = r.phaseMilliseconds.map { "\"\($0.name)\": \(jsonNumber($0.milliseconds))" }
  let fields = [
    "\"step_ms\": \(jsonNumber(r.stepMilliseconds.median))",
    "\"step_ms_p10\": \(jsonNumber(r.stepMilliseconds.p10))",
    "\"step_ms_p90\": \(jsonNumber(r.stepMilliseconds.p90))",
    "\"phase_ms\": {\(phases.joined(separator: ", "))}",
    "\"model_gflops\": \(jsonNumber(r.modelGFLOPS))",
    "\"sgemm_gflops\": \(jsonNumber(r.sgemmGFLOPS))",
    "\"allreduce_gbps\": \(jsonNumber(r.allreduceGBPS))",
    "\"mpi_allreduce_gbps\": \(jsonNumber(r.mpiAllreduceGBPS))",
    "\"samples_per_s\": \(jsonNumber(r.samplesPerSecond))",
    "\"peak_rss_mb\": \(jsonNumber(r.peakResidentMB))",
    "\"analytic_mb\": \(jsonNumber(r.analyticMB))",
    "\"baseline_rss_mb\": \(jsonNumber(r.baselineResidentMB))",
    "\"allreduce_ms\": \(jsonNumber(r.allreduceMilliseconds))",
    "\"exposed_allreduce_ms\": \(jsonNumber(r.exposedAllreduceMilliseconds))",
    "\"ranks\": \(r.ranks)",
    "\"batch_size\": \(r.batchSize)",
    "\"allreduce_bytes\": \(r.allreduceBytes)",
    "\"blas_threads\": \(r.blasThreads)",
    "\"allreduce_mode\": \"\(r.allreduceMode.rawValue)\"",
    "\"allreduce_fusion\": \"\(r.allreduceFusion.rawValue)\"",
    "\"allreduce_precision\": \"\(r.allreducePrecision.rawValue)\"",
    "\"allreduce_calls\": \(r.allreduceCalls)",
    "\"encoder\": \"\(r.encoder)\"",
    "\"adapters\": \"\(r.adapters)\"",
  ]
  return "{" + fields.joined(separator: ", ") + "}"
}
