import ConcordModel
import ConcordTensors
import Foundation

/// The checks that keep a run's state sound: the loss bound, the agreement of the ranks'
/// state, and the testing aid that breaks that agreement on purpose.
extension Trainer {
  /// Stops the run when a task's reduced loss exceeds `--loss-bound` times its first-step loss
  /// `L_t(0)`, floored at 1.
  ///
  /// The bound is relative because the tasks' losses differ by orders of magnitude: BYOL's
  /// 2 - 2 cos is at most 4, and NT-Xent starts near log(2N - 1). It is floored at 1 so that a
  /// task that starts near zero loss does not stop at noise. The default of 10^4 stays far
  /// above what healthy runs reach, where the losses fall from L_t(0). Every rank reads the
  /// same reduced losses, so every rank stops at the same step.
  ///
  /// - Throws: ``TrainingError``, collective, naming the step, the task and the values.
  func checkLossBound(_ losses: [Double]) throws {
    let initial = balancer.initialLosses ?? losses
    for t in losses.indices {
      let limit = configuration.lossBound * max(initial[t], 1)
      guard losses[t] > limit else { continue }
      let task = configuration.tasks[t].rawValue
      throw TrainingError(
        "step \(step): the \(task) loss \(String(format: "%.6g", losses[t])) exceeds --loss-bound "
          + "\(String(format: "%g", configuration.lossBound)) times max(its first-step loss "
          + "\(String(format: "%.6g", initial[t])), 1); the step was not applied: "
          + "\(configuration.divergenceAdvice) or raise --loss-bound, then resume from the newest checkpoint in "
          + "\(runDirectory)/checkpoints, if there is one",
        isCollective: true)
    }
  }

  /// Compares the ranks' state when `--verify-every` or a checkpoint is due at this step.
  func verifyRanksAgreeIfDue(isCheckpointStep: Bool) throws {
    let every = configuration.verifyEvery
    if isCheckpointStep || (every > 0 && step % every == 0) {
      try verifyRanksAgree(printing: false)
    }
  }

  /// Checks that every rank has the same state, by comparing one checksum per rank.
  ///
  /// Every rank must call it. The checksum covers the parameters, the optimizer's state, the BYOL
  /// target, the task weights and the step. Only when the checksums differ do the ranks
  /// compare one checksum per tensor, in checkpoint order, to name the first tensor that
  /// differs.
  ///
  /// - Parameter printing: whether rank 0 prints the checksum when the ranks agree.
  /// - Throws: ``TrainingError`` on every rank, naming the ranks that differ from rank 0 and
  ///   the first differing tensor.
  func verifyRanksAgree(printing: Bool = true) throws {
    var checksum = StateChecksum()
    checksum.add(model.parameters)
    for buffer in optimizer.stateBuffers { checksum.add(buffer) }
    if let target = model.target { checksum.add(target) }
    if let statistics = model.runningStatistics { checksum.add(statistics) }
    checksum.add(balancer.taskWeights)
    checksum.add(step)
    let all = try communicator.allgather(Int64(bitPattern: checksum.value))
    let differing = all.indices.filter { all[$0] != all[0] }
    guard differing.isEmpty else {
      let tensor = try firstDifferingTensor() ?? "the step counter"
      throw TrainingError(
        "after step \(step) the state of rank(s) "
          + "\(differing.map(String.init).joined(separator: ", ")) differs from rank 0, first in "
          + "tensor \(tensor): report this with the command line; ranks must run the same "
          + "binary on the same kind of CPU; resume from the newest checkpoint in "
          + "\(runDirectory)/checkpoints, if there is one", isCollective: true)
    }
    guard printing else { return }
    log.print(
      communicator.size == 1
        ? "concord: state checksum \(String(format: "%016llx", checksum.value)) (1 rank)"
        : "concord: state checksum \(String(format: "%016llx", checksum.value)) identical on all "
          + "\(communicator.size) ranks")
  }

  /// Returns the name of the first state tensor whose checksum differs between ranks, in
  /// checkpoint order, or nil when they all agree.
  ///
  /// Every rank must call it: it makes one allgather per tensor until one differs.
  private func firstDifferingTensor() throws -> String? {
    for (name, bytes) in stateTensors() {
      var checksum = StateChecksum()
      checksum.add(bytes)
      let all = try communicator.allgather(Int64(bitPattern: checksum.value))
      if all.contains(where: { $0 != all[0] }) { return name }
    }
    var taskWeights = StateChecksum()
    taskWeights.add(balancer.taskWeights)
    let all = try communicator.allgather(Int64(bitPattern: taskWeights.value))
    return all.contains(where: { $0 != all[0] }) ? "balancer.task_weights" : nil
  }

  /// Returns the float tensors of the state under their checkpoint names, in checkpoint order.
  private func stateTensors() -> [(String, UnsafeRawBufferPointer)] {
    func bytes(_ slot: TensorSlot, _ buffer: FloatBuffer) -> UnsafeRawBufferPointer {
      UnsafeRawBufferPointer(start: buffer.baseAddress + slot.offset, count: slot.count * 4)
    }
    var tensors: [(String, UnsafeRawBufferPointer)] = []
    for slot in model.layout.slots {
      tensors.append((slot.name, bytes(slot, model.parameters)))
    }
    let kind = optimizer.kind
    for slot in model.layout.slots {
      for (state, buffer) in zip(kind.stateNames, optimizer.stateBuffers) {
        tensors.append((kind.tensorName(state: state, tensor: slot.name), bytes(slot, buffer)))
      }
    }
    if let target = model.target {
      for slot in model.targetLayout.slots { tensors.append((slot.name, bytes(slot, target))) }
    }
    if let statistics = model.runningStatistics {
      for slot in model.statisticsLayout.slots {
        tensors.append((slot.name, bytes(slot, statistics)))
      }
    }
    return tensors
  }

  /// Applies the fault that the `CONCORD_FAULT_RANK` testing aid requests for this step.
  func injectFaultIfRequested() {
    guard let fault = faultInjection, fault.step == step, fault.rank == communicator.rank
    else { return }
    // One bit of one parameter: the smallest drift that a rank can suffer.
    model.parameters.baseAddress[0] = model.parameters.baseAddress[0].nextUp
    warn(
      rank: communicator.rank,
      "CONCORD_FAULT_RANK: changed the first element of \(model.layout.slots[0].name) after "
        + "step \(step) on this rank, as a test of --verify-every")
  }
}

/// A testing aid that makes one rank's state drift from the others, so that tests can check
/// that the ranks' state comparison notices.
///
/// `CONCORD_FAULT_RANK=R` makes rank R add one unit in the last place to the first element
/// of the first parameter tensor, right after step `CONCORD_FAULT_STEP` (default 1). Runs
/// without `CONCORD_FAULT_RANK` are not affected.
struct FaultInjection {
  /// The rank that drifts.
  let rank: Int
  /// The step after which it drifts.
  let step: Int

  /// Reads the testing aid from the environment, or returns nil when it is not set.
  ///
  /// - Throws: ``UsageError`` when a variable is set but not a whole number >= 0 (step >= 1).
  static func fromEnvironment() throws -> FaultInjection? {
    let environment = ProcessInfo.processInfo.environment
    guard let rankText = environment["CONCORD_FAULT_RANK"] else { return nil }
    guard let rank = Int(rankText), rank >= 0 else {
      throw UsageError("invalid CONCORD_FAULT_RANK \(rankText): pass a rank number >= 0")
    }
    let stepText = environment["CONCORD_FAULT_STEP"] ?? "1"
    guard let step = Int(stepText), step >= 1 else {
      throw UsageError("invalid CONCORD_FAULT_STEP \(stepText): pass a step number >= 1")
    }
    return FaultInjection(rank: rank, step: step)
  }
}
