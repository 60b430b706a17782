import Foundation

/// A value axis of ``RunPlot``: its range, its ticks and their labels.
///
/// Linear axes take about five ticks at 1, 2 or 5 times a power of ten, and widen the range
/// to the outer ticks. Logarithmic axes take the decades around the values, and also 2 and 5
/// times each decade when the values span at most two decades.
struct PlotAxis {
  enum Kind {
    case linear
    case logarithmic
    case binaryLogarithmic
    case fraction
  }

  let kind: Kind
  /// The range of the axis: values, or for a logarithmic axis their base-10 (binary: base-2)
  /// logarithms.
  let low: Double
  let high: Double
  /// The tick values, ascending.
  let ticks: [Double]
  /// The decimals of the tick labels of a linear axis.
  let decimals: Int

  /// Returns an axis from `low` to `high`, widened to round ticks; a single value gets
  /// room on both sides.
  static func linear(low: Double, high: Double) -> PlotAxis {
    var low = low
    var high = high
    if high <= low {
      let margin = max(abs(low) * 0.1, 1)
      low -= margin
      high += margin
    }
    let step = niceNumber(niceNumber(high - low, rounding: false) / 4, rounding: true)
    let first = (low / step).rounded(.down) * step
    let last = (high / step).rounded(.up) * step
    let count = Int(((last - first) / step).rounded())
    // Sums of steps can miss zero by a rounding error, which would print as "-0.0".
    let ticks = (0...count).map { first + Double($0) * step }.map { abs($0) < step * 1e-9 ? 0 : $0 }
    let decimals = max(0, -Int(log10(step).rounded(.down)))
    return PlotAxis(kind: .linear, low: first, high: last, ticks: ticks, decimals: decimals)
  }

  /// Returns a base-10 logarithmic axis over the decades that hold `low` to `high`, both
  /// positive.
  static func logarithmic(low: Double, high: Double) -> PlotAxis {
    let first = log10(low).rounded(.down)
    var last = log10(high).rounded(.up)
    if last <= first { last = first + 1 }
    var ticks: [Double] = []
    for decade in Int(first)...Int(last) {
      let base = pow(10, Double(decade))
      ticks.append(base)
      if last - first <= 2 && Double(decade) < last { ticks += [2 * base, 5 * base] }
    }
    return PlotAxis(kind: .logarithmic, low: first, high: last, ticks: ticks, decimals: 0)
  }

  /// Returns a base-2 logarithmic axis with a tick at every power of two from the one at or
  /// below `low` to the one at or above `high`, both positive: the axis of rank counts.
  static func binaryLogarithmic(low: Double, high: Double) -> PlotAxis {
    let first = log2(low).rounded(.down)
    var last = log2(high).rounded(.up)
    if last <= first { last = first + 1 }
    let ticks = (Int(first)...Int(last)).map { pow(2, Double($0)) }
    return PlotAxis(kind: .binaryLogarithmic, low: first, high: last, ticks: ticks, decimals: 0)
  }

  /// Returns the axis from 0 to 1, with ticks every quarter labelled in percent.
  static func fraction() -> PlotAxis {
    PlotAxis(kind: .fraction, low: 0, high: 1, ticks: [0, 0.25, 0.5, 0.75, 1], decimals: 0)
  }

  /// Returns where `value` lies on the axis, 0 at the low end and 1 at the high end.
  func position(_ value: Double) -> Double {
    let coordinate: Double
    switch kind {
    case .logarithmic: coordinate = log10(value)
    case .binaryLogarithmic: coordinate = log2(value)
    case .linear, .fraction: coordinate = value
    }
    return (coordinate - low) / (high - low)
  }

  /// Returns the label of the tick at `value`.
  func label(_ value: Double) -> String {
    switch kind {
    case .linear: return String(format: "%.\(decimals)f", value)
    case .logarithmic, .binaryLogarithmic: return String(format: "%g", value)
    case .fraction: return String(format: "%.0f%%", value * 100)
    }
  }

  /// Returns 1, 2, 5 or 10 times the power of ten at or below `value`: the nearest such
  /// number when `rounding`, else the smallest that is at least `value`.
  static func niceNumber(_ value: Double, rounding: Bool) -> Double {
    let exponent = log10(value).rounded(.down)
    let power = pow(10, exponent)
    let fraction = value / power
    // Each candidate with the upper bound of the fractions it stands for.
    let candidates: [(nice: Double, bound: Double)] =
      rounding ? [(1, 1.5), (2, 3), (5, 7)] : [(1, 1), (2, 2), (5, 5)]
    for candidate in candidates {
      let isBelow = rounding ? fraction < candidate.bound : fraction <= candidate.bound
      if isBelow { return candidate.nice * power }
    }
    return 10 * power
  }
}
