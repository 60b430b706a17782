import ConcordTensors
import ConcordTraining
import Foundation

/// The usage text of `concord bench report`.
let benchReportUsage = """
  usage: concord bench report --records FILE [--json FILE] [--markdown FILE] [--svg FILE]
                              [--plot-link PATH] [--results-link PATH] [--quick]

  Fits Concord's scaling model to the records that launch/bench-scaling measured (one JSON
  object per line), and writes the results JSON (--json), the benchmark page (--markdown,
  such as BENCHMARKS.md) and the plot of throughput and efficiency against ranks (--svg).
  --plot-link and --results-link are the paths that the page gives for the plot and the
  results (default: the --svg and --json paths). --quick says on the page that the records
  come from a quick run. Prints the model's fit and its error.
  """

/// Runs `concord bench report` and returns the exit code.
func benchReport(arguments: [String]) -> Int32 {
  if arguments.contains("--help") || arguments.contains("-h") {
    print(benchReportUsage)
    return 0
  }

  var paths: [String: String] = [:]
  var quick = false
  var index = 0
  let flags = ["--records", "--json", "--markdown", "--svg", "--plot-link", "--results-link"]
  while index < arguments.count {
    let flag = arguments[index]
    if flag == "--quick" {
      quick = true
      index += 1
    } else if flags.contains(flag) {
      guard index + 1 < arguments.count, !arguments[index + 1].isEmpty else {
        printError("\(flag) needs a path (concord bench report --help)", rank: nil)
        return usageExitCode
      }
      paths[flag] = arguments[index + 1]
      index += 2
    } else {
      printError(
        "unknown flag \(flag) for concord bench report (concord bench report --help)", rank: nil)
      return usageExitCode
    }
  }

  guard let records = paths["--records"] else {
    printError("concord bench report needs --records FILE (concord bench report --help)", rank: nil)
    return usageExitCode
  }

  let measurements: ScalingMeasurements
  do {
    measurements = try ScalingMeasurements(contentsOf: records)
  } catch {
    printError("\(error)", rank: nil)
    return usageExitCode
  }

  guard !measurements.steps.isEmpty else {
    printError(
      "\(records) contains no step record: pass the records file of a launch/bench-scaling run",
      rank: nil)
    return usageExitCode
  }

  let report = ScalingReport(measurements: measurements)
  // Everything is rendered, and every folder checked, before the first file is replaced.
  var outputs: [(path: String, bytes: [UInt8])] = []
  do {
    if let path = paths["--json"] { outputs.append((path, Array(try report.json()) + [0x0A])) }
    if let path = paths["--svg"] { outputs.append((path, Array(report.svg().utf8))) }
    if let path = paths["--markdown"] {
      let page = report.markdown(
        resultsPath: paths["--results-link"] ?? paths["--json"] ?? records,
        plotPath: paths["--plot-link"] ?? paths["--svg"] ?? "scaling.svg", quick: quick)
      outputs.append((path, Array(page.utf8)))
    }
  } catch {
    printError("\(error)", rank: nil)
    return failureExitCode
  }

  for output in outputs {
    guard AtomicFile.canWrite(inFolderOf: output.path) else {
      printError(
        "cannot write \(output.path): its folder is missing or not writable, so pass another path",
        rank: nil)
      return usageExitCode
    }
  }

  do {
    for output in outputs { try AtomicFile.write(output.bytes, to: output.path) }
  } catch {
    printError("\(error)", rank: nil)
    return failureExitCode
  }

  print(summary(report))
  return 0
}

/// Returns the lines that `concord bench report` prints: the fit, its error, and the 64-node
/// projection of each link.
private func summary(_ report: ScalingReport) -> String {
  guard let model = report.model else {
    return "concord bench report: no single-host step in the records, so no model was fitted"
  }
  func f(_ value: Double, _ digits: Int) -> String { String(format: "%.\(digits)f", value) }
  var lines: [String] = []
  let swept = Set(report.measurements.allreduces.map(\.network))
  for network in swept.sorted() where model.links[network] == nil {
    lines.append(
      "warning: no link fitted for \(network): its allreduce sweep needs at least two sizes of "
        + "\(Int(ScalingReport.fittedMinimumBytes)) bytes or more")
  }
  lines += [
    "compute      c0 \(f(model.compute.fixed * 1e3, 2)) ms + c1 \(f(model.compute.perSample * 1e6, 1)) µs per image"
  ]
  for (name, link) in model.links.sorted(by: { $0.key < $1.key }) {
    lines.append(
      "link \(name.padding(toLength: 8, withPad: " ", startingAt: 0)) alpha \(f(link.latency * 1e6, 1)) µs, "
        + "bandwidth \(f(link.bandwidth / 1e9, 3)) GB/s, median fit error "
        + "\(f(100 * (report.linkFitErrors[name] ?? .nan), 1))%")
  }
  let error = report.checkError
  lines.append(
    "step model   \(report.checks.count) points, median error \(f(100 * error.median, 1))%, "
      + "largest \(f(100 * error.maximum, 1))%")
  for projection in report.projections where projection.nodes == 64 {
    lines.append(
      "64 nodes     \(projection.network): efficiency \(f(100 * projection.efficiency, 1))% "
        + "(ring), \(f(100 * projection.halvingDoublingEfficiency, 1))% (halving-doubling), "
        + "\(f(projection.samplesPerSecond, 0)) images/s")
  }
  return lines.joined(separator: "\n")
}
