import Foundation

extension TrainingConfiguration {
  /// One setting whose value differs between two configurations, named by its key in the
  /// configuration's JSON (as a checkpoint stores it), with both values as JSON text.
  struct Difference: Equatable {
    let key: String
    let old: String
    let new: String
  }

  /// Returns the settings whose values differ between `old` and this configuration, in key
  /// order, leaving out the keys in `ignoring`.
  func differences(from old: TrainingConfiguration, ignoring: Set<String>) -> [Difference] {
    let new = Self.jsonObject(self)
    let previous = Self.jsonObject(old)
    var differences: [Difference] = []
    for key in Set(new.keys).union(previous.keys).sorted() where !ignoring.contains(key) {
      let oldText = Self.jsonText(previous[key])
      let newText = Self.jsonText(new[key])
      if oldText != newText {
        differences.append(Difference(key: key, old: oldText, new: newText))
      }
    }
    return differences
  }

  private static func jsonObject(_ configuration: TrainingConfiguration) -> [String: Any] {
    guard let data = try? JSONEncoder().encode(configuration),
      let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    else { return [:] }
    return object
  }

  /// Returns `value` as compact JSON text, or `none` for a key that the JSON lacks because
  /// its optional setting is unset.
  private static func jsonText(_ value: Any?) -> String {
    guard let value,
      let data = try? JSONSerialization.data(
        withJSONObject: value, options: [.fragmentsAllowed, .sortedKeys])
    else { return "none" }
    return String(decoding: data, as: UTF8.self)
  }
}
