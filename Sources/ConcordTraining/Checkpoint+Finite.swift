import ConcordTensors

extension Checkpoint {
  /// Rejects a checkpoint whose `F32` or `F64` tensors hold NaN or infinity, so that no
  /// checkpoint on disk ever does.
  ///
  /// ``Trainer`` calls ``save(trainer:to:)`` inside ``collectively(_:_:)``, so every rank
  /// stops with this error.
  ///
  /// - Throws: ``TrainingError`` naming the step, the first non-finite tensor and the path.
  static func checkFinite(_ file: SafeTensors, step: Int, path: String) throws {
    for tensor in file.tensors {
      let isFinite: Bool
      switch tensor.dtype {
      case .f32: isFinite = try file.floats(tensor.name).allSatisfy(\.isFinite)
      case .f64: isFinite = try file.doubles(tensor.name).allSatisfy(\.isFinite)
      default: continue
      }
      guard isFinite else {
        throw TrainingError(
          "step \(step): tensor \(tensor.name) holds NaN or infinity, so the checkpoint "
            + "\(path) was not written and the earlier ones stay: lower --lr, then resume from "
            + "the newest checkpoint", isCollective: true)
      }
    }
  }
}
