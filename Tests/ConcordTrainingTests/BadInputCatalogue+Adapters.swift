import Testing

/// Returns the arguments of a small `concord train` on the case's dataset, writing to
/// ROOT/run.
private func train(_ extra: String...) -> [String] {
  [
    "train", "--data", "DATA", "--out", "ROOT/run", "--steps", "2", "--batch-size", "16",
    "--hidden", "16,8",
  ] + extra
}

/// Runs `concord train` alone with `flags` to make a run folder with a checkpoint at ROOT/run.
private func earlierAdapterRun(_ flags: String...) -> @Sendable (String) throws -> Void {
  { root in
    let result = try run(
      concordBinary(),
      [
        "train", "--data", root + "/data", "--out", root + "/run", "--steps", "2",
        "--batch-size", "16", "--hidden", "16,8",
      ] + flags, timeout: 120)
    try #require(result.status == 0, "the earlier run failed: \(result.standardError)")
  }
}

/// The bad inputs of `--adapters` and `--adapter-rank`, checked like the rest of the
/// catalogue: one line on stderr, the exit code on every rank, no file changed.
let adapterBadInputs: [BadInput] = [
  BadInput(
    "unknown adapters", .twoRanks, train("--adapters", "serial"), exit: 2,
    ["invalid --adapters serial", "none or parallel"]),
  BadInput(
    "adapter rank without adapters", .twoRanks, train("--adapter-rank", "4"), exit: 2,
    ["--adapter-rank 4", "--adapters none", "pass --adapters parallel"]),
  BadInput(
    "adapter rank zero", .twoRanks, train("--adapters", "parallel", "--adapter-rank", "0"),
    exit: 2, ["invalid --adapter-rank 0"]),
  BadInput(
    "adapter rank above the widths", .twoRanks,
    train("--adapters", "parallel", "--adapter-rank", "9"), exit: 2,
    ["--adapter-rank 9", "--hidden 16,8", "at most 8"]),
  BadInput(
    "adapters on the conv encoder", .twoRanks,
    train("--adapters", "parallel", "--encoder", "conv"), exit: 2,
    ["--adapters parallel needs --encoder mlp", "--encoder conv"]),
  BadInput(
    "resume with other adapters", .twoRanks,
    train("--steps", "4", "--resume", "latest"), exit: 2,
    ["--adapters parallel, this run has --adapters none", "pass --adapters parallel"],
    prepare: earlierAdapterRun("--adapters", "parallel", "--adapter-rank", "4")),
  BadInput(
    "resume with another adapter rank", .twoRanks,
    train("--steps", "4", "--resume", "latest", "--adapters", "parallel", "--adapter-rank", "2"),
    exit: 2, ["--adapter-rank 8, this run has --adapter-rank 2"],
    prepare: earlierAdapterRun("--adapters", "parallel", "--adapter-rank", "8")),
]
