import Foundation

/// A JSON object written key by key, so that keys keep the order they were added in.
///
/// Metrics lines keep a fixed key order, which makes them easy to read by eye and to
/// compare with `diff`. `JSONSerialization` does not keep insertion order.
struct JSONLine {
  private var parts: [String] = []
  /// The numbers added so far, tagged as TensorBoard shows them: `key` for a number and
  /// `key/member` for a member of an object.
  ///
  /// TensorBoard groups tags by the part before the first `/`, so a `/` in a member name becomes
  /// `-`: the cosine of `supervised/simclr` is `cosine/supervised-simclr`.
  private(set) var scalars: [(tag: String, value: Double)] = []

  mutating func add(_ key: String, _ value: Int) {
    parts.append("\(Self.quote(key)): \(value)")
    scalars.append((key, Double(value)))
  }

  mutating func add(_ key: String, _ value: Double) {
    parts.append("\(Self.quote(key)): \(Self.number(value))")
    scalars.append((key, value))
  }

  mutating func add(_ key: String, _ value: String) {
    parts.append("\(Self.quote(key)): \(Self.quote(value))")
  }

  mutating func add(_ key: String, _ values: [(String, Double)]) {
    let inner = values.map { "\(Self.quote($0.0)): \(Self.number($0.1))" }
    parts.append("\(Self.quote(key)): {\(inner.joined(separator: ", "))}")
    for (member, value) in values {
      scalars.append((key + "/" + member.replacingOccurrences(of: "/", with: "-"), value))
    }
  }

  /// Adds `value`, or `null` when it is nil.
  mutating func add(_ key: String, _ value: Double?) {
    if let value { add(key, value) } else { add(key, raw: "null") }
  }

  mutating func add(_ key: String, raw: String) {
    parts.append("\(Self.quote(key)): \(raw)")
  }

  var text: String { "{" + parts.joined(separator: ", ") + "}" }

  /// Formats a number with up to 7 significant digits; JSON has no NaN or infinity, so
  /// those become `null`.
  static func number(_ value: Double) -> String {
    guard value.isFinite else { return "null" }
    if value == value.rounded() && abs(value) < 1e15 { return String(Int64(value)) }
    return String(format: "%.7g", value)
  }

  static func quote(_ text: String) -> String {
    var result = "\""
    for scalar in text.unicodeScalars {
      switch scalar {
      case "\"": result += "\\\""
      case "\\": result += "\\\\"
      case "\n": result += "\\n"
      case "\t": result += "\\t"
      default:
        if scalar.value < 0x20 {
          result += String(format: "\\u%04x", scalar.value)
        } else {
          result.unicodeScalars.append(scalar)
        }
      }
    }
    return result + "\""
  }
}
