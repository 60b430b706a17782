import Foundation

extension ScalingReport {
  /// Returns the JSON document of `bench/results/<date>.json`: every measured point with its
  /// runs, the fitted model, its error on each point, and the projections.
  public func json() throws -> Data {
    let m = measurements
    var document: [String: Any] = [
      "machine": m.machine.merging(["cores": "\(m.cores)"]) { _, new in new },
      "allreduce_bytes_per_step": allreduceBytes,
      "networks": m.networks.map {
        [
          "name": $0.name, "delay_ms": $0.delayMilliseconds, "rate": $0.rate,
          "mechanism": $0.mechanism,
        ] as [String: Any]
      },
      "steps": m.steps.map { point -> [String: Any] in
        var entry: [String: Any] = [
          "network": point.network, "hosts": point.hosts, "ranks": point.ranks,
          "scaling": point.scaling, "options": point.label, "batch_size": point.batchSize,
          "oversubscribed": point.ranks > m.cores, "allreduce_mode": point.allreduceMode,
          "step_ms_median": point.medianMilliseconds, "step_ms_runs": point.stepMilliseconds,
          "samples_per_s": point.samplesPerSecond,
          "phase_ms_median": Dictionary(
            uniqueKeysWithValues: Set(point.phases.flatMap(\.keys)).map { ($0, point.phase($0)) }),
        ]
        if let value = efficiency(of: point) { entry["efficiency"] = value }
        if let check = checks.first(where: {
          $0.point.network == point.network
            && $0.point.hosts == point.hosts && $0.point.ranks == point.ranks
            && $0.point.scaling == point.scaling && $0.point.label == point.label
        }) {
          entry["model_ms"] = check.predictedMilliseconds
          entry["model_error"] = check.relativeError
          entry["used_in_fit"] = check.isFitted
        }
        return entry
      },
      "allreduce": m.allreduces.map {
        [
          "network": $0.network, "hosts": $0.hosts, "ranks": $0.ranks, "bytes": $0.bytes,
          "plain_us": $0.plain, "concord_us": $0.concord, "bfloat16_us": $0.bfloat16,
        ] as [String: Any]
      },
      "accuracy": m.accuracies.map {
        [
          "options": $0.label, "ranks": $0.ranks, "epochs": $0.epochs,
          "test_accuracy": $0.testAccuracy ?? NSNull(), "knn_accuracy": $0.knnAccuracy,
          "seconds": $0.seconds,
        ] as [String: Any]
      },
      "projections": projections.map {
        [
          "network": $0.network, "nodes": $0.nodes, "ranks": $0.ranks,
          "step_ms": $0.stepMilliseconds, "efficiency_ring": $0.efficiency,
          "efficiency_halving_doubling": $0.halvingDoublingEfficiency,
          "efficiency_bfloat16_ring": $0.bfloat16Efficiency, "samples_per_s": $0.samplesPerSecond,
        ] as [String: Any]
      },
    ]
    if let model {
      document["model"] =
        [
          "compute_fixed_s": model.compute.fixed, "compute_per_sample_s": model.compute.perSample,
          "cores": model.cores, "projected_local_batch": Self.projectedLocalBatch,
          "links": Dictionary(
            uniqueKeysWithValues: model.links.map {
              ($0.key, ["alpha_s": $0.value.latency, "bandwidth_bytes_per_s": $0.value.bandwidth])
            }),
          "link_fit_median_error": linkFitErrors, "link_sweep_median_error": linkSweepErrors,
          "link_fit_minimum_bytes": Self.fittedMinimumBytes,
          "step_error_median": checkError.median, "step_error_max": checkError.maximum,
        ] as [String: Any]
    }
    return try JSONSerialization.data(
      withJSONObject: document, options: [.prettyPrinted, .sortedKeys])
  }

  /// Returns an SVG page of two panels against ranks: throughput, and scaling efficiency.
  ///
  /// Each network and scaling mode is one colour: measured points as a solid line with
  /// circles, the model's predictions as a dashed line.
  public func svg() -> String {
    let width = 1200.0
    let height = 520.0
    let points = measurements.steps.filter { $0.label == "default" }
    let series = Dictionary(grouping: points) { "\($0.network), \($0.scaling)" }
    let names = series.keys.sorted()
    let maxRanks = Double(points.map(\.ranks).max() ?? 2)
    let xAxis = PlotAxis.binaryLogarithmic(low: 1, high: max(2, maxRanks))
    var svg = """
      <?xml version="1.0" encoding="UTF-8"?>
      <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
      viewBox="0 0 \(Int(width)) \(Int(height))" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" \
      font-size="13">
      <title>Concord scaling</title>
      <rect x="0" y="0" width="\(Int(width))" height="\(Int(height))" fill="#ffffff"/>
      <text x="20" y="28" font-size="17" font-weight="bold">Concord scaling: measured (solid) \
      and model (dashed); ranks beyond \(measurements.cores) share cores</text>

      """
    let panels: [(title: String, axis: String, value: (ScalingMeasurements.StepPoint) -> Double?)] =
      [
        ("Throughput, all ranks", "images per second", { $0.samplesPerSecond }),
        (
          "Scaling efficiency: throughput per rank over one rank's", "efficiency",
          {
            self.efficiency(of: $0)
          }
        ),
      ]
    let predicted: [String: Double] = Dictionary(
      checks.map {
        ("\($0.point.network)|\($0.point.scaling)|\($0.point.ranks)", $0.predictedMilliseconds)
      },
      uniquingKeysWith: { first, _ in first })
    let panelWidth = (width - 30) / 2
    for (index, panel) in panels.enumerated() {
      let frame = RunPlot.Frame(
        x: 10 + Double(index) * (panelWidth + 10), y: 45, width: panelWidth, height: height - 55)
      let area = RunPlot.Frame(
        x: frame.x + 72, y: frame.y + 30 + 18 * Double((names.count + 1) / 2),
        width: frame.width - 90, height: 0)
      let plot = RunPlot.Frame(
        x: area.x, y: area.y, width: area.width, height: frame.y + frame.height - 50 - area.y)
      svg += "<g>\n" + RunPlot.rect(frame, fill: "#ffffff", stroke: "#cccccc")
      svg += RunPlot.text(
        x: frame.x + 12, y: frame.y + 20, panel.title,
        attributes: "font-size=\"15\" font-weight=\"bold\"")

      // The measured and predicted values of each series, by rank count.
      var lines: [(name: String, measured: [(Double, Double)], model: [(Double, Double)])] = []
      for name in names {
        let sorted = series[name]!.sorted { $0.ranks < $1.ranks }
        let measured = sorted.compactMap { p in panel.value(p).map { (Double(p.ranks), $0) } }
        let model = sorted.compactMap { p -> (Double, Double)? in
          guard let milliseconds = predicted["\(p.network)|\(p.scaling)|\(p.ranks)"] else {
            return nil
          }
          var modelled = p
          modelled.stepMilliseconds = [milliseconds]
          return panel.value(modelled).map { (Double(p.ranks), $0) }
        }
        lines.append((name, measured, model))
      }
      let values = lines.flatMap { $0.measured.map(\.1) + $0.model.map(\.1) }.filter(\.isFinite)
      let highest = values.max() ?? 1
      let yAxis =
        index == 1 && highest <= 1
        ? PlotAxis.fraction() : PlotAxis.linear(low: 0, high: highest)
      svg += RunPlot.drawAxes(
        area: plot, xAxis: xAxis, yAxis: yAxis, xLabel: "ranks", yLabel: panel.axis)
      for (number, line) in lines.enumerated() {
        let colour = RunPlot.palette[number % RunPlot.palette.count]
        let legendX = frame.x + 12 + Double(number % 2) * (frame.width / 2)
        let legendY = frame.y + 40 + 18 * Double(number / 2)
        svg += RunPlot.line(
          legendX, legendY - 4, legendX + 22, legendY - 4, stroke: colour, width: 3)
        svg += RunPlot.text(x: legendX + 28, y: legendY, line.name)
        func place(_ point: (Double, Double)) -> (Double, Double)? {
          (
            plot.x + xAxis.position(point.0) * plot.width,
            plot.y + plot.height - yAxis.position(point.1) * plot.height
          )
        }
        svg += RunPlot.drawSeries(line.measured.map(place), name: line.name, colour: colour)
        svg += RunPlot.drawSeries(
          line.model.map(place), name: line.name + ", model", colour: colour, dashed: true)
      }
      svg += "</g>\n"
    }
    return svg + "</svg>\n"
  }
}
