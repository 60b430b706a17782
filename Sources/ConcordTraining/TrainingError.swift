/// A failure that ends a run, with a one-line description that names the value at fault
/// and what to do instead.
public struct TrainingError: Error, CustomStringConvertible {
  /// The message, one line.
  public let description: String
  /// Whether every rank raises this error at the same point, from the same values (for
  /// example a check on reduced losses), so that the ranks can end together.
  public let isCollective: Bool

  /// Creates an error with a one-line message.
  public init(_ description: String, isCollective: Bool = false) {
    self.description = description
    self.isCollective = isCollective
  }
}

/// A bad flag or value: the message names it and what to pass instead.
public struct UsageError: Error, CustomStringConvertible {
  /// The message, one line.
  public let description: String

  /// Creates an error with a one-line message.
  public init(_ description: String) {
    self.description = description
  }
}
