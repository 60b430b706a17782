import ConcordTensors
import ConcordTraining
import Foundation

/// The usage text of `concord plot`.
let plotUsage = """
  usage: concord plot RUN_DIR [--out FILE.svg]

  Draws the curves of a run from RUN_DIR/metrics.jsonl as one SVG page with four panels:
  the loss of each task, the GradNorm task weights, the gradient conflict rate (the share
  of task pairs whose gradients have a negative cosine) and the throughput in samples per
  second, each against the step. Open the page in a browser.

  --out FILE.svg   where to write the page, a file that does not exist yet (default
                   RUN_DIR/plot.svg, which is replaced)
  """

/// Runs `concord plot` and returns the exit code.
func plot(arguments: [String]) -> Int32 {
  if arguments.contains("--help") || arguments.contains("-h") {
    print(plotUsage)
    return 0
  }
  var runDirectory: String?
  var output: String?
  var index = 0
  while index < arguments.count {
    let argument = arguments[index]
    if argument == "--out" {
      guard index + 1 < arguments.count, !arguments[index + 1].isEmpty else {
        printError("--out needs a value: pass --out FILE.svg (concord plot --help)", rank: nil)
        return usageExitCode
      }
      output = arguments[index + 1]
      index += 2
      continue
    }
    guard !argument.hasPrefix("-"), runDirectory == nil else {
      printError(
        "unexpected argument \(argument): concord plot takes RUN_DIR [--out FILE.svg]", rank: nil)
      return usageExitCode
    }
    runDirectory = argument
    index += 1
  }
  guard let runDirectory else {
    printError("concord plot needs a run folder: concord plot RUN_DIR [--out FILE.svg]", rank: nil)
    return usageExitCode
  }

  let metrics: RunMetrics
  do {
    metrics = try RunMetrics(contentsOf: runDirectory + "/metrics.jsonl")
  } catch {
    printError("\(error)", rank: nil)
    return usageExitCode
  }
  let path = output ?? runDirectory + "/plot.svg"
  // Only the run's own plot.svg is replaced: --out may name any file, and a typo must not
  // destroy one.
  if let output, FileManager.default.fileExists(atPath: output) {
    printError(
      "--out \(output) already exists: remove it or pass a new path; concord plot replaces "
        + "only RUN_DIR/plot.svg", rank: nil)
    return usageExitCode
  }
  do {
    try AtomicFile.write(
      Array(RunPlot.svg(metrics, title: "concord run \(runDirectory)").utf8), to: path)
  } catch {
    printError("cannot write \(path): \(error); pass another --out", rank: nil)
    return failureExitCode
  }
  print(
    "concord: wrote \(path) (\(metrics.steps.count) logged steps, \(metrics.taskNames.count) tasks)"
  )
  return 0
}
