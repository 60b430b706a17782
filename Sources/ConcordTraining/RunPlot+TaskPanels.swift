import Foundation

extension RunPlot {
  /// Returns an SVG page with one panel per task, each with one line per entry of `series`
  /// against `steps`: the page of `concord study`, whose lines are balancers.
  ///
  /// - Parameters:
  ///   - title: the page title.
  ///   - steps: the steps of the points, ascending.
  ///   - tasks: the task names, one panel each, two panels per row.
  ///   - series: per line its name and, per task, one value per step (NaN where missing).
  static func taskPanelsSVG(
    title: String, steps: [Int], tasks: [String], series: [(name: String, values: [[Double]])]
  ) -> String {
    let rows = max((tasks.count + 1) / 2, 1)
    let panelHeight = (height - 50) / 2
    let pageHeight = 50 + Double(rows) * panelHeight
    let lastStep = steps.last.map(String.init) ?? "none"
    var svg = pageStart(
      width: width, height: pageHeight, title: title,
      note: "\(steps.count) logged steps, last step \(lastStep)")
    let panelWidth = (width - 30) / 2
    for (index, task) in tasks.enumerated() {
      let lines = series.map { Series(name: $0.name, values: $0.values[index]) }
      let scale: Scale =
        prefersLogarithmicScale(lines.flatMap(\.values)) ? .logarithmic : .linear
      let frame = Frame(
        x: 10 + Double(index % 2) * (panelWidth + 10), y: 45 + Double(index / 2) * panelHeight,
        width: panelWidth, height: panelHeight - 10)
      svg += drawPanel(
        frame: frame, title: "Loss of \(task)",
        axisLabel: scale == .logarithmic ? "loss (log scale)" : "loss", scale: scale,
        steps: steps.map(Double.init), series: lines, colourOffset: 0)
    }
    return svg + "</svg>\n"
  }
}
