/// A set of tasks that share one set of residual adapters beside the shared encoder.
///
/// SimCLR and BYOL train the features to ignore augmentations, while augmentation prediction
/// trains them to detect augmentations, so the two pull the shared features in opposite
/// directions. Giving each group its own adapters lets each group adjust the shared layers in
/// its own way, as MT-SLVR does for its invariant and sensitive tasks.
///
/// | group | tasks |
/// | --- | --- |
/// | ``invariant`` | simclr, byol |
/// | ``sensitive`` | augpred |
///
/// The supervised task belongs to no group: its head reads the features of every group
/// present, concatenated in the order of ``allCases``.
///
/// ### References
/// Heggan, Hospedales, Budgett and Yaghoobi, "MT-SLVR: Multi-Task Self-Supervised Learning
/// for Transformation In(Variant) Representations", Interspeech 2023.
public enum TaskGroup: String, CaseIterable, Sendable, Codable {
  /// Tasks whose features should not change under augmentations.
  case invariant
  /// Tasks whose features should tell which augmentations were applied.
  case sensitive

  /// Returns the groups that `task` belongs to; empty for a task that reads every group.
  public static func groups(of task: TaskKind) -> [TaskGroup] {
    switch task {
    case .supervised: []
    case .simclr, .byol: [.invariant]
    case .augpred: [.sensitive]
    }
  }

  /// Returns the groups with at least one task in `tasks`, in the order of ``allCases``.
  public static func present(in tasks: [TaskKind]) -> [TaskGroup] {
    allCases.filter { group in tasks.contains { groups(of: $0).contains(group) } }
  }
}

/// The way the encoder gives each task group features of its own.
public enum AdapterKind: String, CaseIterable, Sendable, Codable {
  /// No adapters: every task reads the same features.
  case none
  /// A low-rank residual adapter beside every encoder layer, for every task group
  /// (``ResidualAdapter``).
  case parallel
}
