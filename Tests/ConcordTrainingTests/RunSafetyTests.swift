import ConcordData
import ConcordDistributed
import ConcordTensors
import Foundation
import Testing

@testable import ConcordTraining

/// Flags of a small run on the synthetic dataset of `data`, writing to `out`.
private func tinyRun(data: String, out: String, _ extra: [String] = []) -> [String] {
  ["train", "--data", data, "--out", out, "--batch-size", "16", "--hidden", "16,8"] + extra
}

/// Returns the steps of the checkpoints in the run folder `out`.
private func checkpointSteps(_ out: String) -> [Int] {
  Checkpoint.files(in: out + "/checkpoints").map(\.step)
}

/// Runs 8 steps of `concord train` on 2 ranks, with rank 1 drifting after step 3 through the
/// `CONCORD_FAULT_RANK` testing aid.
private func runWithDriftAfterStep3(_ arguments: [String]) throws -> ProcessResult {
  try run(
    "/usr/bin/env",
    ["CONCORD_FAULT_RANK=1", "CONCORD_FAULT_STEP=3", "/usr/bin/mpirun", "--allow-run-as-root"]
      + ["-np", "2", concordBinary()] + arguments + ["--steps", "8"],
    timeout: 120)
}

@Suite(.serialized)
struct RunSafetyTests {
  /// A second run into a run folder locked by a first run exits 2 naming the folder, while
  /// the first run goes on.
  @Test func secondRunIntoLockedFolderExits() throws {
    let data = try makeDataset(testSide: 28)
    let out = try makeTemporaryDirectory() + "/run"
    #expect(try run(concordBinary(), tinyRun(data: data, out: out, ["--steps", "2"])).status == 0)

    // The first run resumes with more steps than it can finish, holding the lock until the
    // test stops it.
    let first = try startLongRun(tinyRun(data: data, out: out, ["--resume", "latest"]))

    let second = try mpirun(
      ranks: 2, tinyRun(data: data, out: out, ["--steps", "2000", "--resume", "latest"]),
      timeout: 60)
    #expect(stopLongRun(first), "the first run ended before the second started")
    #expect(second.status == 2, "\(second.standardError)")
    let lines = concordLines(second.standardError)
    #expect(lines.count == 1, "\(second.standardError)")
    #expect(lines.first?.contains("--out \(out) is in use") == true, "\(second.standardError)")
    #expect(checkpointSteps(out) == [2], "the second run wrote a checkpoint")
  }

  /// Before the first run writes its first checkpoint, the error for a second run into its
  /// folder reports that the folder is in use, not that it contains an ended run to remove.
  @Test func secondRunBeforeFirstCheckpointExits() throws {
    let data = try makeDataset(testSide: 28)
    let out = try makeTemporaryDirectory() + "/run"
    let first = try startLongRun(tinyRun(data: data, out: out, []))
    let fresh = try mpirun(ranks: 2, tinyRun(data: data, out: out, ["--steps", "2"]), timeout: 60)
    let resumed = try mpirun(
      ranks: 2, tinyRun(data: data, out: out, ["--steps", "2", "--resume", "latest"]),
      timeout: 60)
    #expect(stopLongRun(first), "the first run ended before the others started")
    for second in [fresh, resumed] {
      #expect(second.status == 2, "\(second.standardError)")
      let lines = concordLines(second.standardError)
      #expect(lines.count == 1, "\(second.standardError)")
      #expect(lines.first?.contains("--out \(out) is in use") == true, "\(second.standardError)")
    }
    #expect(checkpointSteps(out).isEmpty, "a run wrote a checkpoint")
  }

  /// One flipped bit on rank 1 after step 3 is found at the next comparison, named by tensor,
  /// and no checkpoint after the fault is written.
  @Test func drift() throws {
    let data = try makeDataset(testSide: 28)
    let out = try makeTemporaryDirectory() + "/run"
    let result = try runWithDriftAfterStep3(
      tinyRun(data: data, out: out, ["--checkpoint-every", "2", "--verify-every", "1"]))
    #expect(result.status == 1, "\(result.standardError)")
    let errors = concordLines(result.standardError).filter { $0.contains("error:") }
    #expect(errors.count == 1, "\(result.standardError)")
    let line = errors.first.map(String.init) ?? ""
    #expect(line.contains("after step 3"), "\(line)")
    #expect(line.contains("rank(s) 1 differs"), "\(line)")
    #expect(line.contains("first in tensor encoder.0.weight"), "\(line)")
    #expect(checkpointSteps(out) == [2])
  }

  /// Without --verify-every the comparison before each checkpoint finds the drift.
  @Test func driftFoundAtCheckpoint() throws {
    let data = try makeDataset(testSide: 28)
    let out = try makeTemporaryDirectory() + "/run"
    let result = try runWithDriftAfterStep3(
      tinyRun(data: data, out: out, ["--checkpoint-every", "4"]))
    #expect(result.status == 1, "\(result.standardError)")
    let errors = concordLines(result.standardError).filter { $0.contains("error:") }
    #expect(errors.count == 1, "\(result.standardError)")
    #expect(errors.first?.contains("after step 4") == true, "\(result.standardError)")
    #expect(errors.first?.contains("encoder.0.weight") == true, "\(result.standardError)")
    #expect(checkpointSteps(out).isEmpty)
  }

  /// A loss past --loss-bound stops every rank with exit 1, naming the step and the task,
  /// before that step's update.
  @Test func lossBoundStopsRun() throws {
    let data = try makeDataset(testSide: 28)
    let out = try makeTemporaryDirectory() + "/run"
    let result = try mpirun(
      ranks: 2,
      tinyRun(
        data: data, out: out,
        ["--steps", "30", "--lr", "1", "--loss-bound", "2", "--tasks", "supervised,augpred"]),
      timeout: 120)
    #expect(result.status == 1, "\(result.standardError)")
    let lines = concordLines(result.standardError)
    #expect(lines.count == 1, "\(result.standardError)")
    let line = lines.first.map(String.init) ?? ""
    #expect(line.contains("the supervised loss"), "\(line)")
    #expect(line.contains("exceeds --loss-bound 2"), "\(line)")
    #expect(line.contains("step "), "\(line)")
    #expect(!FileManager.default.fileExists(atPath: out + "/eval.json"))
  }

  /// Flags on the command line win over the --config file, which sets the rest.
  @Test func commandLineWinsOverConfig() throws {
    let data = try makeDataset(testSide: 28)
    let root = try makeTemporaryDirectory()
    let config = root + "/run.json"
    try """
    {"steps": 5, "batch-size": 32, "tasks": ["supervised", "augpred"], "hidden": [16, 8],
     "lr": 0.002, "checkpoint-every": 1000}
    """.write(toFile: config, atomically: true, encoding: .utf8)
    let result = try mpirun(
      ranks: 2,
      ["train", "--data", data, "--out", root + "/run", "--config", config, "--steps", "3"],
      timeout: 120)
    #expect(result.status == 0, "\(result.standardError)")
    #expect(result.standardOutput.contains("global batch 32"), "\(result.standardOutput)")
    #expect(result.standardOutput.contains("tasks supervised,augpred"), "\(result.standardOutput)")
    #expect(checkpointSteps(root + "/run") == [3])
    let file = try SafeTensors.read(path: root + "/run/checkpoints/step-0000003.safetensors")
    let stored = try JSONDecoder().decode(
      TrainingConfiguration.self, from: Data((file.metadata["configuration"] ?? "").utf8))
    #expect(stored.learningRate == 0.002)
    #expect(stored.hiddenSizes == [16, 8])
  }

  /// The checkpoint writer rejects a state with NaN or infinity in any tensor, with a
  /// collective error naming the tensor, and writes nothing.
  @Test func checkpointWriterRejectsNonFinite() throws {
    let out = try makeTemporaryDirectory() + "/run"
    var configuration = TrainingConfiguration()
    configuration.outputDirectory = out
    configuration.tasks = [.supervised, .byol]
    configuration.batchSize = 8
    configuration.hiddenSizes = [8]
    configuration.steps = 2
    configuration.knnNeighbours = 4
    func dataset(_ count: Int) -> Dataset {
      let images = FloatBuffer(count: count * 16)
      for i in 0..<images.count { images.baseAddress[i] = Float(i % 7) / 7 }
      return Dataset(
        images: images, labels: (0..<count).map { Int32($0 % 10) }, height: 4, width: 4,
        classCount: 10)
    }
    let communicator = SingleProcessCommunicator()
    let trainer = try Trainer(
      configuration: configuration, communicator: communicator, trainSet: dataset(16),
      testSet: dataset(8))
    try trainer.saveCheckpoint()
    #expect(checkpointSteps(out) == [0])

    let target = try #require(trainer.model.target)
    target.baseAddress[3] = .infinity
    trainer.step = 1
    do {
      try trainer.saveCheckpoint()
      Issue.record("a checkpoint with infinity was written")
    } catch let failure as CollectiveFailure {
      #expect("\(failure)".contains("tensor target.encoder.0.weight"), "\(failure)")
      #expect("\(failure)".contains("NaN or infinity"), "\(failure)")
    }
    #expect(checkpointSteps(out) == [0])
  }
}

/// Starts `concord train` alone with `arguments` and more steps than it can finish, so that it
/// holds its run folder's lock until the caller kills it, and returns once it has started.
private func startLongRun(_ arguments: [String]) throws -> Process {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: concordBinary())
  process.arguments =
    arguments + [
      "--steps", "1000000", "--log-every", "1000000", "--checkpoint-every", "1000000",
    ]
  let outputPath = try makeTemporaryDirectory() + "/stdout"
  _ = FileManager.default.createFile(atPath: outputPath, contents: nil)
  process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: outputPath))
  process.standardError = FileHandle.nullDevice
  try process.run()
  let deadline = Date().addingTimeInterval(60)
  while Date() < deadline,
    !((try? String(contentsOfFile: outputPath, encoding: .utf8)) ?? "").contains("writing to")
  {
    usleep(50_000)
  }
  return process
}

/// Kills a run started by ``startLongRun(_:)``, waits for it, and returns whether it was
/// still running.
private func stopLongRun(_ process: Process) -> Bool {
  let wasRunning = process.isRunning
  // SIGKILL, because a singleton Open MPI process does not end on SIGTERM.
  kill(process.processIdentifier, SIGKILL)
  process.waitUntilExit()
  return wasRunning
}
