import CZlib
import ConcordBalancing
import ConcordModel
import ConcordTensors
import Foundation

/// A checkpoint file checked against the model and balancer it is meant for: every tensor
/// present with its dtype and shape, no tensor besides them, and counters and balancer state
/// in range.
///
/// Creating it runs every check, so that a caller can restore state from it without any
/// step failing halfway.
struct CheckpointContents {
  /// The validated file.
  let file: SafeTensors
  /// The optimizer steps done.
  let step: Int
  /// The optimizer's update count (Adam's `t`), at most ``step`` because skipped steps do not
  /// update.
  let optimizerStep: Int
  /// The steps skipped in a row for non-finite losses or gradients before ``step``.
  let consecutiveSkips: Int
  /// The task weights, one per task.
  let taskWeights: [Double]
  /// The initial losses, one per task, or nil before the first balanced step.
  let initialLosses: [Double]?

  /// Checks that `file` contains the complete state of `model` trained with balancer `kind`
  /// and `optimizer`.
  ///
  /// - Throws: ``CheckpointError`` naming `path` and the first tensor or value at fault.
  init(
    validating file: SafeTensors, model: MultiTaskModel, balancer kind: BalancerKind,
    optimizer: OptimizerKind, path: String
  )
    throws
  {
    func damaged(_ problem: String) -> CheckpointError {
      CheckpointError("\(path): \(problem); the checkpoint is damaged, resume from another one")
    }

    // Every tensor the state needs, in the order the writer stores them.
    let t = model.taskCount
    var expected: [(name: String, dtype: SafeTensors.DType, shape: [Int]?)] = []
    for slot in model.layout.slots { expected.append((slot.name, .f32, slot.shape)) }
    for slot in model.layout.slots {
      for state in optimizer.stateNames {
        expected.append((optimizer.tensorName(state: state, tensor: slot.name), .f32, slot.shape))
      }
    }
    for slot in model.targetLayout.slots { expected.append((slot.name, .f32, slot.shape)) }
    for slot in model.statisticsLayout.slots { expected.append((slot.name, .f32, slot.shape)) }
    expected.append(("balancer.task_weights", .f64, [t]))
    // The initial losses are [0] or [T]; their count is checked below.
    expected.append(("balancer.initial_losses", .f64, nil))
    for name in ["step", optimizer.stepCounterName, "consecutive_skips"] {
      expected.append((name, .i64, [1]))
    }

    for (name, dtype, shape) in expected {
      guard let tensor = file.tensor(named: name) else {
        throw damaged("tensor \(name) is missing")
      }
      guard tensor.dtype == dtype else {
        throw damaged(
          "tensor \(name) has dtype \(tensor.dtype.rawValue), expected \(dtype.rawValue)")
      }
      if let shape, tensor.shape != shape {
        throw damaged("tensor \(name) has shape \(tensor.shape), expected \(shape)")
      }
    }
    let names = Set(expected.map(\.name))
    if let extra = file.tensors.first(where: { !names.contains($0.name) }) {
      throw damaged("tensor \(extra.name) belongs to no part of this model's state")
    }
    // Squared-gradient averages and variances are sums of squares.
    let nonNegative =
      model.layout.slots.flatMap { slot in
        optimizer.nonNegativeStateNames.map { optimizer.tensorName(state: $0, tensor: slot.name) }
      } + model.statisticsLayout.slots.map(\.name).filter { $0.hasSuffix("running_var") }
    for name in nonNegative {
      if let value = try file.floats(name).first(where: { $0 < 0 }) {
        throw damaged(
          "tensor \(name) contains the negative value \(value), but an average of squares "
            + "is never negative")
      }
    }

    let step = Int(try file.int64s("step")[0])
    let optimizerStep = Int(try file.int64s(optimizer.stepCounterName)[0])
    let skips = Int(try file.int64s("consecutive_skips")[0])
    guard step >= 0, (0...step).contains(optimizerStep), (0...step).contains(skips) else {
      throw damaged(
        "invalid counters: step \(step), \(optimizer.stepCounterName) \(optimizerStep), "
          + "consecutive_skips \(skips)")
    }
    if let text = file.metadata["step"], text != String(step) {
      throw damaged("__metadata__ step is \(text) but tensor step is \(step)")
    }

    let weights = try file.doubles("balancer.task_weights")
    let learnsWeights = kind == .gradnorm || kind == .pcgradGradnorm
    let validWeights =
      learnsWeights
      ? weights.allSatisfy { $0.isFinite && $0 > 0 } : weights.allSatisfy { $0 == 1 }
    guard validWeights else {
      throw damaged("invalid task weights \(weights) for balancer \(kind.rawValue)")
    }
    let initial = try file.doubles("balancer.initial_losses")
    guard initial.isEmpty || initial.count == t, initial.allSatisfy(\.isFinite) else {
      throw damaged("invalid initial losses \(initial) for \(t) tasks")
    }

    self.file = file
    self.step = step
    self.optimizerStep = optimizerStep
    consecutiveSkips = skips
    taskWeights = weights
    initialLosses = initial.isEmpty ? nil : initial
  }

  /// Copies the `F32` tensor `name`, checked to have `destination.count` elements.
  func load(_ name: String, into destination: UnsafeMutableBufferPointer<Float>) {
    guard let tensor = file.tensor(named: name), tensor.elementCount == destination.count else {
      preconditionFailure("\(name) was validated but does not fit its destination")
    }
    tensor.bytes.withUnsafeBytes { raw in
      for i in 0..<destination.count {
        let bits = raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)
        destination[i] = Float(bitPattern: UInt32(littleEndian: bits))
      }
    }
  }

  /// Checks the format version and, against `data_crc32`, every byte of tensor data.
  ///
  /// - Throws: ``CheckpointError`` naming `path`, the value found and the value expected.
  static func checkVersionAndChecksum(_ file: SafeTensors, path: String) throws {
    let version = file.metadata["format_version"] ?? "missing"
    let versions = [Checkpoint.formatVersion, Checkpoint.larsFormatVersion]
    guard versions.contains(version) else {
      throw CheckpointError(
        "\(path): checkpoint format version \(version), expected "
          + "\(versions.joined(separator: " or ")): resume or evaluate with the Concord version "
          + "that wrote it")
    }
    try checkChecksum(file, path: path, isRequired: true)
  }

  /// Checks the data section against the `data_crc32` metadata.
  ///
  /// - Parameter isRequired: whether a file without `data_crc32` is rejected; otherwise it
  ///   passes unchecked.
  /// - Throws: ``CheckpointError`` when the value is missing but required, or does not match.
  static func checkChecksum(_ file: SafeTensors, path: String, isRequired: Bool) throws {
    guard let stored = file.metadata["data_crc32"] else {
      guard !isRequired else {
        throw CheckpointError(
          "\(path): __metadata__ lacks data_crc32; the checkpoint is damaged, resume from "
            + "another one")
      }
      return
    }
    let actual = crc32Text(dataCRC32(of: file))
    guard stored == actual else {
      throw CheckpointError(
        "\(path): the tensor data has CRC-32 \(actual) but __metadata__ data_crc32 is "
          + "\(stored); the checkpoint is damaged, resume from another one")
    }
  }

  /// Returns the ``TrainingConfiguration`` stored in `file`'s metadata.
  ///
  /// - Throws: ``CheckpointError`` when it is missing or not valid JSON of that type.
  static func storedConfiguration(_ file: SafeTensors, path: String) throws
    -> TrainingConfiguration
  {
    guard let text = file.metadata["configuration"],
      let saved = try? JSONDecoder().decode(TrainingConfiguration.self, from: Data(text.utf8))
    else {
      throw CheckpointError("\(path): the checkpoint has no readable configuration in __metadata__")
    }
    return saved
  }

  /// Returns the ``ModelConfiguration`` stored in `file`'s metadata.
  ///
  /// - Throws: ``CheckpointError`` when it is missing or describes no valid model.
  static func storedModel(_ file: SafeTensors, path: String) throws -> ModelConfiguration {
    guard let text = file.metadata["model"],
      let model = try? JSONDecoder().decode(ModelConfiguration.self, from: Data(text.utf8)),
      !model.tasks.isEmpty, model.inputSize > 0, model.classCount > 0,
      model.augmentationCount > 0, model.projectorHiddenSize > 0, model.projectionSize > 0,
      !model.hiddenSizes.isEmpty, model.hiddenSizes.allSatisfy({ $0 > 0 }),
      model.conv.map({
        $0.isValid && $0.height * $0.width == model.inputSize
          && $0.channels + $0.hiddenSizes == model.hiddenSizes
      }) ?? true
    else {
      throw CheckpointError("\(path): the checkpoint has no readable model shape in __metadata__")
    }
    return model
  }

  /// Returns the CRC-32 (as zlib's `crc32` computes it) of the data section of `file`: the
  /// bytes of its tensors in order.
  static func dataCRC32(of file: SafeTensors) -> UInt32 {
    var crc = crc32(0, nil, 0)
    for tensor in file.tensors {
      tensor.bytes.withUnsafeBufferPointer { bytes in
        crc = crc32(crc, bytes.baseAddress, uInt(bytes.count))
      }
    }
    return UInt32(crc)
  }

  /// Formats a CRC-32 as 8 lowercase hexadecimal digits.
  static func crc32Text(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return String(repeating: "0", count: 8 - digits.count) + digits
  }
}
