import ConcordBalancing
import ConcordDistributed
import ConcordModel
import ConcordTensors
import Foundation

/// Checkpoints: everything the next step reads, in one safetensors file.
///
/// Tensors: each parameter under its layout name (`encoder.0.weight`, ...), and Adam's
/// moments under `adam.first_moment.<name>` and `adam.second_moment.<name>`. The BYOL target
/// is under `target.<name>`. The GradNorm task weights and initial losses are `F64` tensors
/// `balancer.task_weights` and `balancer.initial_losses`, in double precision as the balancer
/// keeps them, so that a resumed run continues bit for bit. The counters `step` and
/// `adam.step` are `I64`. The `__metadata__` map holds `format_version`, `step`, `epoch`,
/// `tasks`, `balancer` and the whole configuration as JSON.
///
/// Random streams are keyed by the step, so the data order, the augmentations and the
/// PCGrad order of a resumed run follow from `step` alone.
enum Checkpoint {
  /// The version of the layout above; a file with another version is rejected.
  static let formatVersion = "1"

  static func save(trainer: Trainer, to path: String) throws {
    let model = trainer.model
    var file = SafeTensors()
    for slot in model.layout.slots {
      file.append(tensor(slot.name, slot, model.parameters))
    }
    for slot in model.layout.slots {
      file.append(tensor("adam.first_moment." + slot.name, slot, trainer.optimizer.firstMoment))
      file.append(tensor("adam.second_moment." + slot.name, slot, trainer.optimizer.secondMoment))
    }
    if let target = model.target {
      for slot in model.targetLayout.slots { file.append(tensor(slot.name, slot, target)) }
    }
    file.append(doubleTensor("balancer.task_weights", trainer.balancer.taskWeights))
    file.append(doubleTensor("balancer.initial_losses", trainer.balancer.initialLosses ?? []))
    file.append(SafeTensors.Tensor(name: "step", shape: [1], int64s: [Int64(trainer.step)]))
    file.append(
      SafeTensors.Tensor(
        name: "adam.step", shape: [1], int64s: [Int64(trainer.optimizer.stepCount)]))

    let configuration = try JSONEncoder().encode(trainer.configuration)
    file.metadata = [
      "format_version": formatVersion,
      "step": String(trainer.step),
      "epoch": String(trainer.step / trainer.stepsPerEpoch),
      "tasks": trainer.configuration.tasks.map(\.rawValue).joined(separator: ","),
      "balancer": trainer.configuration.balancer,
      "configuration": String(decoding: configuration, as: UTF8.self),
    ]
    try AtomicFile.write(file.serialized(), to: path)
    removeOld(in: (path as NSString).deletingLastPathComponent, keep: trainer.configuration.keep)
  }

  /// Restores the state of `trainer` from the checkpoint `bytes` read from `path`.
  static func restore(_ trainer: Trainer, from bytes: [UInt8], path: String) throws {
    var file = try SafeTensors(bytes: bytes)
    file.sourcePath = path
    guard file.metadata["format_version"] == formatVersion else {
      throw TrainingError(
        "\(path): checkpoint format version \(file.metadata["format_version"] ?? "missing"), "
          + "expected \(formatVersion): resume with the Concord version that wrote it")
    }
    try checkCompatible(file, trainer.configuration, path: path)

    let model = trainer.model
    for slot in model.layout.slots {
      try file.copyFloats(slot.name, into: elements(slot, model.parameters), shape: slot.shape)
      try file.copyFloats(
        "adam.first_moment." + slot.name, into: elements(slot, trainer.optimizer.firstMoment),
        shape: slot.shape)
      try file.copyFloats(
        "adam.second_moment." + slot.name, into: elements(slot, trainer.optimizer.secondMoment),
        shape: slot.shape)
    }
    if let target = model.target {
      for slot in model.targetLayout.slots {
        try file.copyFloats(slot.name, into: elements(slot, target), shape: slot.shape)
      }
    }
    let taskCount = model.taskCount
    let weights = try doubles(file, "balancer.task_weights", path: path)
    let initial = try doubles(file, "balancer.initial_losses", path: path)
    guard weights.count == taskCount, initial.isEmpty || initial.count == taskCount else {
      throw TrainingError(
        "\(path): invalid balancer state: \(weights.count) task weights, expected \(taskCount); "
          + "the checkpoint is damaged")
    }
    trainer.balancer.taskWeights = weights
    trainer.balancer.initialLosses = initial.isEmpty ? nil : initial
    trainer.step = Int(try file.int64s("step", shape: [1])[0])
    trainer.optimizer.stepCount = Int(try file.int64s("adam.step", shape: [1])[0])
  }

  /// Checks that the checkpoint was written for the same model, tasks and balancer.
  static func checkCompatible(
    _ file: SafeTensors, _ configuration: TrainingConfiguration, path: String
  ) throws {
    guard let text = file.metadata["configuration"],
      let saved = try? JSONDecoder().decode(TrainingConfiguration.self, from: Data(text.utf8))
    else {
      throw TrainingError("\(path): the checkpoint has no readable configuration in __metadata__")
    }
    let pairs: [(String, String, String)] = [
      (
        "--tasks", saved.tasks.map(\.rawValue).joined(separator: ","),
        configuration.tasks.map(\.rawValue).joined(separator: ",")
      ),
      (
        "--hidden", saved.hiddenSizes.map(String.init).joined(separator: ","),
        configuration.hiddenSizes.map(String.init).joined(separator: ",")
      ),
      ("--balancer", saved.balancer, configuration.balancer),
      ("--batch-size", String(saved.batchSize), String(configuration.batchSize)),
      ("--seed", String(saved.seed), String(configuration.seed)),
    ]
    for (flag, old, new) in pairs where old != new {
      throw TrainingError(
        "\(path) was written with \(flag) \(old), this run has \(flag) \(new): "
          + "pass \(flag) \(old) or start a new run without --resume")
    }
  }

  /// Returns the newest checkpoint in `directory`, or nil if there is none.
  static func newest(in directory: String) -> String? {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    let checkpoints = names.filter { $0.hasPrefix("step-") && $0.hasSuffix(".safetensors") }
    return checkpoints.sorted().last.map { directory + "/" + $0 }
  }

  /// Removes all but the newest `keep` checkpoints of `directory`.
  static func removeOld(in directory: String, keep: Int) {
    guard keep > 0 else { return }
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    let checkpoints = names.filter { $0.hasPrefix("step-") && $0.hasSuffix(".safetensors") }
      .sorted()
    for name in checkpoints.dropLast(keep) {
      try? FileManager.default.removeItem(atPath: directory + "/" + name)
    }
  }

  private static func elements(_ slot: TensorSlot, _ buffer: FloatBuffer)
    -> UnsafeMutableBufferPointer<Float>
  {
    UnsafeMutableBufferPointer(start: buffer.baseAddress + slot.offset, count: slot.count)
  }

  private static func tensor(_ name: String, _ slot: TensorSlot, _ buffer: FloatBuffer)
    -> SafeTensors.Tensor
  {
    SafeTensors.Tensor(
      name: name, shape: slot.shape, floats: UnsafeBufferPointer(elements(slot, buffer)))
  }
}
