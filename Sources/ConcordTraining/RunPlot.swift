import Foundation

/// One SVG page of a run's curves: per-task losses, GradNorm weights, the gradient conflict
/// rate and the throughput, each against the step.
///
/// The page is self-contained (no scripts, fonts or links), so browsers and converters such
/// as `rsvg-convert` show it alike. Each plotted series is one `<path>`; axes, grid lines and
/// legend swatches are `<line>` elements, so the paths count the series. A series is broken
/// where a value is missing, and its points are marked when there are few of them.
public enum RunPlot {
  /// The width of the page, in pixels.
  static let width = 1200.0
  /// The height of the page, in pixels.
  static let height = 860.0
  /// Tableau 10, a palette whose colours stay apart for common colour-vision deficiencies.
  static let palette = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
    "#9c755f", "#bab0ac",
  ]

  /// One named line of a panel.
  struct Series {
    var name: String
    var values: [Double]
  }

  /// The mapping of a panel's values to its vertical axis.
  enum Scale {
    /// From the smallest to the largest value.
    case linear
    /// From zero to the largest value, for quantities whose size matters (throughput).
    case linearFromZero
    /// Decades, for values that are all positive and orders of magnitude apart.
    case logarithmic
    /// From 0 to 1, labelled in percent.
    case fraction
  }

  /// Returns the SVG document of `metrics`, titled with `title` (such as the run folder).
  public static func svg(_ metrics: RunMetrics, title: String) -> String {
    let steps = metrics.steps.map(Double.init)
    let tasks = metrics.taskNames
    let lossScale: Scale =
      prefersLogarithmicScale(metrics.losses.flatMap { $0 }) ? .logarithmic : .linear
    let panels: [(title: String, axis: String, scale: Scale, series: [Series])] = [
      (
        "Loss per task", lossScale == .logarithmic ? "loss (log scale)" : "loss", lossScale,
        zip(tasks, metrics.losses).map { Series(name: $0, values: $1) }
      ),
      (
        "GradNorm task weights", "weight", .linear,
        zip(tasks, metrics.weights).map { Series(name: $0, values: $1) }
      ),
      (
        "Gradient conflicts: task pairs with negative cosine", "share of pairs", .fraction,
        [Series(name: "conflict rate", values: metrics.conflictRates)]
      ),
      (
        "Throughput, all ranks", "samples per second", .linearFromZero,
        [Series(name: "samples per second", values: metrics.samplesPerSecond)]
      ),
    ]

    let lastStep = metrics.steps.last.map(String.init) ?? "none"
    var svg = pageStart(
      width: width, height: height, title: title,
      note: "\(metrics.steps.count) logged steps, last step \(lastStep)")
    let panelWidth = (width - 30) / 2
    let panelHeight = (height - 50) / 2
    for (index, panel) in panels.enumerated() {
      let frame = Frame(
        x: 10 + Double(index % 2) * (panelWidth + 10), y: 45 + Double(index / 2) * panelHeight,
        width: panelWidth, height: panelHeight - 10)
      svg += drawPanel(
        frame: frame, title: panel.title, axisLabel: panel.axis, scale: panel.scale,
        steps: steps, series: panel.series, colourOffset: [0, 0, 4, 6][index])
    }
    return svg + "</svg>\n"
  }

  /// Returns the start of an SVG page: the root element, a white background, `title` at the top
  /// left and `note` at the top right.
  ///
  /// The caller appends the panels and `</svg>`.
  static func pageStart(width: Double, height: Double, title: String, note: String) -> String {
    """
    <?xml version="1.0" encoding="UTF-8"?>
    <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" \
    viewBox="0 0 \(Int(width)) \(Int(height))" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" \
    font-size="13">
    <title>\(escape(title))</title>
    <rect x="0" y="0" width="\(Int(width))" height="\(Int(height))" fill="#ffffff"/>
    <text x="20" y="28" font-size="17" font-weight="bold">\(escape(title))</text>
    <text x="\(Int(width) - 20)" y="28" text-anchor="end" fill="#555555">\(escape(note))</text>

    """
  }

  /// Losses of different tasks can lie orders of magnitude apart (NT-Xent near 5, BYOL
  /// near 0.05); a logarithmic axis keeps every task readable then.
  static func prefersLogarithmicScale(_ values: [Double]) -> Bool {
    let finite = values.filter(\.isFinite)
    guard let low = finite.min(), let high = finite.max(), low > 0 else { return false }
    return high / low >= 30
  }

  struct Frame {
    var x: Double
    var y: Double
    var width: Double
    var height: Double
  }

  // MARK: - Panels

  static func drawPanel(
    frame: Frame, title: String, axisLabel: String, scale: Scale, steps: [Double],
    series: [Series], colourOffset: Int
  ) -> String {
    // The plot area inside the panel: room for the title and legend above, tick labels at
    // the left and below.
    let area = Frame(
      x: frame.x + 72, y: frame.y + 52, width: frame.width - 90, height: frame.height - 100)
    var out = "<g>\n"
    out += rect(frame, fill: "#ffffff", stroke: "#cccccc")
    out += text(
      x: frame.x + 12, y: frame.y + 20, title, attributes: "font-size=\"15\" font-weight=\"bold\"")

    // Legend: one swatch and name per series, in a row under the title.
    var legendX = frame.x + 12
    for (index, item) in series.enumerated() {
      let colour = palette[(index + colourOffset) % palette.count]
      out += line(legendX, frame.y + 36, legendX + 22, frame.y + 36, stroke: colour, width: 3)
      out += text(x: legendX + 28, y: frame.y + 40, item.name)
      legendX += 28 + Double(item.name.count) * 7.5 + 18
    }

    let values = series.flatMap(\.values).filter(\.isFinite)
    let xAxis = PlotAxis.linear(low: steps.min() ?? 0, high: steps.max() ?? 1)
    let yAxis: PlotAxis
    switch scale {
    case .fraction: yAxis = PlotAxis.fraction()
    case .logarithmic:
      yAxis = PlotAxis.logarithmic(low: values.min() ?? 1, high: values.max() ?? 1)
    case .linear: yAxis = PlotAxis.linear(low: values.min() ?? 0, high: values.max() ?? 1)
    case .linearFromZero: yAxis = PlotAxis.linear(low: 0, high: values.max() ?? 1)
    }
    out += drawAxes(area: area, xAxis: xAxis, yAxis: yAxis, xLabel: "step", yLabel: axisLabel)

    guard !values.isEmpty else {
      out += text(
        x: area.x + area.width / 2, y: area.y + area.height / 2, "no data in metrics.jsonl",
        attributes: "text-anchor=\"middle\" fill=\"#777777\"")
      return out + "</g>\n"
    }
    for (index, item) in series.enumerated() {
      let colour = palette[(index + colourOffset) % palette.count]
      let points = zip(steps, item.values).map { step, value in
        value.isFinite
          ? (
            area.x + xAxis.position(step) * area.width,
            area.y + area.height - yAxis.position(value) * area.height
          )
          : nil
      }
      out += drawSeries(points, name: item.name, colour: colour)
    }
    return out + "</g>\n"
  }

  /// Returns the grid, the tick labels and the axis titles of a plot area.
  static func drawAxes(
    area: Frame, xAxis: PlotAxis, yAxis: PlotAxis, xLabel: String, yLabel: String
  ) -> String {
    var out = ""
    for tick in yAxis.ticks {
      let y = area.y + area.height - yAxis.position(tick) * area.height
      out += line(area.x, y, area.x + area.width, y, stroke: "#e6e6e6", width: 1)
      out += text(
        x: area.x - 6, y: y + 4, yAxis.label(tick),
        attributes: "text-anchor=\"end\" font-size=\"12\"")
    }
    for tick in xAxis.ticks {
      let x = area.x + xAxis.position(tick) * area.width
      out += line(x, area.y, x, area.y + area.height, stroke: "#e6e6e6", width: 1)
      out += line(x, area.y + area.height, x, area.y + area.height + 5, stroke: "#333333", width: 1)
      out += text(
        x: x, y: area.y + area.height + 19, xAxis.label(tick),
        attributes: "text-anchor=\"middle\" font-size=\"12\"")
    }
    out += line(
      area.x, area.y + area.height, area.x + area.width, area.y + area.height, stroke: "#333333",
      width: 1)
    out += line(area.x, area.y, area.x, area.y + area.height, stroke: "#333333", width: 1)
    out += text(
      x: area.x + area.width / 2, y: area.y + area.height + 38, xLabel,
      attributes: "text-anchor=\"middle\" fill=\"#333333\"")
    let middle = area.y + area.height / 2
    out += text(
      x: area.x - 58, y: middle, yLabel,
      attributes:
        "text-anchor=\"middle\" fill=\"#333333\" transform=\"rotate(-90 \(format(area.x - 58)) \(format(middle)))\""
    )
    return out
  }

  /// Returns one `<path>`, with a new subpath after each missing value, and circles on the
  /// points when there are at most 40 of them; a `dashed` path has no circles.
  static func drawSeries(
    _ points: [(Double, Double)?], name: String, colour: String, dashed: Bool = false
  ) -> String {
    var commands: [String] = []
    var isDrawing = false
    for point in points {
      guard let (x, y) = point else {
        isDrawing = false
        continue
      }
      commands.append("\(isDrawing ? "L" : "M")\(format(x)) \(format(y))")
      isDrawing = true
    }
    var out =
      "<path d=\"\(commands.joined(separator: " "))\" fill=\"none\" stroke=\"\(colour)\" "
      + "stroke-width=\"2\" stroke-linejoin=\"round\"\(dashed ? " stroke-dasharray=\"6 4\"" : "")>"
      + "<title>\(escape(name))</title></path>\n"
    let present = points.compactMap { $0 }
    if present.count <= 40 && !dashed {
      for (x, y) in present {
        out += "<circle cx=\"\(format(x))\" cy=\"\(format(y))\" r=\"3\" fill=\"\(colour)\"/>\n"
      }
    }
    return out
  }

  // MARK: - SVG elements

  static func rect(_ frame: Frame, fill: String, stroke: String) -> String {
    "<rect x=\"\(format(frame.x))\" y=\"\(format(frame.y))\" width=\"\(format(frame.width))\" "
      + "height=\"\(format(frame.height))\" fill=\"\(fill)\" stroke=\"\(stroke)\"/>\n"
  }

  static func line(
    _ x1: Double, _ y1: Double, _ x2: Double, _ y2: Double, stroke: String, width: Double
  ) -> String {
    "<line x1=\"\(format(x1))\" y1=\"\(format(y1))\" x2=\"\(format(x2))\" y2=\"\(format(y2))\" "
      + "stroke=\"\(stroke)\" stroke-width=\"\(format(width))\"/>\n"
  }

  static func text(x: Double, y: Double, _ content: String, attributes: String = "")
    -> String
  {
    let extra = attributes.isEmpty ? "" : " " + attributes
    return "<text x=\"\(format(x))\" y=\"\(format(y))\"\(extra)>\(escape(content))</text>\n"
  }

  static func format(_ value: Double) -> String {
    String(format: "%.1f", value)
  }

  /// Escapes the characters that XML reserves in text and attribute values.
  static func escape(_ text: String) -> String {
    var result = ""
    for character in text {
      switch character {
      case "&": result += "&amp;"
      case "<": result += "&lt;"
      case ">": result += "&gt;"
      case "\"": result += "&quot;"
      default: result.append(character)
      }
    }
    return result
  }
}
