import ConcordBalancing
import ConcordDistributed
import ConcordModel
import ConcordTensors
import Foundation

/// Checkpoints: everything the next step reads, in one safetensors file.
///
/// Tensors: each parameter under its layout name (`encoder.0.weight`, ...), and the
/// optimizer's state: Adam's moments under `adam.first_moment.<name>` and
/// `adam.second_moment.<name>`, or LARS's momentum under `lars.momentum.<name>`. The BYOL target
/// is under `target.<name>`. The GradNorm task weights and initial losses are `F64` tensors
/// `balancer.task_weights` and `balancer.initial_losses`, in double precision as the balancer
/// keeps them, so that a resumed run continues bit for bit (`balancer.initial_losses` has
/// shape `[0]` until the first balanced step). The counters `step`, the optimizer's update
/// count `adam.step` or `lars.step`, and `consecutive_skips` (steps skipped in a row for
/// non-finite values) are `I64` of shape `[1]`.
///
/// The `__metadata__` map holds `format_version`, `step`, `epoch`, `tasks`, `balancer`,
/// `world_size` (the rank count that wrote it, for information), `configuration` (the resolved
/// ``TrainingConfiguration`` as JSON, with the run folder and the total step count filled in),
/// `model` (the ``ModelConfiguration`` as JSON) and `data_crc32`, the CRC-32 (zlib's `crc32`)
/// of the data section as 8 hexadecimal digits, which detects damage inside tensor data.
///
/// Random streams are keyed by the step, so the data order, the augmentations and the
/// PCGrad order of a resumed run follow from `step` alone.
enum Checkpoint {
  /// The version of the layout above with Adam's state; a file with another version is
  /// rejected.
  static let formatVersion = "2"
  /// The version of the layout above with LARS's state.
  ///
  /// Adam checkpoints keep ``formatVersion``, so that Concord versions from before LARS still
  /// read them, while those versions reject a LARS checkpoint by its version instead of
  /// calling it damaged.
  static let larsFormatVersion = "3"

  /// Writes the state of `trainer` to `path`, then removes checkpoints beyond `--keep`.
  ///
  /// Call it on rank 0 only. The file appears complete or not at all (``AtomicFile``), and
  /// older checkpoints are removed only once the new one is in place.
  ///
  /// - Throws: ``TrainingError`` naming the path, the failed call and the fix.
  static func save(trainer: Trainer, to path: String) throws {
    let model = trainer.model
    var file = SafeTensors()
    for slot in model.layout.slots {
      file.append(tensor(slot.name, slot, model.parameters))
    }
    let optimizer = trainer.optimizer
    for slot in model.layout.slots {
      for (state, buffer) in zip(optimizer.kind.stateNames, optimizer.stateBuffers) {
        file.append(
          tensor(optimizer.kind.tensorName(state: state, tensor: slot.name), slot, buffer))
      }
    }
    if let target = model.target {
      for slot in model.targetLayout.slots { file.append(tensor(slot.name, slot, target)) }
    }
    if let statistics = model.runningStatistics {
      for slot in model.statisticsLayout.slots { file.append(tensor(slot.name, slot, statistics)) }
    }
    file.append(
      SafeTensors.Tensor(
        name: "balancer.task_weights", shape: [trainer.balancer.taskWeights.count],
        doubles: trainer.balancer.taskWeights))
    let initialLosses = trainer.balancer.initialLosses ?? []
    file.append(
      SafeTensors.Tensor(
        name: "balancer.initial_losses", shape: [initialLosses.count], doubles: initialLosses))
    file.append(counter("step", trainer.step))
    file.append(counter(optimizer.kind.stepCounterName, optimizer.stepCount))
    file.append(counter("consecutive_skips", trainer.consecutiveSkips))

    var resolved = trainer.configuration
    resolved.outputDirectory = trainer.runDirectory
    resolved.steps = trainer.totalSteps
    let encoder = JSONEncoder()
    encoder.outputFormatting = .sortedKeys
    file.metadata = [
      "format_version": optimizer.kind == .lars ? larsFormatVersion : formatVersion,
      "step": String(trainer.step),
      "epoch": String(trainer.step / trainer.stepsPerEpoch),
      "tasks": trainer.configuration.tasks.map(\.rawValue).joined(separator: ","),
      "balancer": trainer.configuration.balancer,
      "encoder": trainer.configuration.encoderDescription,
      "world_size": String(trainer.communicator.size),
      "configuration": String(decoding: try encoder.encode(resolved), as: UTF8.self),
      "model": String(decoding: try encoder.encode(model.configuration), as: UTF8.self),
      "data_crc32": CheckpointContents.crc32Text(CheckpointContents.dataCRC32(of: file)),
    ]
    let directory = deletingLastPathComponent(path)
    try checkFinite(
      file, step: trainer.step, path: path, advice: trainer.configuration.divergenceAdvice)
    do {
      try AtomicFile.write(file.serialized(), to: path)
    } catch let error as AtomicFileError {
      let fix: String
      switch error.code {
      case ENOSPC, EDQUOT: fix = "free disk space, lower --keep or pass another --out"
      case EISDIR: fix = "remove the folder at that path or pass another --out"
      default: fix = "make \(directory) writable or pass another --out"
      }
      throw TrainingError(
        "step \(trainer.step): cannot write checkpoint '\(path)': \(error.call) failed: "
          + "\(String(cString: strerror(error.code))) (errno \(error.code)); the checkpoints "
          + "before it in \(directory) are unchanged; \(fix)")
    }
    removeOld(in: directory, keep: trainer.configuration.keep, newest: trainer.step)
  }

  /// Restores the state of `trainer` from the checkpoint `bytes` read from `path`, and
  /// returns the configuration that the checkpoint stores.
  ///
  /// Every check runs before any state changes, so a rejected file leaves `trainer` as it was.
  ///
  /// - Throws: ``UsageError`` when the checkpoint belongs to another model, task list,
  ///   balancer, optimizer, batch size or seed; ``CheckpointError`` or `SafeTensorsError` when
  ///   it is damaged or incomplete.
  @discardableResult
  static func restore(_ trainer: Trainer, from bytes: [UInt8], path: String) throws
    -> TrainingConfiguration
  {
    let file = try parse(bytes, path: path)
    try CheckpointContents.checkVersionAndChecksum(file, path: path)
    try checkLoadedFinite(file, path: path)
    try checkCompatible(file, trainer.configuration, path: path)
    try checkShapes(file, model: trainer.model, path: path)
    let kind = trainer.balancer.kind
    let optimizer = trainer.optimizer
    let contents = try CheckpointContents(
      validating: file, model: trainer.model, balancer: kind, optimizer: optimizer.kind,
      path: path)

    let stored = try CheckpointContents.storedConfiguration(file, path: path)

    // Everything is validated: from here on nothing can fail.
    let model = trainer.model
    for slot in model.layout.slots {
      contents.load(slot.name, into: elements(slot, model.parameters))
      for (state, buffer) in zip(optimizer.kind.stateNames, optimizer.stateBuffers) {
        contents.load(
          optimizer.kind.tensorName(state: state, tensor: slot.name),
          into: elements(slot, buffer))
      }
    }
    if let target = model.target {
      for slot in model.targetLayout.slots {
        contents.load(slot.name, into: elements(slot, target))
      }
    }
    if let statistics = model.runningStatistics {
      for slot in model.statisticsLayout.slots {
        contents.load(slot.name, into: elements(slot, statistics))
      }
    }
    trainer.balancer.taskWeights = contents.taskWeights
    trainer.balancer.initialLosses = contents.initialLosses
    trainer.step = contents.step
    optimizer.stepCount = contents.optimizerStep
    trainer.consecutiveSkips = contents.consecutiveSkips
    return stored
  }

  /// Parses `bytes` as a safetensors file, naming `path` in the error.
  static func parse(_ bytes: [UInt8], path: String) throws -> SafeTensors {
    do {
      var file = try SafeTensors(bytes: bytes)
      file.sourcePath = path
      return file
    } catch var error as SafeTensorsError {
      error.path = path
      throw error
    }
  }

  /// Reads the checkpoint at `path` on rank 0 and sends its bytes to every rank.
  ///
  /// Every rank must call it. Reading on one rank only means that the other nodes of a
  /// cluster need no copy of the file, and every rank validates the same bytes.
  ///
  /// - Throws: ``CheckpointError`` on every rank when rank 0 cannot read the file.
  static func readOnRoot(_ path: String, communicator: Communicator) throws -> [UInt8] {
    var bytes: [UInt8] = []
    var failure = ""
    if communicator.isRoot {
      var isDirectory: ObjCBool = false
      if !FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) {
        failure = "\(path): checkpoint not found; pass the path of a step-NNNNNNN.safetensors file"
      } else if isDirectory.boolValue {
        failure = "\(path) is a folder; pass the path of a step-NNNNNNN.safetensors file"
      } else if let data = FileManager.default.contents(atPath: path), !data.isEmpty {
        bytes = Array(data)
      } else {
        failure = "\(path): the checkpoint is empty or unreadable; pass another checkpoint"
      }
    }
    try communicator.broadcast(&bytes, root: 0)
    guard !bytes.isEmpty else {
      throw CheckpointError(communicator.isRoot ? failure : "rank 0 could not read \(path)")
    }
    return bytes
  }

  /// Checks that the checkpoint was written for the same tasks, encoder widths, adapters,
  /// balancer, optimizer, global batch size, seed, and augpred and invariant kinds.
  ///
  /// The rank count may differ.
  ///
  /// - Throws: ``UsageError`` naming the first setting that differs, with both values.
  static func checkCompatible(
    _ file: SafeTensors, _ configuration: TrainingConfiguration, path: String
  ) throws {
    let saved = try CheckpointContents.storedConfiguration(file, path: path)
    // The encoder comes first, and only its own widths count: a conv run ignores --hidden.
    let widths =
      saved.encoder == .conv
      ? ("--conv-channels", saved.convChannels, configuration.convChannels)
      : ("--hidden", saved.hiddenSizes, configuration.hiddenSizes)
    var pairs: [(String, String, String)] = [
      (
        "--tasks", saved.tasks.map(\.rawValue).joined(separator: ","),
        configuration.tasks.map(\.rawValue).joined(separator: ",")
      ),
      ("--encoder", saved.encoder.rawValue, configuration.encoder.rawValue),
      (
        widths.0, widths.1.map(String.init).joined(separator: ","),
        widths.2.map(String.init).joined(separator: ",")
      ),
    ]
    if saved.encoder == .conv {
      pairs.append(
        ("--conv-hidden", saved.convHiddenDescription, configuration.convHiddenDescription))
    }
    pairs.append(("--adapters", saved.adapters.rawValue, configuration.adapters.rawValue))
    // The model records the rank it was built with, also when it was the default.
    let savedRank = try CheckpointContents.storedModel(file, path: path).adapterRank
    if let savedRank, let current = configuration.modelAdapterRank {
      pairs.append(("--adapter-rank", String(savedRank), String(current)))
    }
    pairs += [
      ("--balancer", saved.balancer, configuration.balancer),
      ("--optimizer", saved.optimizer.rawValue, configuration.optimizer.rawValue),
      ("--batch-size", String(saved.batchSize), String(configuration.batchSize)),
      ("--seed", String(saved.seed), String(configuration.seed)),
      // The default --sensitive list depends on --invariant, so --invariant comes first.
      (
        "--invariant", saved.invariantKinds.map(\.rawValue).joined(separator: ","),
        configuration.invariantKinds.map(\.rawValue).joined(separator: ",")
      ),
      (
        "--sensitive", saved.augpredKinds.map(\.rawValue).joined(separator: ","),
        configuration.augpredKinds.map(\.rawValue).joined(separator: ",")
      ),
    ]
    for (flag, old, new) in pairs where old != new {
      throw UsageError(
        "\(path) was written with \(flag) \(old), this run has \(flag) \(new): "
          + "pass \(flag) \(old) or start a new run without --resume")
    }
  }

  /// Checks that every tensor of the run's model that the checkpoint contains has the same
  /// shape there, as it differs when the data has another image size or class count.
  ///
  /// - Throws: ``UsageError`` naming the first tensor that differs, with both shapes.
  static func checkShapes(_ file: SafeTensors, model: MultiTaskModel, path: String) throws {
    for slot in model.layout.slots + model.targetLayout.slots + model.statisticsLayout.slots {
      guard let tensor = file.tensor(named: slot.name), tensor.shape != slot.shape else {
        continue
      }
      throw UsageError(
        "\(path): tensor \(slot.name) has shape \(tensor.shape) in the checkpoint but "
          + "\(slot.shape) in this run's model: pass the --data the checkpoint was trained on "
          + "or start a new run without --resume")
    }
  }

  /// Returns the newest checkpoint in `directory`, or nil if there is none.
  static func newest(in directory: String) -> String? {
    files(in: directory).last.map { directory + "/" + $0.name }
  }

  /// Returns the checkpoint files of `directory` with their steps, oldest first: regular
  /// files named `step-NNNNNNN.safetensors`, and not folders that happen to have such a name.
  static func files(in directory: String) -> [(name: String, step: Int)] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
    return names.compactMap { name -> (name: String, step: Int)? in
      var isDirectory: ObjCBool = false
      guard let step = step(ofName: name),
        FileManager.default.fileExists(atPath: directory + "/" + name, isDirectory: &isDirectory),
        !isDirectory.boolValue
      else { return nil }
      return (name, step)
    }.sorted { $0.step < $1.step }
  }

  /// Returns the step of a checkpoint file name `step-NNNNNNN.safetensors`, or nil.
  static func step(ofName name: String) -> Int? {
    guard name.hasPrefix("step-"), name.hasSuffix(".safetensors") else { return nil }
    return Int(name.dropFirst("step-".count).dropLast(".safetensors".count))
  }

  /// Removes all but the newest `keep` checkpoints of `directory` up to step `newest`.
  ///
  /// Checkpoints of later steps, left by a run that this one resumed from an earlier
  /// checkpoint, stay in place: they are not older than the one just written.
  static func removeOld(in directory: String, keep: Int, newest: Int) {
    guard keep > 0 else { return }
    let older = files(in: directory).filter { $0.step <= newest }
    for (name, _) in older.dropLast(keep) {
      try? FileManager.default.removeItem(atPath: directory + "/" + name)
    }
  }

  /// Deletes the temporary files of checkpoint writes that a killed run left in `directory`.
  ///
  /// Call it before this run writes any checkpoint.
  ///
  /// - Returns: the names of the deleted files.
  ///
  /// - Throws: ``TrainingError`` when the folder cannot be listed or a file not deleted.
  static func removeInterruptedWrites(in directory: String) throws -> [String] {
    do {
      return try AtomicFile.removeStrayTemporaryFiles(in: directory)
    } catch let error as AtomicFileError {
      throw TrainingError(
        "cannot remove the temporary files of interrupted checkpoint writes: \(error)")
    }
  }

  /// Returns the run folder that contains the checkpoint `path`: the parent of its
  /// `checkpoints` folder, or else the folder of the file.
  static func runDirectory(containing path: String) -> String {
    let folder = deletingLastPathComponent(path)
    let directory =
      folder.split(separator: "/").last == "checkpoints"
      ? deletingLastPathComponent(folder) : folder
    return directory.isEmpty ? "." : directory
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

  private static func counter(_ name: String, _ value: Int) -> SafeTensors.Tensor {
    SafeTensors.Tensor(name: name, shape: [1], int64s: [Int64(value)])
  }
}

/// A checkpoint that is damaged, incomplete or from another format version.
public struct CheckpointError: Error, CustomStringConvertible {
  /// The message, one line, naming the file.
  public let description: String

  /// Creates an error with a one-line message.
  public init(_ description: String) {
    self.description = description
  }
}
