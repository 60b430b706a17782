import ConcordModel

extension TrainingConfiguration {
  /// The rank of each residual adapter when `--adapter-rank` is not given.
  public static let defaultAdapterRank = 16

  /// The adapter rank of the model: ``adapterRank`` or ``defaultAdapterRank`` with
  /// ``AdapterKind/parallel`` adapters, nil without adapters.
  public var modelAdapterRank: Int? {
    adapters == .parallel ? adapterRank ?? Self.defaultAdapterRank : nil
  }

  /// The adapters in the words of the flags: `none`, or `parallel rank 16`.
  public var adapterDescription: String {
    guard let rank = modelAdapterRank else { return adapters.rawValue }
    return "\(adapters.rawValue) rank \(rank)"
  }
}

extension Trainer {
  /// Rejects adapter settings that do nothing or that the encoder cannot run.
  ///
  /// - Throws: ``UsageError`` naming the flag, the value and what to pass instead.
  static func checkAdapterSettings(_ c: TrainingConfiguration) throws {
    if let rank = c.adapterRank, c.adapters != .parallel {
      throw UsageError(
        "--adapter-rank \(rank) sets the rank of the task-group adapters, and this run has "
          + "--adapters \(c.adapters.rawValue): pass --adapters parallel or leave out "
          + "--adapter-rank")
    }
    guard c.adapters == .parallel else { return }
    if c.encoder != .mlp {
      throw UsageError(
        "--adapters parallel needs --encoder mlp, and this run has --encoder "
          + "\(c.encoder.rawValue): pass --encoder mlp or --adapters none")
    }
    let narrowest = c.hiddenSizes.min() ?? 0
    if let rank = c.adapterRank, rank > narrowest {
      throw UsageError(
        "--adapter-rank \(rank) exceeds the narrowest encoder layer of --hidden "
          + "\(c.hiddenSizes.map(String.init).joined(separator: ",")), beyond which a larger "
          + "rank adds nothing: pass at most \(narrowest)")
    }
    if TaskGroup.present(in: c.tasks).isEmpty {
      let members = TaskKind.allCases.filter { !TaskGroup.groups(of: $0).isEmpty }
      throw UsageError(
        "--adapters parallel adds adapters for the task groups of --tasks "
          + "\(c.tasks.map(\.rawValue).joined(separator: ",")), which has none: add one of "
          + "\(members.map(\.rawValue).joined(separator: ", ")) to --tasks or pass --adapters none"
      )
    }
  }
}
