import Foundation
import Testing

/// One bad input of the catalogue: the files it needs, the command, and Concord's expected
/// exit code and message.
///
/// Every case runs in a fresh folder ROOT that holds a small valid dataset in ROOT/data. The
/// placeholders `ROOT` and `DATA` in the arguments become those paths.
struct BadInput: Sendable, CustomStringConvertible {
  /// How the command starts.
  enum Runner: Sendable {
    /// `concord` under `mpirun -np 2`, so that every rank must exit.
    case twoRanks
    /// `concord` alone, for the commands that run on one process.
    case alone
    /// `launch/cluster` with `CONCORD_BINARY` set, so that it builds nothing.
    case cluster
  }

  let name: String
  let runner: Runner
  let arguments: [String]
  /// The exit code: 1 for a failure while running, 2 for a bad command line.
  let exitCode: Int32
  /// Words that the one line on stderr must contain.
  let words: [String]
  /// Writes the case's files into ROOT before the snapshot of ROOT is taken.
  let prepare: @Sendable (_ root: String) throws -> Void

  init(
    _ name: String, _ runner: Runner, _ arguments: [String], exit exitCode: Int32,
    _ words: [String], prepare: @escaping @Sendable (_ root: String) throws -> Void = { _ in }
  ) {
    self.name = name
    self.runner = runner
    self.arguments = arguments
    self.exitCode = exitCode
    self.words = words
    self.prepare = prepare
  }

  var description: String { name }
}

/// Returns the arguments of a small `concord train` run on the case's dataset, writing to ROOT/run.
private func train(_ extra: String...) -> [String] {
  [
    "train", "--data", "DATA", "--out", "ROOT/run", "--steps", "2", "--batch-size", "16",
    "--hidden", "16,8",
  ] + extra
}

/// Writes `text` to ROOT/name.
private func write(_ text: String, _ name: String) -> @Sendable (String) throws -> Void {
  { root in try text.write(toFile: root + "/" + name, atomically: true, encoding: .utf8) }
}

/// Replaces the file ROOT/data/name with an uncompressed IDX file.
private func replaceIDX(
  _ name: String, _ dimensions: [Int], _ fill: @escaping @Sendable (Int) -> UInt8
)
  -> @Sendable (String) throws -> Void
{
  { root in try writeIDX(root + "/data/" + name, dimensions: dimensions, fill: fill) }
}

/// Runs `concord train` alone to make a run folder at ROOT/name, for the cases that need
/// an earlier run or a checkpoint.
private func earlierRun(_ name: String, hidden: String) -> @Sendable (String) throws -> Void {
  { root in
    let result = try run(
      concordBinary(),
      [
        "train", "--data", root + "/data", "--out", root + "/" + name, "--steps", "2",
        "--batch-size", "16", "--hidden", hidden,
      ], timeout: 120)
    try #require(result.status == 0, "the earlier run failed: \(result.standardError)")
  }
}

private let catalogue: [BadInput] = [
  // Flags of concord train.
  BadInput("unknown flag", .twoRanks, train("--bogus", "1"), exit: 2, ["--bogus"]),
  BadInput(
    "value after a switch", .twoRanks, train("--linear-probe", "yes"), exit: 2,
    ["unexpected argument yes", "--linear-probe takes no value"]),
  BadInput(
    "misspelled flag", .twoRanks, train("--batchsize", "16"), exit: 2,
    ["did you mean --batch-size"]),
  BadInput("zero steps", .twoRanks, train("--steps", "0"), exit: 2, ["--steps 0"]),
  BadInput("negative epochs", .twoRanks, train("--epochs", "-3"), exit: 2, ["--epochs -3"]),
  BadInput("negative learning rate", .twoRanks, train("--lr", "-1"), exit: 2, ["--lr -1"]),
  BadInput(
    "steps above Int.max", .twoRanks, train("--steps", "18446744073709551615"), exit: 2,
    ["--steps 18446744073709551615", "too large"]),
  BadInput(
    "infinite loss bound", .twoRanks, train("--loss-bound", "inf"), exit: 2,
    ["--loss-bound inf", "finite number"]),
  BadInput(
    "batch not divisible by the ranks", .twoRanks, train("--batch-size", "15"), exit: 2,
    ["--batch-size 15", "multiple of 2"]),
  BadInput(
    "batch above the training images", .twoRanks, train("--batch-size", "100000"), exit: 2,
    ["--batch-size 100000", "64 training images"]),
  BadInput(
    "unknown task", .twoRanks, train("--tasks", "supervised,jigsaw"), exit: 2, ["jigsaw"]),
  BadInput("empty task list", .twoRanks, train("--tasks", ""), exit: 2, ["--tasks is empty"]),
  BadInput("unknown balancer", .twoRanks, train("--balancer", "mgda"), exit: 2, ["mgda"]),
  BadInput("flag without value", .twoRanks, train("--log-every"), exit: 2, ["--log-every"]),
  BadInput("zero encoder width", .twoRanks, train("--hidden", "16,0"), exit: 2, ["--hidden 16,0"]),
  BadInput(
    "gradient dump after the last step", .twoRanks, train("--dump-gradients", "9"), exit: 2,
    ["--dump-gradients 9"]),
  BadInput(
    "kNN above the training images", .twoRanks, train("--knn", "100"), exit: 2,
    ["--knn 100", "64 training images"]),
  BadInput(
    "BLAS threads above OpenBLAS's limit", .twoRanks, train("--blas-threads", "65"), exit: 2,
    ["--blas-threads 65"]),
  BadInput(
    "one image per rank with SimCLR", .twoRanks,
    train("--tasks", "simclr", "--batch-size", "2"), exit: 2,
    ["--batch-size 2", "NT-Xent", "--simclr-negatives global"]),
  BadInput(
    "zero loss bound", .twoRanks, train("--loss-bound", "0"), exit: 2, ["--loss-bound 0"]),
  BadInput(
    "negative verify interval", .twoRanks, train("--verify-every", "-1"), exit: 2,
    ["--verify-every -1"]),
  BadInput(
    "unknown optimizer", .twoRanks, train("--optimizer", "sgd"), exit: 2,
    ["--optimizer sgd", "adam or lars"]),
  BadInput(
    "momentum of 1", .twoRanks, train("--optimizer", "lars", "--momentum", "1"), exit: 2,
    ["--momentum 1", "[0, 1)"]),
  BadInput(
    "negative weight decay", .twoRanks, train("--optimizer", "lars", "--weight-decay", "-1e-6"),
    exit: 2, ["--weight-decay -1e-6"]),
  BadInput(
    "zero LARS eta", .twoRanks, train("--optimizer", "lars", "--lars-eta", "0"), exit: 2,
    ["--lars-eta 0"]),
  BadInput(
    "LARS momentum with Adam", .twoRanks, train("--momentum", "0.9"), exit: 2,
    ["--momentum", "--optimizer lars only", "--optimizer adam"]),
  BadInput(
    "unknown learning-rate schedule", .twoRanks, train("--lr-schedule", "step"), exit: 2,
    ["--lr-schedule step", "constant or cosine"]),
  BadInput(
    "negative warm-up epochs", .twoRanks, train("--warmup-epochs", "-0.5"), exit: 2,
    ["--warmup-epochs -0.5"]),
  BadInput(
    "warm-up beyond the run", .twoRanks, train("--warmup-steps", "3"), exit: 2,
    ["--warmup-steps 3", "2 steps"]),
  BadInput(
    "warm-up of 1e300 epochs", .twoRanks, train("--warmup-epochs", "1e300"), exit: 2,
    ["--warmup-epochs 1e+300", "is longer than the 2 steps"]),
  BadInput(
    "warm-up in epochs and steps", .twoRanks,
    train("--warmup-epochs", "0.5", "--warmup-steps", "1"), exit: 2,
    ["--warmup-epochs 0.5", "--warmup-steps 1", "only one"]),
  BadInput(
    "label smoothing without supervised", .twoRanks,
    train("--tasks", "simclr,byol", "--label-smoothing", "0.1"), exit: 2,
    ["--label-smoothing 0.1", "leaves out supervised"]),
  BadInput(
    "label smoothing of 1", .twoRanks, train("--label-smoothing", "1"), exit: 2,
    ["--label-smoothing 1", "[0, 1)"]),
  BadInput(
    "unknown target decay schedule", .twoRanks, train("--target-decay-schedule", "linear"),
    exit: 2, ["--target-decay-schedule linear", "constant or cosine"]),
  BadInput(
    "unknown supervised view", .twoRanks, train("--supervised-view", "noisy"), exit: 2,
    ["--supervised-view noisy", "augmented, clean, both or light"]),
  BadInput(
    "clean view without the supervised task", .twoRanks,
    train("--supervised-view", "clean", "--tasks", "simclr,byol"), exit: 2,
    ["--supervised-view clean", "--tasks simclr,byol"]),
  BadInput(
    "target decay schedule without byol", .twoRanks,
    train("--target-decay-schedule", "cosine", "--tasks", "supervised"), exit: 2,
    ["--target-decay-schedule cosine", "leaves out byol"]),
  BadInput(
    "global negatives without simclr", .twoRanks,
    train("--simclr-negatives", "global", "--tasks", "supervised"), exit: 2,
    ["--simclr-negatives global", "leaves out simclr"]),
  BadInput(
    "momentum that rounds to 1", .twoRanks,
    train("--optimizer", "lars", "--momentum", "0.99999999"), exit: 2,
    ["--momentum 0.99999999", "rounds to 1"]),
  BadInput(
    "out that is a file", .twoRanks, train("--out", "ROOT/file"), exit: 2,
    ["--out ROOT/file", "not a folder"], prepare: write("a file", "file")),
  BadInput(
    "out inside a file", .twoRanks, train("--out", "ROOT/file/run"), exit: 2,
    ["--out ROOT/file/run", "is a file"], prepare: write("a file", "file")),
  BadInput(
    "trace that exists", .twoRanks, train("--trace", "ROOT/trace.json"), exit: 2,
    ["--trace ROOT/trace.json", "already exists"], prepare: write("{}", "trace.json")),
  BadInput(
    "out of an earlier run", .twoRanks, train("--out", "ROOT/old"), exit: 2,
    ["--out ROOT/old", "--resume latest"], prepare: earlierRun("old", hidden: "16,8")),

  // Settings files of concord train --config.
  BadInput(
    "config key misspelled", .twoRanks, train("--config", "ROOT/run.json"), exit: 2,
    ["ROOT/run.json", "unknown key \"batchsize\"", "did you mean \"batch-size\""],
    prepare: write("{\"batchsize\": 16}", "run.json")),
  BadInput(
    "config not JSON", .twoRanks, train("--config", "ROOT/run.json"), exit: 2,
    ["ROOT/run.json", "not valid JSON"], prepare: write("batch-size = 16", "run.json")),
  BadInput(
    "config not an object", .twoRanks, train("--config", "ROOT/run.json"), exit: 2,
    ["ROOT/run.json", "not one JSON object"], prepare: write("[16]", "run.json")),
  BadInput(
    "config value of no flag's type", .twoRanks, train("--config", "ROOT/run.json"), exit: 2,
    ["ROOT/run.json", "\"seed\""], prepare: write("{\"seed\": true}", "run.json")),
  BadInput(
    "config value invalid", .twoRanks, train("--config", "ROOT/run.json"), exit: 2,
    ["ROOT/run.json", "\"steps\"", "--steps 0"], prepare: write("{\"steps\": 0}", "run.json")),
  BadInput(
    "config file missing", .twoRanks, train("--config", "ROOT/none.json"), exit: 2,
    ["ROOT/none.json", "not found"]),
  BadInput(
    "config in a conflict of flags", .twoRanks, train("--config", "ROOT/run.json"), exit: 2,
    ["--adapters parallel needs --encoder mlp", "some settings came from --config ROOT/run.json"],
    prepare: write("{\"encoder\": \"conv\", \"adapters\": \"parallel\"}", "run.json")),

  // IDX files of the dataset.
  BadInput(
    "IDX wrong magic", .twoRanks, train(), exit: 1, ["train-images-idx3-ubyte", "magic"]
  ) { root in
    try Data([1, 2, 8, 3] + [UInt8](repeating: 0, count: 12))
      .write(to: URL(fileURLWithPath: root + "/data/train-images-idx3-ubyte"))
  },
  BadInput(
    "IDX dimensions disagree with the length", .twoRanks, train(), exit: 1,
    ["train-images-idx3-ubyte", "payload"]
  ) { root in
    let path = root + "/data/train-images-idx3-ubyte"
    let bytes = try Data(contentsOf: URL(fileURLWithPath: path))
    try bytes.prefix(bytes.count - 100).write(to: URL(fileURLWithPath: path))
  },
  BadInput(
    "IDX truncated gzip", .twoRanks, train(), exit: 1, ["t10k-images-idx3-ubyte.gz", "gzip"]
  ) { root in
    let path = root + "/data/t10k-images-idx3-ubyte"
    let gzip = try run("/bin/gzip", [path])
    try #require(gzip.status == 0, "gzip failed: \(gzip.standardError)")
    let compressed = try Data(contentsOf: URL(fileURLWithPath: path + ".gz"))
    try compressed.prefix(compressed.count / 2).write(to: URL(fileURLWithPath: path + ".gz"))
  },
  BadInput(
    "IDX label out of range", .twoRanks, train(), exit: 1,
    ["train-labels-idx1-ubyte", "label 12 at index 5"],
    prepare: replaceIDX("train-labels-idx1-ubyte", [64]) { $0 == 5 ? 12 : UInt8($0 % 10) }),
  BadInput(
    "IDX image and label counts differ", .twoRanks, train(), exit: 1,
    ["64 images", "63 labels"],
    prepare: replaceIDX("train-labels-idx1-ubyte", [63]) { UInt8($0 % 10) }),
  BadInput(
    "dataset folder missing", .twoRanks, train("--data", "ROOT/none"), exit: 1,
    ["ROOT/none", "not found"]),
  BadInput(
    "dataset folder that is a file", .twoRanks, train("--data", "ROOT/file"), exit: 1,
    ["ROOT/file is a file", "--data DIR"], prepare: write("a file", "file")),

  // Checkpoints and other safetensors files.
  BadInput(
    "checkpoint of another model", .twoRanks,
    train("--resume", "ROOT/old/checkpoints/step-0000002.safetensors"), exit: 2,
    ["--hidden 32,8", "--hidden 16,8"], prepare: earlierRun("old", hidden: "32,8")),
  BadInput(
    "checkpoint that is not safetensors", .twoRanks,
    train("--resume", "ROOT/notes.safetensors"), exit: 1,
    ["ROOT/notes.safetensors", "8-byte header length"], prepare: write("notes", "notes.safetensors")
  ),
  BadInput(
    "safetensors header beyond the file", .alone, ["inspect", "ROOT/short.safetensors"], exit: 2,
    ["ROOT/short.safetensors", "header length"]
  ) { root in
    try Data([0xFF, 0x10, 0, 0, 0, 0, 0, 0, 0x7B]).write(
      to: URL(fileURLWithPath: root + "/short.safetensors"))
  },

  // JSON cases of concord balance.
  BadInput(
    "balance case without gradients", .alone, ["balance", "--input", "ROOT/case.json"], exit: 2,
    ["ROOT/case.json", "gradients is empty"],
    prepare: write("{\"balancer\": \"pcgrad\", \"gradients\": []}", "case.json")),
  BadInput(
    "balance case with negative alpha", .alone, ["balance", "--input", "ROOT/case.json"],
    exit: 2, ["ROOT/case.json", "alpha -1"],
    prepare: write(
      "{\"balancer\": \"gradnorm\", \"gradients\": [[1, 2], [3, 4]], \"losses\": [1, 2], "
        + "\"alpha\": -1}", "case.json")),
  BadInput(
    "balance case not JSON", .alone, ["balance", "--input", "ROOT/case.json"], exit: 2,
    ["ROOT/case.json", "invalid JSON"], prepare: write("{\"balancer\": ", "case.json")),

  // Hostfiles of launch/cluster.
  BadInput(
    "hostfile missing", .cluster, ["--hostfile", "ROOT/hosts"], exit: 2,
    ["ROOT/hosts", "not a readable file"]),
  BadInput(
    "hostfile host without slots", .cluster, ["--hostfile", "ROOT/hosts"], exit: 2,
    ["localhost", "no slots=K"], prepare: write("localhost\n", "hosts")),
  BadInput(
    "hostfile without hosts", .cluster, ["--hostfile", "ROOT/hosts"], exit: 2,
    ["ROOT/hosts", "lists no host"], prepare: write("# nothing yet\n\n", "hosts")),
  BadInput(
    "cluster with zero ranks", .cluster, ["--hostfile", "ROOT/hosts", "--ranks", "0"], exit: 2,
    ["--ranks"], prepare: write("localhost slots=2\n", "hosts")),

  // concord plot.
  BadInput(
    "plot over an existing file", .alone, ["plot", "ROOT/old", "--out", "ROOT/notes.svg"],
    exit: 2, ["--out ROOT/notes.svg", "already exists"]
  ) { root in
    try earlierRun("old", hidden: "16,8")(root)
    try write("<svg/>", "notes.svg")(root)
  },
  BadInput(
    "plot of a folder without metrics", .alone, ["plot", "ROOT"], exit: 2,
    ["ROOT/metrics.jsonl", "not found"]),
]

/// The repository's `launch/cluster`.
private let clusterScript = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(
    "launch/cluster"
  ).path

@Suite(.serialized)
struct BadInputCatalogueTests {
  /// Each bad input gets one line on stderr with the expected words, the expected exit code
  /// from every rank before the deadline, and leaves every file in its folder as it was.
  @Test(arguments: catalogue + studyBadInputs + augmentationGroupBadInputs + adapterBadInputs)
  func badInputIsRejected(input: BadInput) throws {
    let root = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: root) }
    try FileManager.default.createDirectory(
      atPath: root + "/data", withIntermediateDirectories: true)
    try writeIDX(root + "/data/train-images-idx3-ubyte", dimensions: [64, 28, 28]) {
      UInt8($0 % 251)
    }
    try writeIDX(root + "/data/train-labels-idx1-ubyte", dimensions: [64]) { UInt8($0 % 10) }
    try writeIDX(root + "/data/t10k-images-idx3-ubyte", dimensions: [16, 28, 28]) {
      UInt8($0 % 241)
    }
    try writeIDX(root + "/data/t10k-labels-idx1-ubyte", dimensions: [16]) { UInt8($0 % 10) }
    try input.prepare(root)
    let before = try snapshot(of: root)

    let arguments = input.arguments.map {
      $0.replacingOccurrences(of: "DATA", with: root + "/data")
        .replacingOccurrences(of: "ROOT", with: root)
    }
    let result: ProcessResult
    switch input.runner {
    case .twoRanks: result = try mpirun(ranks: 2, arguments, timeout: 60)
    case .alone: result = try run(concordBinary(), arguments, timeout: 60)
    case .cluster:
      result = try run(
        "/usr/bin/env", ["CONCORD_BINARY=" + concordBinary(), clusterScript] + arguments,
        timeout: 60)
    }

    #expect(result.status == input.exitCode, "\(result.standardError)")
    let lines = result.standardError.split(separator: "\n").filter {
      $0.hasPrefix("concord") || $0.hasPrefix("launch/cluster")
    }
    #expect(lines.count == 1, "\(result.standardError)")
    let line = lines.first.map(String.init) ?? ""
    for word in input.words {
      let expected = word.replacingOccurrences(of: "ROOT", with: root)
      #expect(line.contains(expected), "\(expected) is missing from: \(line)")
    }
    #expect(!line.contains("NSCocoaErrorDomain"), "\(line)")
    #expect(try snapshot(of: root) == before, "a file in the case's folder changed")
  }
}
