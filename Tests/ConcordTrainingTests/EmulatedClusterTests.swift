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
  /// The first line that `up` printed, which names the delay, rate and mechanism.
  let summary: String

  /// The emulated host names, NAME-h1 to NAME-hN.
  var hosts: [String] { (1...hostCount).map { "\(name)-h\($0)" } }

  /// Makes `hosts` emulated hosts with two slots each, passing `options` (such as `--delay 2`)
  /// to `up`.
  static func up(hosts: Int, options upOptions: [String] = []) throws -> EmulatedCluster {
    let name = makeClusterName()
    let result = try run(
      repositoryRoot + "/launch/netns-cluster", ["up", String(hosts), "--name", name] + upOptions,
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
      name: name, hostCount: hosts, hostfile: hostfile, mpirunOptions: options,
      summary: result.standardOutput.split(separator: "\n").first.map(String.init) ?? "")
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

  /// Returns the address of host `host` (1 to N) on the network that carries the ranks'
  /// messages, the subnet of `btl_tcp_if_include`.
  func dataAddress(ofHost host: Int) throws -> String {
    guard let index = mpirunOptions.firstIndex(of: "btl_tcp_if_include"),
      index + 1 < mpirunOptions.count, mpirunOptions[index + 1].hasSuffix(".0/24")
    else { throw ClusterError("no btl_tcp_if_include X.0/24 in \(mpirunOptions)") }
    return String(mpirunOptions[index + 1].dropLast(".0/24".count)) + ".\(host)"
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

/// Returns a random cluster name, so that clusters of concurrent runs never meet.
private func makeClusterName() -> String {
  let letters = Array("abcdefghijklmnopqrstuvwxyz0123456789")
  return "ct" + String((0..<6).map { _ in letters.randomElement()! })
}

private struct ClusterError: Error, CustomStringConvertible {
  let description: String
  init(_ description: String) { self.description = description }
}

/// Runs `body` on a new cluster of `hosts` emulated hosts and removes the cluster afterwards,
/// also when `body` throws.
private func withEmulatedCluster(
  hosts: Int, options: [String] = [], _ body: (EmulatedCluster) throws -> Void
) throws {
  let cluster = try EmulatedCluster.up(hosts: hosts, options: options)
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

/// Expects the checkpoint `file` of the runs in `local` (one host) and `remote` (two hosts) to
/// hold the same tensors, to the bit.
private func expectSameCheckpoint(_ local: String, _ remote: String, file: String) throws {
  let a = try SafeTensors.read(path: local + "/checkpoints/" + file)
  let b = try SafeTensors.read(path: remote + "/checkpoints/" + file)
  #expect(a.tensors.map(\.name) == b.tensors.map(\.name))
  for (x, y) in zip(a.tensors, b.tensors) {
    #expect(x.bytes == y.bytes, "\(x.name) differs between one host and two")
  }
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

      try expectSameCheckpoint(local, remote, file: "step-0000010.safetensors")
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

/// The concord-link binary that launch/netns-cluster starts.
///
/// It is `CONCORD_LINK_BINARY`, else the release build, which launch/test builds. The tests never let the script build it, because
/// a release build inside a test would take minutes.
private var linkBinary: String {
  let path = ProcessInfo.processInfo.environment["CONCORD_LINK_BINARY"] ?? ""
  return path.isEmpty ? repositoryRoot + "/.build/release/concord-link" : path
}

/// Returns whether the program `command` is on the PATH.
private func isInstalled(_ command: String) -> Bool {
  (try? run("/bin/sh", ["-c", "command -v \"$0\"", command], timeout: 30))?.status == 0
}

/// Receives one TCP connection on the port `argv[1]` and prints the bytes it carried.
private let receiverScript = """
  import socket, sys
  server = socket.create_server(("0.0.0.0", int(sys.argv[1])))
  connection, _ = server.accept()
  total = 0
  while chunk := connection.recv(1 << 16):
      total += len(chunk)
  print(total)
  """

/// Sends `argv[3]` zero bytes to `argv[1]:argv[2]`, retrying the connection for 10 s until
/// the receiver listens.
private let senderScript = """
  import socket, sys, time
  host, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
  for attempt in range(200):
      try:
          connection = socket.create_connection((host, port))
          break
      except ConnectionRefusedError:
          time.sleep(0.05)
  else:
      sys.exit(f"nothing listens on {host}:{port}")
  connection.sendall(bytes(size))
  connection.close()
  """

/// Lists what remains of cluster `name`: namespaces, links of the root namespace, concord-link
/// processes, /etc/hosts lines and the state folder.
private func leftovers(ofCluster name: String) throws -> [String] {
  var found: [String] = []
  let namespaces = try run("/usr/bin/env", ["ip", "netns", "list"], timeout: 30).standardOutput
  found += namespaces.split(separator: "\n").filter { $0.hasPrefix(name + "-") }.map {
    "namespace \($0)"
  }
  let links = try run("/usr/bin/env", ["ip", "-o", "link", "show"], timeout: 30).standardOutput
  found += links.split(separator: "\n").filter { $0.contains(" \(name)-") }.map { "link \($0)" }
  found += processes(mentioning: "\(name)-t1=").map { "process \($0)" }
  let hosts = (try? String(contentsOfFile: "/etc/hosts", encoding: .utf8)) ?? ""
  found += hosts.split(separator: "\n").filter { $0.hasSuffix("# concord-netns \(name)") }.map {
    "/etc/hosts line \($0)"
  }
  if FileManager.default.fileExists(atPath: "/run/concord-netns/\(name)") {
    found.append("state folder /run/concord-netns/\(name)")
  }
  return found
}

/// Clusters whose links run through concord-link, the user-space link emulator, which
/// launch/netns-cluster picks for `--delay` on kernels without netem and `--emulator
/// concord-link` forces everywhere.
@Suite(
  .serialized,
  .enabled(if: isRoot, "network namespaces and TUN devices need root"),
  .enabled(if: hasIPCommand, "iproute2's ip is not installed: run launch/install-deps"),
  .enabled(
    if: canMakeNamespaces, "ip netns add failed: this kernel or sandbox cannot make namespaces"),
  .enabled(
    if: FileManager.default.fileExists(atPath: "/dev/net/tun"),
    "/dev/net/tun is missing: this kernel has no TUN driver"),
  .enabled(
    if: FileManager.default.isExecutableFile(atPath: linkBinary),
    "concord-link is not built: run swift build -c release --product concord-link"))
struct LinkEmulatorClusterTests {
  /// A ping crosses the delay twice, so its round trip takes at least 4 ms at 2 ms one way.
  @Test(.enabled(if: isInstalled("ping"), "ping is not installed: run launch/install-deps"))
  func pingRoundTripCoversBothDelays() throws {
    let options = ["--delay", "2", "--rate", "1gbit", "--emulator", "concord-link"]
    try withEmulatedCluster(hosts: 2, options: options) { cluster in
      #expect(cluster.summary.contains("concord-link"), "\(cluster.summary)")
      let target = try cluster.dataAddress(ofHost: 2)
      let result = try run(
        "/usr/bin/env",
        ["ip", "netns", "exec", cluster.hosts[0], "ping", "-q", "-c", "5", "-i", "0.2", target],
        timeout: 60)
      try #require(result.status == 0, "\(result.standardOutput)\(result.standardError)")
      // The summary line reads "rtt min/avg/max/mdev = 4.167/4.240/4.418/0.091 ms".
      let statistics = try #require(
        result.standardOutput.split(separator: "\n").first { $0.hasPrefix("rtt ") },
        "\(result.standardOutput)")
      let values = statistics.split(separator: "=").last?.split(separator: "/") ?? []
      let minimum = try #require(
        values.first.flatMap { Double($0.trimmingCharacters(in: .whitespaces)) }, "\(statistics)")
      #expect(minimum >= 4.0, "\(statistics)")
    }
  }

  /// Checks that N bytes at 100 Mbit/s take at least N * 8 / 1e8 seconds.
  ///
  /// Every byte crosses the sender's uplink at the rate. Without the emulator the transfer would take milliseconds.
  @Test(.enabled(if: isInstalled("python3"), "python3 is not installed; it runs the transfer"))
  func transferTakesBytesOverRate() throws {
    let options = ["--rate", "100mbit", "--emulator", "concord-link"]
    try withEmulatedCluster(hosts: 2, options: options) { cluster in
      let bytes = 5_000_000
      let logs = try makeTemporaryDirectory()
      _ = FileManager.default.createFile(atPath: logs + "/received", contents: nil)
      let receiver = Process()
      receiver.executableURL = URL(fileURLWithPath: "/usr/bin/env")
      receiver.arguments = [
        "ip", "netns", "exec", cluster.hosts[1], "python3", "-c", receiverScript, "5001",
      ]
      receiver.standardOutput = try FileHandle(
        forWritingTo: URL(fileURLWithPath: logs + "/received"))
      try receiver.run()
      defer { if receiver.isRunning { receiver.terminate() } }

      let started = Date()
      let sender = try run(
        "/usr/bin/env",
        [
          "ip", "netns", "exec", cluster.hosts[0], "python3", "-c", senderScript,
          try cluster.dataAddress(ofHost: 2), "5001", String(bytes),
        ], timeout: 60)
      while receiver.isRunning && Date().timeIntervalSince(started) < 60 { usleep(10_000) }
      let elapsed = Date().timeIntervalSince(started)
      #expect(sender.status == 0, "\(sender.standardError)")
      try #require(!receiver.isRunning, "the receiver still runs after 60 s")
      #expect(receiver.terminationStatus == 0)
      let received = try String(contentsOfFile: logs + "/received", encoding: .utf8)
      #expect(received.trimmingCharacters(in: .whitespacesAndNewlines) == String(bytes))
      #expect(elapsed >= Double(bytes) * 8 / 1e8, "\(bytes) bytes took \(elapsed) s")
    }
  }

  /// Ranks on two hosts joined by delayed links finish a run whose parameters match, to the bit,
  /// those of four ranks on one host, and their messages cross the emulated links.
  @Test(.enabled(if: hasFashionMNIST, "Fashion-MNIST is not installed"))
  func delayedRunMatchesOneHost() throws {
    let local = try makeTemporaryDirectory()
    let flags = clusterRun(out: local, steps: 5, extra: ["--blas-threads", "1"])
    let single = try mpirun(ranks: 4, ["train"] + flags)
    try #require(single.status == 0, "\(single.standardError)")

    let options = ["--delay", "1", "--rate", "1gbit", "--emulator", "concord-link"]
    try withEmulatedCluster(hosts: 2, options: options) { cluster in
      let remote = try makeTemporaryDirectory()
      let result = try run(
        "/usr/bin/env", cluster.clusterArguments(clusterRun(out: remote, steps: 5)), timeout: 300)
      try #require(result.status == 0, "\(result.standardError)")
      #expect(result.standardOutput.contains("4 rank(s)"), "\(result.standardOutput)")

      // The emulator writes what it delivers into the TUN device, which counts it as received.
      let device = "\(cluster.name)-t2"
      let counter = try run(
        "/usr/bin/env",
        [
          "ip", "netns", "exec", cluster.hosts[1], "cat",
          "/sys/class/net/\(device)/statistics/rx_bytes",
        ],
        timeout: 30)
      let delivered = Int(counter.standardOutput.trimmingCharacters(in: .whitespacesAndNewlines))
      // Five allreduces of 2.4 MB each reach the second host.
      #expect((delivered ?? 0) > 1_000_000, "\(device) received \(counter.standardOutput)")

      try expectSameCheckpoint(local, remote, file: "step-0000005.safetensors")
    }
  }

  /// `down` stops the emulator and removes every namespace, link and /etc/hosts line.
  @Test func downLeavesNothing() throws {
    let cluster = try EmulatedCluster.up(
      hosts: 2, options: ["--delay", "0.1", "--emulator", "concord-link"])
    defer { cluster.down() }
    #expect(!processes(mentioning: "\(cluster.name)-t1=").isEmpty, "concord-link is not running")
    let result = try run(
      repositoryRoot + "/launch/netns-cluster", ["down", "--name", cluster.name], timeout: 120)
    #expect(result.status == 0, "\(result.standardError)")
    #expect(result.standardOutput.contains("concord-link: counters of"), "\(result.standardOutput)")
    #expect(try leftovers(ofCluster: cluster.name) == [])
  }

  /// An `up` that fails after the emulator started removes everything, the emulator included.
  @Test func failedUpLeavesNothing() throws {
    let name = makeClusterName()
    defer {
      _ = try? run(
        repositoryRoot + "/launch/netns-cluster", ["down", "--name", name], timeout: 120)
    }
    // A namespace that takes the second host's name makes `up` fail in its host loop, which
    // runs after the emulator has opened its devices.
    let blocker = try run("/usr/bin/env", ["ip", "netns", "add", "\(name)-h2"], timeout: 30)
    try #require(blocker.status == 0, "\(blocker.standardError)")
    let result = try run(
      repositoryRoot + "/launch/netns-cluster",
      ["up", "2", "--name", name, "--delay", "1", "--emulator", "concord-link"], timeout: 120)
    #expect(result.status == 1, "status \(result.status): \(result.standardError)")
    #expect(result.standardError.contains("up failed"), "\(result.standardError)")
    #expect(result.standardOutput.contains("concord-link: counters of"), "\(result.standardOutput)")
    #expect(try leftovers(ofCluster: name) == [])
  }
}
