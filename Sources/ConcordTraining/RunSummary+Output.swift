import ConcordTensors
import Foundation

extension RunSummary {
  /// Creates the summary of `evaluation`, run with the kNN temperature `knnTemperature`, at
  /// step `steps` after `seconds` of training and evaluation.
  init(evaluation: Evaluation.Result, knnTemperature: Float, steps: Int, seconds: Double) {
    self.init(
      testAccuracy: evaluation.testAccuracy, knnAccuracy: evaluation.knnAccuracy,
      knnK: evaluation.knnK, knnTemperature: knnTemperature,
      linearProbeAccuracy: evaluation.linearProbeAccuracy,
      augpredAccuracy: evaluation.augpredAccuracy,
      augpredAccuracyPerKind: evaluation.augpredAccuracyPerKind.map { ($0.rawValue, $1) },
      groupAccuracies: evaluation.groupAccuracies.map {
        ($0.group.rawValue, $0.knnAccuracy, $0.linearProbeAccuracy)
      }, steps: steps, seconds: seconds)
  }

  /// The line of `eval.json`: `{"test_accuracy", "knn_accuracy", "knn_k", "knn_temperature",
  /// "linear_probe_accuracy", "augpred_accuracy", "augpred_accuracy_per_kind", "steps",
  /// "seconds"}`, with `null` test accuracy without the supervised task, `null` probe accuracy
  /// when no probe was trained, and `null` augpred accuracies without the augpred task.
  ///
  /// `augpred_accuracy_per_kind` is an object keyed by the augmentation kind's name. With
  /// adapters, `knn_accuracy_GROUP` and, with a probe, `linear_probe_accuracy_GROUP` follow
  /// for each task group, such as `knn_accuracy_invariant`: the accuracies of that group's
  /// features alone, while `knn_accuracy` and `linear_probe_accuracy` are those of all
  /// groups' features side by side.
  var jsonText: String {
    var line = JSONLine()
    line.add("test_accuracy", testAccuracy)
    line.add("knn_accuracy", knnAccuracy)
    line.add("knn_k", knnK)
    line.add("knn_temperature", raw: "\(knnTemperature)")
    line.add("linear_probe_accuracy", linearProbeAccuracy)
    line.add("augpred_accuracy", augpredAccuracy)
    if augpredAccuracyPerKind.isEmpty {
      line.add("augpred_accuracy_per_kind", raw: "null")
    } else {
      line.add("augpred_accuracy_per_kind", augpredAccuracyPerKind.map { ($0, $1) })
    }
    for (group, knn, probe) in groupAccuracies {
      line.add("knn_accuracy_" + group, knn)
      if let probe { line.add("linear_probe_accuracy_" + group, probe) }
    }
    line.add("steps", steps)
    line.add("seconds", seconds)
    return line.text
  }

  /// The line printed on the console.
  var consoleLine: String {
    let accuracyText = testAccuracy.map { String(format: "%.4f", $0) } ?? "n/a"
    let probeText =
      linearProbeAccuracy.map { ", linear probe accuracy \(String(format: "%.4f", $0))" } ?? ""
    let augpredText =
      augpredAccuracy.map { ", augpred accuracy \(String(format: "%.4f", $0))" } ?? ""
    return
      "concord: test accuracy \(accuracyText), kNN accuracy \(String(format: "%.4f", knnAccuracy)) "
      + "(k = \(knnK), T = \(knnTemperature))\(probeText)\(groupText)\(augpredText), "
      + "\(steps) steps, \(String(format: "%.1f", seconds)) s"
  }

  /// The accuracies of each task group's features alone, as the console line shows them:
  /// `, kNN accuracy invariant 0.6123, sensitive 0.5234`, and the same for the probe.
  private var groupText: String {
    guard !groupAccuracies.isEmpty else { return "" }
    func listed(_ values: [(String, Double)]) -> String {
      values.map { "\($0) \(String(format: "%.4f", $1))" }.joined(separator: ", ")
    }
    var text = ", kNN accuracy " + listed(groupAccuracies.map { ($0.group, $0.knn) })
    let probes = groupAccuracies.compactMap { entry in entry.linearProbe.map { (entry.group, $0) } }
    if !probes.isEmpty { text += ", linear probe accuracy " + listed(probes) }
    return text
  }

  /// The second console line, with the augpred accuracy of each kind, or nil without the
  /// augpred task.
  var perKindConsoleLine: String? {
    guard !augpredAccuracyPerKind.isEmpty else { return nil }
    let parts = augpredAccuracyPerKind.map { "\($0) \(String(format: "%.4f", $1))" }
    return "concord: augpred accuracy per kind: " + parts.joined(separator: ", ")
  }

  /// Writes `eval.json` into `directory`, atomically.
  ///
  /// Call it on rank 0 only.
  ///
  /// - Throws: ``AtomicFileError`` naming the file and the fix.
  func write(toDirectory directory: String) throws {
    try AtomicFile.write(Array((jsonText + "\n").utf8), to: directory + "/eval.json")
  }
}
