/// The way the encoder gives each task group features of its own.
public enum AdapterKind: String, CaseIterable, Sendable, Codable {
  /// No adapters: every task reads the same features.
  case none
  /// A low-rank residual adapter beside every encoder layer, for every task group
  /// (``ResidualAdapter``, ``AdaptedEncoder``).
  case parallel
}

extension TaskGroup {
  /// Returns the groups of the tasks of `tasks` (see ``TaskKind/groups``), in the order of
  /// ``allCases``: the groups that get adapters.
  public static func present(in tasks: [TaskKind]) -> [TaskGroup] {
    allCases.filter { group in tasks.contains { $0.groups.contains(group) } }
  }
}
