import ConcordData

extension TrainingConfiguration {
  /// The augmentation kinds that the augpred head predicts, one logit each, in the order of
  /// application: ``sensitiveKinds``, or by default every kind that is not invariant.
  public var augpredKinds: [AugmentationKind] {
    sensitiveKinds ?? AugmentationKind.allCases.filter { !invariantKinds.contains($0) }
  }

  /// The rows of a batch for each image: the two views, the clean or lightly augmented image
  /// with ``supervisedView`` `clean`, `both` or `light`, and the invariance twin with
  /// ``invariantKinds``.
  var rowsPerImage: Int {
    supervisedView.rowsPerImage + (invariantKinds.isEmpty ? 0 : 1)
  }

  /// Appends the ``TaskKind/invariance`` task after the others when ``invariantKinds`` is set
  /// and ``tasks`` does not list it yet.
  public mutating func addInvarianceTask() {
    if !invariantKinds.isEmpty && !tasks.contains(.invariance) { tasks.append(.invariance) }
  }

  /// Rejects `--sensitive`, `--invariant` and `--tasks` settings that contradict each other.
  ///
  /// - Throws: ``UsageError`` naming the flag and the kind or task at fault.
  func checkAugmentationGroups() throws {
    let taskList = tasks.map(\.rawValue).joined(separator: ",")
    if tasks.contains(.invariance) && invariantKinds.isEmpty {
      throw UsageError(
        "--tasks \(taskList) lists invariance, which needs the kinds to ignore: pass "
          + "--invariant LIST, such as --invariant crop,flip")
    }
    if !invariantKinds.isEmpty && !tasks.contains(.invariance) {
      throw UsageError(
        "--invariant \(Self.names(invariantKinds)) adds the invariance task, and --tasks "
          + "\(taskList) leaves it out: add invariance to --tasks or leave out --invariant")
    }
    if let sensitiveKinds, let kind = sensitiveKinds.first(where: invariantKinds.contains) {
      throw UsageError(
        "augmentation kind \(kind.rawValue) is in both --sensitive \(Self.names(sensitiveKinds)) "
          + "and --invariant \(Self.names(invariantKinds)): remove it from one of the two lists")
    }
    if tasks.contains(.augpred) && augpredKinds.isEmpty {
      throw UsageError(
        "--invariant \(Self.names(invariantKinds)) leaves augpred no augmentation kind to "
          + "predict: remove a kind from --invariant or augpred from --tasks")
    }
  }

  /// Returns `kinds` as the command line lists them, such as `crop,flip`.
  static func names(_ kinds: [AugmentationKind]) -> String {
    kinds.map(\.rawValue).joined(separator: ",")
  }

  /// Parses a comma-separated list of augmentation kind names, such as `crop,flip`, into
  /// kinds in the order of application.
  ///
  /// - Parameters:
  ///   - value: the list, as the command line gives it.
  ///   - flag: the flag that the error messages name.
  /// - Throws: ``UsageError`` for an empty list, an unknown name or a name given twice.
  public static func augmentationKinds(_ value: String, flag: String) throws
    -> [AugmentationKind]
  {
    let valid = AugmentationKind.allCases.map(\.rawValue).joined(separator: ",")
    guard !value.isEmpty else {
      throw UsageError(
        "\(flag) is empty: pass at least one augmentation kind, such as \(flag) \(valid)")
    }
    var kinds: [AugmentationKind] = []
    for name in value.split(separator: ",", omittingEmptySubsequences: false).map(String.init) {
      guard let kind = AugmentationKind(rawValue: name) else {
        throw UsageError(
          "invalid augmentation kind '\(name)' in \(flag) \(value): pass a comma-separated "
            + "list of \(valid)")
      }
      guard !kinds.contains(kind) else {
        throw UsageError(
          "augmentation kind \(name) appears twice in \(flag) \(value): list each kind once")
      }
      kinds.append(kind)
    }
    return kinds.sorted { $0.labelIndex < $1.labelIndex }
  }
}
