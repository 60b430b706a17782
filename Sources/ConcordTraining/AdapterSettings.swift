import ConcordModel

extension TrainingConfiguration {
  /// The rank of each residual adapter when `--adapter-rank` is not given.
  public static let defaultAdapterRank = 16

  /// The adapter rank of the model with ``AdapterKind/parallel`` adapters, nil without
  /// adapters: ``adapterRank``, or else ``defaultAdapterRank`` or the narrowest encoder
  /// width, whichever is smaller.
  public var modelAdapterRank: Int? {
    guard adapters == .parallel else { return nil }
    return adapterRank ?? min(Self.defaultAdapterRank, hiddenSizes.min() ?? Self.defaultAdapterRank)
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
  /// A rank above the narrowest encoder width adds nothing: the adapter beside that layer
  /// already has full rank.
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
  }
}
