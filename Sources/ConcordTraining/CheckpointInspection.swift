import ConcordBalancing
import ConcordModel
import ConcordTensors
import Foundation

/// The listing that `concord inspect` prints for a safetensors file.
public enum CheckpointInspection {
  /// Reads and checks the safetensors file at `path` and returns its listing.
  ///
  /// The lines are the metadata, one `key: value` per line in key order, then one line per
  /// tensor in data order (`name dtype [shape] bytes`), then a summary line with the tensor
  /// count and the total bytes. A file whose metadata has `data_crc32` must match it. A
  /// Concord checkpoint (metadata with `model`) goes through every check that resuming
  /// makes, against the model its metadata describes.
  ///
  /// - Throws: `SafeTensorsError` or ``CheckpointError``, one line naming `path`, when the
  ///   file is unreadable, malformed, damaged or incomplete.
  public static func lines(path: String) throws -> [String] {
    let file = try SafeTensors.read(path: path)
    var verdict = ""
    if file.metadata["model"] == nil {
      try CheckpointContents.checkChecksum(file, path: path, isRequired: false)
    } else {
      try CheckpointContents.checkVersionAndChecksum(file, path: path)
      let (contents, _) = try validatedCheckpoint(file, path: path, capacity: 2)
      verdict = "; a complete Concord checkpoint at step \(contents.step)"
    }
    if let crc = file.metadata["data_crc32"] { verdict += "; data_crc32 \(crc) matches" }

    var lines = file.metadata.keys.sorted().map { "\($0): \(file.metadata[$0] ?? "")" }
    var total = 0
    for tensor in file.tensors {
      let shape = "[" + tensor.shape.map(String.init).joined(separator: ", ") + "]"
      lines.append("\(tensor.name) \(tensor.dtype.rawValue) \(shape) \(tensor.bytes.count)")
      total += tensor.bytes.count
    }
    lines.append("\(file.tensors.count) tensors, \(total) bytes of tensor data\(verdict)")
    return lines
  }

  /// Validates a Concord checkpoint against the model, balancer and optimizer its metadata
  /// names, and returns it with that model, freshly initialised.
  ///
  /// The model takes batches of up to `capacity` view rows, and the clean rows of the run's
  /// supervised view as in training.
  ///
  /// - Throws: ``CheckpointError`` naming the first missing or invalid part.
  static func validatedCheckpoint(_ file: SafeTensors, path: String, capacity: Int) throws
    -> (CheckpointContents, MultiTaskModel)
  {
    let configuration = try CheckpointContents.storedConfiguration(file, path: path)
    let shape = try CheckpointContents.storedModel(file, path: path)
    guard let kind = BalancerKind(rawValue: configuration.balancer) else {
      throw CheckpointError(
        "\(path): unknown balancer \(configuration.balancer) in __metadata__; the checkpoint "
          + "is damaged")
    }
    try Checkpoint.checkLoadedFinite(file, path: path)
    let view = configuration.supervisedView
    let model = MultiTaskModel(
      configuration: shape, capacity: capacity / 2 * configuration.rowsPerImage, seed: configuration.seed,
      supervisedView: view)
    let contents = try CheckpointContents(
      validating: file, model: model, balancer: kind, optimizer: configuration.optimizer,
      path: path)
    return (contents, model)
  }
}
