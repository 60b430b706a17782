import ConcordTensors

/// The place of one named tensor inside a flat buffer.
public struct TensorSlot: Sendable, Equatable {
  /// The name, such as `encoder.0.weight`; checkpoints store tensors under it.
  public let name: String
  /// The shape, outermost first; a weight is `[outputs, inputs]` and a bias `[outputs]`.
  public let shape: [Int]
  /// The index of the first element in the flat buffer.
  public let offset: Int

  /// The number of elements.
  public var count: Int { shape.reduce(1, *) }
}

/// An ordered list of named tensors laid out back to back in one flat buffer.
///
/// Concord keeps all trainable parameters in one buffer, so that Adam, the
/// BYOL target update and checkpoints each work on one contiguous range.
public struct ParameterLayout: Sendable {
  /// The tensors, in the order they are laid out.
  public private(set) var slots: [TensorSlot] = []
  /// The total number of elements.
  public private(set) var count = 0

  /// Creates an empty layout.
  public init() {}

  /// Appends a tensor and returns its slot.
  @discardableResult
  public mutating func append(_ name: String, shape: [Int]) -> TensorSlot {
    precondition(!slots.contains { $0.name == name }, "duplicate tensor name \(name)")
    let slot = TensorSlot(name: name, shape: shape, offset: count)
    slots.append(slot)
    count += slot.count
    return slot
  }

  /// Returns the slot named `name`, if any.
  public func slot(named name: String) -> TensorSlot? {
    slots.first { $0.name == name }
  }
}
