import Foundation

extension StudyReport {
  /// The markdown page of the study: one table row per balancer, each cell the mean ± the
  /// sample standard deviation over the seeds.
  var markdown: String {
    let seedList = seeds.map(String.init).joined(separator: ", ")
    var lines = [
      "# Concord study of gradient balancers",
      "",
      "Each balancer trained once per seed (\(seeds.count) seed(s): \(seedList)) with the same "
        + "other settings. A cell is the mean over the seeds ± their sample standard deviation "
        + "(dividing by n − 1). The weights are each task's GradNorm weight at the last logged "
        + "step (1 without GradNorm), and the wall time covers training and evaluation of the "
        + "run's last start. `study.json` has the same values unrounded, and each run's own "
        + "folder its `eval.json` and `metrics.jsonl`.",
      "",
    ]
    let columns = accuracyColumns
    var header = ["balancer", "runs"] + columns.map(\.title)
    header += tasks.map { "weight \($0)" } + ["wall time (s)"]
    lines.append("| " + header.joined(separator: " | ") + " |")
    lines.append("|" + String(repeating: " --- |", count: header.count))
    for result in results {
      var cells = [result.balancer.rawValue, String(result.runs.count)]
      cells += columns.map { Self.cell($0.value(result), decimals: 4) }
      cells += result.finalWeights.map { Self.cell($0, decimals: 3) }
      cells.append(Self.cell(result.seconds, decimals: 1))
      lines.append("| " + cells.joined(separator: " | ") + " |")
    }
    lines += ["", "![Mean loss per task and balancer](study.svg)", ""]
    return lines.joined(separator: "\n")
  }

  /// Formats `statistic` as `mean ± deviation`, the mean alone with one seed, or `n/a`.
  static func cell(_ statistic: Statistic, decimals: Int) -> String {
    guard let mean = statistic.mean else { return "n/a" }
    let format = "%.\(decimals)f"
    guard let deviation = statistic.standardDeviation else {
      return String(format: format, mean)
    }
    return String(format: format, mean) + " ± " + String(format: format, deviation)
  }

  /// The JSON document of the study: the tasks and seeds, and per balancer its runs and
  /// statistics, each `{"mean": …, "std": …}` with `null` where a value is
  /// missing.
  var json: String {
    var document = JSONLine()
    document.add("tasks", raw: "[" + tasks.map(JSONLine.quote).joined(separator: ", ") + "]")
    document.add("seeds", raw: "[" + seeds.map(String.init).joined(separator: ", ") + "]")
    var balancers: [String] = []
    for result in results {
      var entry = JSONLine()
      entry.add("balancer", result.balancer.rawValue)
      entry.add(
        "runs", raw: "[" + result.runs.map(JSONLine.quote).joined(separator: ", ") + "]")
      for column in accuracyColumns {
        entry.add(column.key, raw: Self.json(column.value(result)))
      }
      var weights = JSONLine()
      for (task, statistic) in zip(tasks, result.finalWeights) {
        weights.add(task, raw: Self.json(statistic))
      }
      entry.add("final_weights", raw: weights.text)
      entry.add("seconds", raw: Self.json(result.seconds))
      balancers.append(entry.text)
    }
    document.add("balancers", raw: "[" + balancers.joined(separator: ", ") + "]")
    return document.text
  }

  /// Returns `{"mean": …, "std": …}` for `statistic`.
  static func json(_ statistic: Statistic) -> String {
    var object = JSONLine()
    object.add("mean", statistic.mean)
    object.add("std", statistic.standardDeviation)
    return object.text
  }

  /// The SVG page of the mean loss curves: one panel per task, one line per balancer.
  var svg: String {
    let series = results.map { result in
      (name: result.balancer.rawValue, values: result.meanLosses)
    }
    let seedText = seeds.count == 1 ? "1 seed" : "mean over \(seeds.count) seeds"
    return RunPlot.taskPanelsSVG(
      title: "concord study: loss per task, \(seedText)", steps: steps, tasks: tasks,
      series: series)
  }
}
