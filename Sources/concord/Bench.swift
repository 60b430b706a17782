import ConcordDistributed
import ConcordTensors
import ConcordTraining
import Foundation

/// The usage text of `concord bench`.
let benchUsage = """
  usage: concord bench step [--batch-size N] [--hidden LIST] [--tasks LIST] [--balancer NAME]
                            [--steps N] [--warmup N] [--blas-threads N] [--json]
                            [--config FILE]

  Times the training step on synthetic 28x28 images after --warmup steps (default 10), over
  --steps steps (default 50), and prints next to it what the machine allows, measured in the
  same run: cblas_sgemm on the step's matrix shapes and a plain MPI_Allreduce of the step's
  bytes. Run it under mpirun for several ranks. --json prints one JSON object instead.
  --config FILE reads the training settings of a concord train --config file; the flags
  above win over it.
  """

/// Runs `concord bench` and returns the exit code.
func bench(arguments: [String]) -> Int32 {
  if arguments.contains("--help") || arguments.contains("-h") {
    print(benchUsage)
    return 0
  }
  guard arguments.first == "step" else {
    printError(
      "concord bench needs a benchmark name: concord bench step (concord bench --help)", rank: nil)
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
      "--allreduce", "--config":
      trainArguments += arguments[index..<min(index + 2, arguments.count)]
      index += 2
    default:
      parseError = "unknown flag \(flag) for concord bench step (concord bench --help)"
      index = arguments.count
    }
  }
  let parsed = Result { try parseTrainArguments(trainArguments) }

  guard let communicator = startMPI() else { return failureExitCode }
  func endTogether(_ message: String, code: Int32) -> Int32 {
    if communicator.isRoot { printError(message, rank: nil) }
    try? communicator.barrier()
    try? communicator.finalize()
    return code
  }
  if let parseError { return endTogether(parseError, code: usageExitCode) }
  let configuration: TrainingConfiguration
  switch parsed {
  case .success(let value): configuration = value
  case .failure(let error): return endTogether("\(error)", code: usageExitCode)
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
  } catch let failure as CollectiveFailure {
    let code = failure.underlying is UsageError ? usageExitCode : failureExitCode
    if failure.shouldPrint { printError("\(failure)", rank: communicator.rank) }
    try? communicator.barrier()
    return code
  } catch {
    printError("\(error)", rank: communicator.rank)
    communicator.abort(exitCode: failureExitCode)
  }
  try? communicator.finalize()
  return 0
}

private func benchText(
  _ r: StepBenchmarkReport, _ c: TrainingConfiguration, _ warmup: Int, _ steps: Int
) -> String {
  func f(_ value: Double, _ digits: Int = 2) -> String { String(format: "%.\(digits)f", value) }
  var lines = [
    "concord bench step: \(r.ranks) rank(s) x \(r.blasThreads) BLAS thread(s), global batch "
      + "\(r.batchSize), hidden \(c.hiddenSizes.map(String.init).joined(separator: ",")), tasks "
      + "\(c.tasks.map(\.rawValue).joined(separator: ",")), balancer \(c.balancer), "
      + "\(r.allreduceMode.rawValue) allreduce, "
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
    "\"blas_threads\": \(r.blasThreads)",
    "\"allreduce_mode\": \"\(r.allreduceMode.rawValue)\"",
  ]
  return "{" + fields.joined(separator: ", ") + "}"
}
