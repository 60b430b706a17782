import ConcordTensors
import Foundation

/// The cores of this host that one rank may use.
///
/// `mpirun` binds each rank to its own core by default when there are at most two ranks,
/// and launch/cluster binds ranks to cores, so a bound rank has exactly the cores of its
/// affinity mask. An unbound rank shares all the host's cores with the other ranks there.
public enum HostCores {
  /// Returns the number of cores this rank may use without taking one from another rank.
  public static func perRank() -> Int {
    let total = ProcessInfo.processInfo.activeProcessorCount
    let allowed = affinityCount() ?? total
    if allowed < total { return max(allowed, 1) }
    let environment = ProcessInfo.processInfo.environment
    let local = environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init) ?? 1
    return max(total / max(local, 1), 1)
  }

  /// Whether this rank has a core that its BLAS threads leave free, for a helper thread.
  public static var hasSpareCore: Bool { perRank() > BLAS.threadCount }

  /// Returns the number of CPUs in this process's affinity mask, from `Cpus_allowed` in
  /// `/proc/self/status` (a comma-separated hexadecimal mask), or nil off Linux.
  static func affinityCount() -> Int? {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
      let line = status.split(separator: "\n").first(where: { $0.hasPrefix("Cpus_allowed:") })
    else { return nil }
    let mask = line.dropFirst("Cpus_allowed:".count).filter { $0.isHexDigit }
    let count = mask.reduce(0) { $0 + (Int(String($1), radix: 16) ?? 0).nonzeroBitCount }
    return count > 0 ? count : nil
  }
}
