/// The behaviour toward augmentations that a task teaches the shared encoder.
///
/// MT-SLVR (Heggan et al., Interspeech 2023) splits self-supervised tasks into those that make
/// the representation invariant to augmentations and those that make it sensitive to them.
/// Code that treats the two groups differently, such as per-group adapters, reads
/// ``TaskKind/groups``.
public enum TaskGroup: String, CaseIterable, Sendable {
  /// Tasks whose loss is lower when the representation ignores the augmentations.
  case invariant
  /// Tasks whose loss is lower when the representation records the augmentations.
  case sensitive
}

extension TaskKind {
  /// The groups of this task, as this table lists them.
  ///
  /// | task | groups |
  /// | --- | --- |
  /// | supervised | invariant, sensitive |
  /// | simclr | invariant |
  /// | byol | invariant |
  /// | augpred | sensitive |
  /// | invariance | invariant |
  ///
  /// The supervised task belongs to both, because class labels neither require nor forbid
  /// either behaviour.
  public var groups: [TaskGroup] {
    switch self {
    case .supervised: return [.invariant, .sensitive]
    case .simclr, .byol, .invariance: return [.invariant]
    case .augpred: return [.sensitive]
    }
  }
}
