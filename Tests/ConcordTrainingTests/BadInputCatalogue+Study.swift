/// Returns the arguments of a small `concord study` on the case's dataset, writing to
/// ROOT/study.
private func study(_ extra: String...) -> [String] {
  [
    "study", "--data", "DATA", "--out", "ROOT/study", "--balancers", "equal", "--seeds", "1",
    "--steps", "2", "--batch-size", "16", "--hidden", "16,8",
  ] + extra
}

/// The bad inputs of `concord study` and of `--simclr-negatives`, checked like the rest of
/// the catalogue: one line on stderr, the exit code on every rank, no file changed.
let studyBadInputs: [BadInput] = [
  BadInput(
    "study with an unknown balancer", .twoRanks, study("--balancers", "equal,mgda"), exit: 2,
    ["'mgda'", "--balancers equal,mgda"]),
  BadInput(
    "study with a balancer twice", .twoRanks, study("--balancers", "equal,equal"), exit: 2,
    ["equal appears twice"]),
  BadInput("study with zero seeds", .twoRanks, study("--seeds", "0"), exit: 2, ["--seeds 0"]),
  BadInput(
    "study flag misspelled", .twoRanks, study("--seedz", "3"), exit: 2,
    ["unknown flag --seedz", "did you mean --seeds?"]),
  BadInput(
    "study with too many seeds", .twoRanks, study("--seeds", "99999999999"), exit: 2,
    ["--seeds 99999999999", "at most 10000"]),
  BadInput(
    "study folder that is a file", .twoRanks, study("--out", "ROOT/file"), exit: 2,
    ["--out ROOT/file", "not a folder"],
    prepare: { root in
      try "a file".write(toFile: root + "/file", atomically: true, encoding: .utf8)
    }),
  BadInput(
    "study with an invalid train flag", .twoRanks, study("--lr", "-1"), exit: 2, ["--lr -1"]),
  BadInput(
    "study with a batch the ranks cannot split", .twoRanks, study("--batch-size", "15"),
    exit: 2, ["--batch-size 15", "multiple of 2"]),
  BadInput(
    "study with a seed per run", .twoRanks, study("--seed", "3"), exit: 2,
    ["--seed", "--seed-base"]),
  BadInput("study without a folder", .twoRanks, ["study", "--seeds", "1"], exit: 2, ["--out DIR"]),
  BadInput(
    "study config with zero seeds", .twoRanks, study("--config", "ROOT/study.json"), exit: 2,
    ["--config ROOT/study.json", "key \"seeds\"", "--seeds 0"],
    prepare: { root in
      try "{\"seeds\": 0}".write(toFile: root + "/study.json", atomically: true, encoding: .utf8)
    }),
  BadInput(
    "study config with a seed per run", .twoRanks, study("--config", "ROOT/study.json"),
    exit: 2, ["--config ROOT/study.json sets \"seed\"", "\"seed-base\""],
    prepare: { root in
      try "{\"seed\": 3}".write(toFile: root + "/study.json", atomically: true, encoding: .utf8)
    }),
  BadInput(
    "unknown SimCLR negatives", .twoRanks,
    [
      "train", "--data", "DATA", "--out", "ROOT/run", "--steps", "2", "--batch-size", "16",
      "--hidden", "16,8", "--simclr-negatives", "remote",
    ], exit: 2, ["--simclr-negatives remote", "local or global"]),
]
