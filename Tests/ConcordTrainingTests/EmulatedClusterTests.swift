import ConcordTensors
import Foundation
import Testing

#if canImport(Glibc)
  import Glibc
#endif

/// The repository's root folder, which contains launch/.
private let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  .deletingLastPathComponent().deletingLastPathComponent().path

/// Whether this process runs as root, which network namespaces need.
private var isRoot: Bool { getuid() == 0 }

/// Whether iproute2's `ip` is installed.
private var hasIPCommand: Bool {
  ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"].contains {
    FileManager.default.isExecutableFile(atPath: $0)
  }
}

/// Whether `ip netns add` works here.
///
/// Some containers and sandboxes forbid it even to root.
private let canMakeNamespaces: Bool = {
  guard getuid() == 0 else { return false }
  let probe = "concord-probe-\(getpid())"
  guard let added = try? run("/usr/bin/env", ["ip", "netns", "add", probe], timeout: 30),
    added.status == 0
  else { return false }
  _ = try? run("/usr/bin/env", ["ip", "netns", "del", probe], timeout: 30)
  return true
}()

/// A cluster of network namespaces made by launch/netns-cluster, under a name of its own so
/// that it never meets a cluster of another run.
private struct EmulatedCluster {
  let name: String
  let hostCount: Int
  let hostfile: String
  /// The `--mca KEY VALUE` words that `up` printed for mpirun.
  let mpirunOptions: [String]

  /// The emulated host names, NAME-h1 to NAME-hN.
  var hosts: [String] { (1...hostCount).map { "\(name)-h\($0)" } }

  /// Makes `hosts` emulated hosts with two slots each.
  static func up(hosts: Int) throws -> EmulatedCluster {
    let letters = Array("abcdefghijklmnopqrstuvwxyz0123456789")
    let name = "ct" + String((0..<6).map { _ in letters.randomElement()! })
    let result = try run(
      repositoryRoot + "/launch/netns-cluster", ["up", String(hosts), "--name", name],
      timeout: 120)
    guard result.status == 0 else {
      throw ClusterError("netns-cluster up \(hosts) failed: \(result.standardError)")
    }
    var hostfile = ""
    var options: [String] = []
    for line in result.standardOutput.split(separator: "\n") {
      if line.hasPrefix("hostfile: ") { hostfile = String(line.dropFirst("hostfile: ".count)) }
      if line.hasPrefix("mpirun options: ") {
        options = line.dropFirst("mpirun options: ".count).split(separator: " ").map(String.init)
      }
    }
    let cluster = EmulatedCluster(
      name: name, hostCount: hosts, hostfile: hostfile, mpirunOptions: options)
    guard !hostfile.isEmpty, !options.isEmpty else {
      cluster.down()
      throw ClusterError(
        "netns-cluster up printed no hostfile or options: \(result.standardOutput)")
    }
    return cluster
  }

  /// Removes the namespaces, links, /etc/hosts lines and state of this cluster.
  func down() {
    _ = try? run(repositoryRoot + "/launch/netns-cluster", ["down", "--name", name], timeout: 120)
  }

  /// Returns the arguments of env that run launch/cluster with `flags` on every slot.
  func clusterArguments(_ flags: [String]) -> [String] {
    // env passes the binary under test, so that launch/cluster does not build one.
    [
      "CONCORD_BINARY=\(concordBinary())", repositoryRoot + "/launch/cluster", "--hostfile",
      hostfile,
    ]
      + mpirunOptions + flags
  }

  /// Returns the bytes sent into the second host through its veth, as the kernel counts them.
  func bytesIntoSecondHost() throws -> Int {
    let path = "/sys/class/net/\(name)-v2/statistics/tx_bytes"
    let text = try String(contentsOfFile: path, encoding: .utf8)
    return Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
  }

  /// Lists the ids of the `concord` processes running in `host`'s namespace.
  func concordProcesses(on host: String) throws -> [Int32] {
    let result = try run("/usr/bin/env", ["ip", "netns", "pids", host], timeout: 30)
    return result.standardOutput.split(separator: "\n").compactMap { Int32($0) }.filter {
      let comm = try? String(contentsOfFile: "/proc/\($0)/comm", encoding: .utf8)
      return comm?.trimmingCharacters(in: .whitespacesAndNewlines) == "concord"
    }
  }
}

private struct ClusterError: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}

/// Runs `body` on a new cluster of `hosts` emulated hosts and removes the cluster afterwards,
/// also when `body` throws.
private func withEmulatedCluster(hosts: Int, _ body: (EmulatedCluster) throws -> Void) throws {
  let cluster = try EmulatedCluster.up(hosts: hosts)
  defer { cluster.down() }
  try body(cluster)
}

/// Returns the flags of a short run on a subset of Fashion-MNIST, four ranks of 16 images each.
private func clusterRun(out: String, steps: Int, extra: [String] = []) -> [String] {
  [
    "--out", out, "--steps", String(steps), "--train-limit", "1024", "--test-limit", "400",
    "--batch-size", "64", "--hidden", "128,64",
  ] + extra
}

/// Lists the ids of the processes whose command line mentions `text`, such as a run folder.
private func processes(mentioning text: String) -> [Int32] {
  let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
  return entries.compactMap(Int32.init).filter { pid in
    guard pid != getpid(),
      let data = FileManager.default.contents(atPath: "/proc/\(pid)/cmdline")
    else { return false }
    return String(decoding: data, as: UTF8.self).contains(text)
  }
}

@Suite(
  .serialized, .enabled(if: hasFashionMNIST, "Fashion-MNIST is not installed"),
  .enabled(if: isRoot, "network namespaces need root"),
  .enabled(if: hasIPCommand, "iproute2's ip is not installed: run launch/install-deps"),
  .enabled(
    if: canMakeNamespaces, "ip netns add failed: this kernel or sandbox cannot make namespaces"))
struct EmulatedClusterTests {
  /// The allreduce runs the same algorithm in the same order whether its bytes cross TCP
  /// between namespaces or shared memory on one host, so the parameters agree to the bit.
  @Test func twoHostsMatchOneHost() throws {
    let local = try makeTemporaryDirectory()
    let flags = clusterRun(out: local, steps: 10, extra: ["--blas-threads", "1"])
    let single = try mpirun(ranks: 4, ["train"] + flags)
    try #require(single.status == 0, "\(single.standardError)")

    try withEmulatedCluster(hosts: 2) { cluster in
      let remote = try makeTemporaryDirectory()
      let before = try cluster.bytesIntoSecondHost()
      let result = try run(
        "/usr/bin/env", cluster.clusterArguments(clusterRun(out: remote, steps: 10)))
      try #require(result.status == 0, "\(result.standardError)")
      #expect(result.standardOutput.contains("4 rank(s)"), "\(result.standardOutput)")
      #expect(result.standardError.contains("btl tcp"), "\(result.standardError)")
      // Ten allreduces of 2.4 MB each (600,980 floats) reach the second host over its veth.
      let sent = try cluster.bytesIntoSecondHost() - before
      #expect(sent > 1_000_000, "only \(sent) bytes crossed into \(cluster.name)-h2")

      let a = try SafeTensors.read(path: local + "/checkpoints/step-0000010.safetensors")
      let b = try SafeTensors.read(path: remote + "/checkpoints/step-0000010.safetensors")
      #expect(a.tensors.map(\.name) == b.tensors.map(\.name))
      for (x, y) in zip(a.tensors, b.tensors) {
        #expect(x.bytes == y.bytes, "\(x.name) differs between one host and two")
      }
    }
  }

  /// Killing one rank ends the job and every rank, and the run then resumes on the cluster.
  @Test func killedRankEndsJobAndRunResumes() throws {
    try withEmulatedCluster(hosts: 2) { cluster in
      let out = try makeTemporaryDirectory()
      let flags = clusterRun(
        out: out, steps: 60, extra: ["--log-every", "1", "--checkpoint-every", "2"])

      let logs = try makeTemporaryDirectory()
      let process = Process()
      process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
      process.arguments = cluster.clusterArguments(flags)
      _ = FileManager.default.createFile(atPath: logs + "/stderr", contents: nil)
      process.standardOutput = FileHandle.nullDevice
      process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: logs + "/stderr"))
      try process.run()
      defer {
        // SIGTERM reaches mpirun, which ends the job, before the namespaces are removed.
        if process.isRunning { process.terminate() }
        let deadline = Date().addingTimeInterval(30)
        while process.isRunning && Date() < deadline { usleep(50_000) }
      }

      // Wait for step 5 in the metrics, then kill a rank of the second host.
      func loggedSteps() -> Int {
        let text = (try? String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8)) ?? ""
        return text.split(separator: "\n").count
      }
      let start = Date()
      while loggedSteps() < 5 && process.isRunning && Date().timeIntervalSince(start) < 120 {
        usleep(20_000)
      }
      try #require(process.isRunning, "the run ended before step 5 could be reached and killed")
      try #require(loggedSteps() >= 5, "no step 5 within 120 s")
      let victim = try #require(try cluster.concordProcesses(on: cluster.hosts[1]).first)
      #expect(kill(victim, SIGKILL) == 0)

      let killed = Date()
      while process.isRunning && Date().timeIntervalSince(killed) < 30 { usleep(50_000) }
      let stderr = (try? String(contentsOfFile: logs + "/stderr", encoding: .utf8)) ?? ""
      try #require(!process.isRunning, "mpirun still runs 30 s after a rank was killed")
      #expect(process.terminationStatus != 0, "\(stderr)")
      #expect(loggedSteps() < 60, "the run finished although a rank was killed")

      // mpirun has ended, and its daemons ended their ranks just before.
      let ended = Date()
      while !processes(mentioning: out).isEmpty && Date().timeIntervalSince(ended) < 10 {
        usleep(100_000)
      }
      #expect(processes(mentioning: out).isEmpty, "a concord process of the run remains")
      for host in cluster.hosts {
        #expect(try cluster.concordProcesses(on: host).isEmpty, "concord still runs on \(host)")
      }

      let resumed = try run(
        "/usr/bin/env", cluster.clusterArguments(flags + ["--resume", "latest"]))
      #expect(resumed.status == 0, "\(resumed.standardError)")
      #expect(resumed.standardOutput.contains("resumed from"), "\(resumed.standardOutput)")
      let evaluation =
        try JSONSerialization.jsonObject(
          with: Data(contentsOf: URL(fileURLWithPath: out + "/eval.json"))) as? [String: Any]
      #expect(evaluation?["steps"] as? Int == 60)
    }
  }

  /// A bad flag reaches every rank alike: one message, exit code 2, no rank left waiting.
  @Test func badFlagExitsEveryRank() throws {
    try withEmulatedCluster(hosts: 2) { cluster in
      let out = try makeTemporaryDirectory()
      let result = try run(
        "/usr/bin/env", cluster.clusterArguments(["--out", out + "/run", "--bogus", "1"]),
        timeout: 10)
      #expect(result.status == 2, "status \(result.status): \(result.standardError)")
      let lines = result.standardError.split(separator: "\n").filter { $0.hasPrefix("concord") }
      #expect(lines.count == 1, "\(result.standardError)")
      #expect(lines.first?.contains("--bogus") == true, "\(result.standardError)")
      for host in cluster.hosts {
        #expect(try cluster.concordProcesses(on: host).isEmpty, "concord still runs on \(host)")
      }
    }
  }
}
