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

extension Linear {
  /// Creates the layer over the tensors `prefix.weight` and `prefix.bias` of `layout`, as
  /// views into `buffer`.
  public init(named prefix: String, in layout: ParameterLayout, buffer: FloatBuffer) {
    guard let weight = layout.slot(named: prefix + ".weight"),
      let bias = layout.slot(named: prefix + ".bias")
    else { preconditionFailure("the layout has no layer \(prefix)") }
    self.init(
      weight: buffer.matrix(rows: weight.shape[0], columns: weight.shape[1], offset: weight.offset),
      bias: buffer.matrix(rows: 1, columns: bias.shape[0], offset: bias.offset))
  }
}
