import ConcordTensors

extension Checkpoint {
  /// Rejects a checkpoint whose `F32` or `F64` tensors hold NaN or infinity, so that no
  /// checkpoint on disk ever does.
  ///
  /// ``Trainer`` calls ``save(trainer:to:)`` inside ``collectively(_:_:)``, so every rank
  /// stops with this error.
  ///
  /// - Parameter advice: the settings to change, such as `lower --lr`, named in the error.
  /// - Throws: ``TrainingError`` naming the step, the first non-finite tensor and the path.
  static func checkFinite(_ file: SafeTensors, step: Int, path: String, advice: String) throws {
    if let name = try firstNonFiniteTensor(file) {
      throw TrainingError(
        "step \(step): tensor \(name) contains NaN or infinity, so the checkpoint "
          + "\(path) was not written and the earlier ones stay: \(advice), then resume from "
          + "the newest checkpoint", isCollective: true)
    }
  }

  /// Rejects a checkpoint read from disk whose `F32` or `F64` tensors hold NaN or infinity.
  ///
  /// Concord never writes one, so such a file was damaged or made elsewhere.
  ///
  /// - Throws: ``CheckpointError`` naming the path and the first non-finite tensor.
  static func checkLoadedFinite(_ file: SafeTensors, path: String) throws {
    if let name = try firstNonFiniteTensor(file) {
      throw CheckpointError(
        "\(path): tensor \(name) contains NaN or infinity, so the checkpoint is damaged: resume "
          + "from another one")
    }
  }

  /// Returns the name of the first `F32` or `F64` tensor of `file` that contains NaN or infinity.
  private static func firstNonFiniteTensor(_ file: SafeTensors) throws -> String? {
    for tensor in file.tensors {
      switch tensor.dtype {
      case .f32: if !(try file.floats(tensor.name).allSatisfy(\.isFinite)) { return tensor.name }
      case .f64: if !(try file.doubles(tensor.name).allSatisfy(\.isFinite)) { return tensor.name }
      default: continue
      }
    }
    return nil
  }
}
