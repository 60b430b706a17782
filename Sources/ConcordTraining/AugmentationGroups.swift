import ConcordData

extension TrainingConfiguration {
  /// The augmentation kinds that the augpred head predicts, one logit each, in the order of
  /// application: ``sensitiveKinds``, or by default every kind.
  public var augpredKinds: [AugmentationKind] {
    sensitiveKinds ?? AugmentationKind.allCases
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
