// swift-tools-version:6.0
import Foundation
import PackageDescription

let package = Package(
  name: "Concord",
  products: [
    .executable(name: "concord", targets: ["concord"]),
    .library(name: "ConcordTraining", targets: ["ConcordTraining"]),
    .executable(name: "concord-link", targets: ["concord-link"]),
  ],
  targets: [
    // C libraries, found with pkg-config.
    .systemLibrary(
      name: "COpenMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
    .systemLibrary(
      name: "COpenBLAS", pkgConfig: "openblas", providers: [.apt(["libopenblas-dev"])]),
    .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
    // Open MPI's handles are macros, which Swift cannot import; this target returns them.
    .target(name: "CMPIShims", dependencies: ["COpenMPI"]),

    .target(name: "ConcordTensors", dependencies: ["COpenBLAS"]),
    .target(name: "ConcordBalancing", dependencies: ["ConcordTensors"]),
    .target(name: "ConcordDistributed", dependencies: ["CMPIShims", "ConcordTensors"]),
    .target(name: "ConcordData", dependencies: ["CZlib", "ConcordTensors"]),
    .target(name: "ConcordModel", dependencies: ["ConcordTensors"]),
    .target(
      name: "ConcordTraining",
      dependencies: [
        "ConcordTensors", "ConcordBalancing", "ConcordDistributed", "ConcordData",
        "ConcordModel", "CZlib",
      ]),
    .executableTarget(name: "concord", dependencies: ["ConcordTraining"]),
    // The link emulator of launch/netns-cluster; its C target wraps ioctl, ppoll and prctl.
    .target(name: "CLinkShims"),
    .target(name: "ConcordLink"),
    .executableTarget(name: "concord-link", dependencies: ["CLinkShims", "ConcordLink"]),

    .testTarget(name: "ConcordTensorsTests", dependencies: ["ConcordTensors"]),
    .testTarget(
      name: "ConcordBalancingTests", dependencies: ["ConcordBalancing"], exclude: ["Golden"]),
    .testTarget(name: "ConcordDataTests", dependencies: ["ConcordData"]),
    .testTarget(name: "ConcordDistributedTests", dependencies: ["ConcordDistributed"]),
    .testTarget(name: "ConcordModelTests", dependencies: ["ConcordModel"]),
    .testTarget(
      name: "ConcordTrainingTests", dependencies: ["ConcordTraining"]),
    .testTarget(name: "ConcordLinkTests", dependencies: ["ConcordLink"]),
  ]
)

// libFuzzer harnesses, one executable per input format. launch/fuzz sets CONCORD_FUZZ and
// builds them with -sanitize=fuzzer into their own build folder, so that `swift build` and
// the tests never see them.
if ProcessInfo.processInfo.environment["CONCORD_FUZZ"] != nil {
  let harnesses = [
    ("FuzzIDX", "ConcordData"), ("FuzzSafeTensors", "ConcordTensors"),
    ("FuzzBalancingCase", "ConcordBalancing"), ("FuzzConfiguration", "ConcordTraining"),
  ]
  package.targets.append(.target(name: "CFuzzer", path: "Fuzz/CFuzzer"))
  for (name, library) in harnesses {
    package.targets.append(
      .executableTarget(
        name: name, dependencies: ["CFuzzer", .target(name: library)], path: "Fuzz/\(name)",
        // NOTE: ld.gold of Debian 12 (binutils 2.40) stops with "internal error in
        // format_file_lineno" on these links; the toolchain's lld links them.
        linkerSettings: [.unsafeFlags(["-use-ld=lld"])]))
  }
}
