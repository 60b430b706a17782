/// A fixed-size block of 32-bit floats, zeroed at creation and aligned for SIMD.
///
/// Concord allocates its parameters, gradients and work space as a few buffers
/// sized once from the model and the batch, and then works on ``Matrix`` views
/// into them, so that the training step allocates nothing.
public final class FloatBuffer: @unchecked Sendable {
  /// The first element.
  public let baseAddress: UnsafeMutablePointer<Float>
  /// The number of elements.
  public let count: Int

  /// Allocates `count` floats, all zero.
  public init(count: Int) {
    precondition(count >= 0, "FloatBuffer count must be non-negative, got \(count)")
    self.count = count
    let raw = UnsafeMutableRawPointer.allocate(
      byteCount: max(count, 1) * MemoryLayout<Float>.stride, alignment: 64)
    baseAddress = raw.bindMemory(to: Float.self, capacity: max(count, 1))
    baseAddress.initialize(repeating: 0, count: max(count, 1))
  }

  /// Allocates a buffer holding a copy of `values`.
  public convenience init(_ values: [Float]) {
    self.init(count: values.count)
    values.withUnsafeBufferPointer { source in
      if let base = source.baseAddress { baseAddress.update(from: base, count: values.count) }
    }
  }

  deinit {
    UnsafeMutableRawPointer(baseAddress).deallocate()
  }

  /// The elements as a mutable buffer pointer.
  public var elements: UnsafeMutableBufferPointer<Float> {
    UnsafeMutableBufferPointer(start: baseAddress, count: count)
  }

  /// A copy of the elements as an array.
  public var array: [Float] { Array(elements) }

  /// Returns a row-major matrix view of `rows * columns` elements starting at `offset`.
  public func matrix(rows: Int, columns: Int, offset: Int = 0) -> Matrix {
    precondition(
      offset >= 0 && offset + rows * columns <= count,
      "matrix [\(rows), \(columns)] at offset \(offset) exceeds a buffer of \(count) floats")
    return Matrix(owner: self, base: baseAddress + offset, rows: rows, columns: columns)
  }

  /// Sets every element to `value`.
  public func fill(_ value: Float) {
    baseAddress.update(repeating: value, count: count)
  }
}

/// A row-major view of floats owned by a ``FloatBuffer``.
///
/// A view keeps its buffer alive. Copies of a view share elements: writing
/// through one is seen through the other, as with a pointer.
public struct Matrix: @unchecked Sendable {
  /// The buffer that owns the elements.
  public let owner: FloatBuffer
  /// The element at row 0, column 0.
  public let base: UnsafeMutablePointer<Float>
  /// The number of rows.
  public let rows: Int
  /// The number of columns.
  public let columns: Int
  /// The distance in elements between the starts of consecutive rows.
  public let rowStride: Int

  /// Creates a view; `rowStride` defaults to `columns` (a dense matrix).
  public init(
    owner: FloatBuffer, base: UnsafeMutablePointer<Float>, rows: Int, columns: Int,
    rowStride: Int? = nil
  ) {
    self.owner = owner
    self.base = base
    self.rows = rows
    self.columns = columns
    self.rowStride = rowStride ?? columns
  }

  /// Allocates a dense matrix of zeros.
  public init(rows: Int, columns: Int) {
    let buffer = FloatBuffer(count: rows * columns)
    self.init(owner: buffer, base: buffer.baseAddress, rows: rows, columns: columns)
  }

  /// Allocates a dense matrix holding `values`, given row by row.
  public init(rows: Int, columns: Int, values: [Float]) {
    precondition(
      values.count == rows * columns,
      "matrix [\(rows), \(columns)] needs \(rows * columns) values, got \(values.count)")
    let buffer = FloatBuffer(values)
    self.init(owner: buffer, base: buffer.baseAddress, rows: rows, columns: columns)
  }

  /// The number of elements, `rows * columns`.
  public var count: Int { rows * columns }

  /// Whether rows follow each other without gaps.
  public var isDense: Bool { rowStride == columns }

  /// The element at `row`, `column`.
  @inlinable
  public subscript(row: Int, column: Int) -> Float {
    get { base[row * rowStride + column] }
    nonmutating set { base[row * rowStride + column] = newValue }
  }

  /// Returns the elements of one row.
  public func row(_ index: Int) -> UnsafeMutableBufferPointer<Float> {
    UnsafeMutableBufferPointer(start: base + index * rowStride, count: columns)
  }

  /// The elements of a dense matrix, row after row.
  public var elements: UnsafeMutableBufferPointer<Float> {
    precondition(isDense, "elements needs a dense matrix; this one has row stride \(rowStride)")
    return UnsafeMutableBufferPointer(start: base, count: count)
  }

  /// Returns a view of the rows `range`.
  public func rows(_ range: Range<Int>) -> Matrix {
    precondition(range.lowerBound >= 0 && range.upperBound <= rows, "rows \(range) of \(rows)")
    return Matrix(
      owner: owner, base: base + range.lowerBound * rowStride, rows: range.count,
      columns: columns, rowStride: rowStride)
  }

  /// Returns a view of the columns `range` of every row.
  public func columns(_ range: Range<Int>) -> Matrix {
    precondition(
      range.lowerBound >= 0 && range.upperBound <= columns, "columns \(range) of \(columns)")
    return Matrix(
      owner: owner, base: base + range.lowerBound, rows: rows, columns: range.count,
      rowStride: rowStride)
  }

  /// The elements as an array, row after row.
  public var array: [Float] {
    var result = [Float]()
    result.reserveCapacity(count)
    for r in 0..<rows { result.append(contentsOf: row(r)) }
    return result
  }

  /// Sets every element to `value`.
  public func fill(_ value: Float) {
    for r in 0..<rows { row(r).update(repeating: value) }
  }

  /// Copies the elements of `source`, which must have the same shape.
  public func copy(from source: Matrix) {
    precondition(
      source.rows == rows && source.columns == columns,
      "copy from [\(source.rows), \(source.columns)] into [\(rows), \(columns)]")
    for r in 0..<rows {
      (base + r * rowStride).update(from: source.base + r * source.rowStride, count: columns)
    }
  }
}
