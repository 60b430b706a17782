// swift-tools-version:6.0
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
