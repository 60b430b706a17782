import ConcordTensors
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// SplitMix64, a small seeded generator for the moments of the kills, so that a failure
/// repeats with the same moments.
private struct SplitMix64: RandomNumberGenerator {
  var state: UInt64

  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// Returns the ids of the processes whose parent is `parent`.
private func children(of parent: Int32) -> [Int32] {
  let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
  return entries.compactMap { name -> Int32? in
    guard let pid = Int32(name),
      let stat = try? String(contentsOfFile: "/proc/\(name)/stat", encoding: .utf8),
      let close = stat.lastIndex(of: ")")
    else { return nil }
    // The fields after the command name in parentheses: state, then the parent's id.
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    return fields.count > 1 && Int32(fields[1]) == parent ? pid : nil
  }
}

/// Waits until a checkpoint write is under way and stops `ranks` (SIGSTOP) in it.
///
/// The kill that follows then interrupts the write. Gives up after 60 seconds.
private func stopDuringWrite(_ ranks: [Int32], directory: String) {
  let deadline = Date().addingTimeInterval(60)
  while Date() < deadline {
    while temporaryFiles(in: directory).isEmpty && Date() < deadline { usleep(500) }
    for pid in ranks { Glibc.kill(pid, SIGSTOP) }
    if !temporaryFiles(in: directory).isEmpty { return }
    // The write finished before the ranks stopped: let them go on to the next one.
    for pid in ranks { Glibc.kill(pid, SIGCONT) }
  }
}

/// Returns the name of the newest checkpoint in `directory`, or nil.
private func newestCheckpoint(in directory: String) -> String? {
  let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
  return names.filter { $0.hasPrefix("step-") && $0.hasSuffix(".safetensors") }.sorted().last
}

@Suite(.serialized, .enabled(if: hasFashionMNIST, "Fashion-MNIST is not installed"))
struct CheckpointCrashTests {
  /// A run that writes a checkpoint every step is killed with SIGKILL at random moments.
  ///
  /// Every second kill lands in the middle of a checkpoint write. After each kill the newest
  /// checkpoint passes `concord inspect` and loads, and `--resume latest` carries on. The
  /// last resume ends bit-identical to a run that was never killed.
  @Test func killedRunsLeaveLoadableCheckpoints() throws {
    // Enough steps that no run reaches the end between its kills: a resumed run of 55 steps
    // once finished within the second before a planned kill.
    let steps = 400
    let flags = ["--checkpoint-every", "1", "--keep", "2", "--log-every", "100"]
    let whole = try makeTemporaryDirectory()
    let reference = try mpirun(ranks: 2, quickRun(out: whole, steps: steps, extra: flags))
    #expect(reference.status == 0, "\(reference.standardError)")

    let out = try makeTemporaryDirectory()
    var generator = SplitMix64(state: 20_240_601)
    for kill in 0..<4 {
      let directory = out + "/checkpoints"
      let before = newestCheckpoint(in: directory)
      let resume = before == nil ? [] : ["--resume", "latest"]
      let process = Process()
      process.executableURL = URL(fileURLWithPath: "/usr/bin/mpirun")
      process.arguments =
        ["--allow-run-as-root", "-np", "2", concordBinary()]
        + quickRun(out: out, steps: steps, extra: flags + resume)
      process.standardOutput = FileHandle.nullDevice
      process.standardError = FileHandle.nullDevice
      try process.run()

      // Wait for the run to write a checkpoint of its own, so that the kill falls in
      // training, whatever the start-up time on a loaded machine.
      let started = Date().addingTimeInterval(120)
      while newestCheckpoint(in: directory) == before && process.isRunning && Date() < started {
        usleep(10_000)
      }
      #expect(process.isRunning, "kill \(kill): the run ended before the kill")
      let ranks = children(of: process.processIdentifier)
      let delay = Double.random(in: 0...1.0, using: &generator)
      usleep(UInt32(delay * 1_000_000))
      let isDuringWrite = kill % 2 == 1
      if isDuringWrite { stopDuringWrite(ranks, directory: directory) }
      // The ranks first, then mpirun, each by its id: nothing gets to clean up.
      for pid in ranks { Glibc.kill(pid, SIGKILL) }
      Glibc.kill(process.processIdentifier, SIGKILL)
      process.waitUntilExit()
      let deadline = Date().addingTimeInterval(30)
      while ranks.contains(where: { Glibc.kill($0, 0) == 0 }) && Date() < deadline {
        usleep(20_000)
      }

      let strays = temporaryFiles(in: directory)
      if isDuringWrite {
        #expect(!strays.isEmpty, "kill \(kill) was meant to interrupt a checkpoint write")
      }
      let newest = try #require(
        newestCheckpoint(in: directory), "kill \(kill) after \(delay) s left no checkpoint")
      let inspected = try run(concordBinary(), ["inspect", directory + "/" + newest])
      #expect(inspected.status == 0, "kill \(kill): \(inspected.standardError)")
      #expect(inspected.standardOutput.contains("complete Concord checkpoint"))
      #expect(throws: Never.self) { try SafeTensors.read(path: directory + "/" + newest) }
      print(
        "kill \(kill), \(String(format: "%.2f", delay)) s after a new checkpoint"
          + "\(isDuringWrite ? ", then during a write" : ""): newest \(newest), "
          + "temporary files \(strays)")
    }

    let finished = try mpirun(
      ranks: 2, quickRun(out: out, steps: steps, extra: flags + ["--resume", "latest"]))
    #expect(finished.status == 0, "\(finished.standardError)")
    #expect(temporaryFiles(in: out + "/checkpoints").isEmpty)
    let a = try SafeTensors.read(path: checkpointPath(whole, step: steps))
    let b = try SafeTensors.read(path: checkpointPath(out, step: steps))
    #expect(a.tensors == b.tensors, "the resumed run differs from the uninterrupted one")
  }
}
