import Testing

/// Returns the arguments of a small `concord train` run on the case's dataset, writing to
/// ROOT/run.
private func train(_ extra: String...) -> [String] {
  [
    "train", "--data", "DATA", "--out", "ROOT/run", "--steps", "2", "--batch-size", "16",
    "--hidden", "16,8",
  ] + extra
}

/// Runs `concord train` alone with `--sensitive crop,flip` to make a run folder at ROOT/old.
private func sensitiveRun(_ root: String) throws {
  let result = try run(
    concordBinary(),
    [
      "train", "--data", root + "/data", "--out", root + "/old", "--steps", "2",
      "--batch-size", "16", "--hidden", "16,8", "--sensitive", "crop,flip",
    ], timeout: 120)
  try #require(result.status == 0, "the earlier run failed: \(result.standardError)")
}

/// The bad inputs of `--sensitive` and `--invariant`, checked like the rest of the catalogue:
/// one line on stderr, the exit code on every rank, no file changed.
let augmentationGroupBadInputs: [BadInput] = [
  BadInput(
    "unknown sensitive kind", .twoRanks, train("--sensitive", "crop,sharpen"), exit: 2,
    ["'sharpen'", "--sensitive crop,sharpen", "colorJitter"]),
  BadInput(
    "invariant kind twice", .twoRanks, train("--invariant", "flip,blur,flip"), exit: 2,
    ["flip appears twice", "--invariant flip,blur,flip"]),
  BadInput(
    "empty sensitive list", .twoRanks, train("--sensitive="), exit: 2,
    ["--sensitive is empty"]),
  BadInput(
    "kind both sensitive and invariant", .twoRanks,
    train("--sensitive", "crop,noise", "--invariant", "noise"), exit: 2,
    ["kind noise", "--sensitive crop,noise", "--invariant noise"]),
  BadInput(
    "every kind invariant with augpred", .twoRanks,
    train("--invariant", "crop,flip,colorJitter,blur,noise,erasing"), exit: 2,
    ["leaves augpred no augmentation kind", "--tasks"]),
  BadInput(
    "sensitive kinds without augpred", .twoRanks,
    train("--tasks", "supervised,simclr", "--sensitive", "flip"), exit: 2,
    ["--sensitive flip", "leaves out augpred"]),
  BadInput(
    "invariance task without kinds", .twoRanks, train("--tasks", "simclr,invariance"),
    exit: 2, ["--tasks simclr,invariance", "--invariant LIST"]),
  BadInput(
    "resume with other sensitive kinds", .twoRanks,
    [
      "train", "--data", "DATA", "--out", "ROOT/old", "--steps", "4", "--batch-size", "16",
      "--hidden", "16,8", "--resume", "latest", "--sensitive", "flip",
    ], exit: 2, ["--sensitive crop,flip", "this run has --sensitive flip"],
    prepare: sensitiveRun),
]
