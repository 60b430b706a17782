import ConcordTensors
import Foundation

extension RunSummary {
  /// The line of `eval.json`: `{"test_accuracy", "knn_accuracy", "steps", "seconds"}`, with
  /// `null` accuracy without the supervised task.
  var jsonText: String {
    var line = JSONLine()
    if let accuracy = testAccuracy {
      line.add("test_accuracy", accuracy)
    } else {
      line.add("test_accuracy", raw: "null")
    }
    line.add("knn_accuracy", knnAccuracy)
    line.add("steps", steps)
    line.add("seconds", seconds)
    return line.text
  }

  /// Returns the line printed on the console, naming the kNN neighbour count `neighbours`.
  func consoleLine(neighbours: Int) -> String {
    let accuracyText = testAccuracy.map { String(format: "%.4f", $0) } ?? "n/a"
    return
      "concord: test accuracy \(accuracyText), kNN accuracy \(String(format: "%.4f", knnAccuracy)) "
      + "(k = \(neighbours)), \(steps) steps, \(String(format: "%.1f", seconds)) s"
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
