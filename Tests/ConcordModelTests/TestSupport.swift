import ConcordTensors

/// A value that no loss writes, used to mark the padding around a view.
let sentinel: Float = -7777.25

/// Returns a dense `[rows, columns]` matrix of independent normal draws times `scale`.
func randomMatrix(rows: Int, columns: Int, seed: UInt64, scale: Float = 1) -> Matrix {
  var stream = RandomStream(seed: seed, purpose: .test, counters: UInt64(rows), UInt64(columns))
  return Matrix(
    rows: rows, columns: columns, values: (0..<rows * columns).map { _ in scale * stream.normal() })
}

/// A `[rows, columns]` view inside a larger buffer whose every other element is the sentinel.
///
/// The view starts one row and two columns into the buffer and its rows are five elements
/// apart more than its width, so padding lies before, after and between the rows.
struct PaddedMatrix {
  let buffer: FloatBuffer
  let view: Matrix
  private let offset: Int

  init(rows: Int, columns: Int) {
    let rowStride = columns + 5
    offset = rowStride + 2
    buffer = FloatBuffer(count: rowStride * (rows + 2))
    buffer.fill(sentinel)
    view = Matrix(
      owner: buffer, base: buffer.baseAddress + offset, rows: rows, columns: columns,
      rowStride: rowStride)
  }

  /// Returns whether `index` of the buffer lies inside the view.
  private func isInsideView(_ index: Int) -> Bool {
    let relative = index - offset
    guard relative >= 0 else { return false }
    let row = relative / view.rowStride
    let column = relative % view.rowStride
    return row < view.rows && column < view.columns
  }

  /// The number of padding elements that no longer hold the sentinel.
  var changedPaddingCount: Int {
    (0..<buffer.count).filter { !isInsideView($0) && buffer.baseAddress[$0] != sentinel }.count
  }

  /// The number of view elements that still hold the sentinel.
  var unwrittenElementCount: Int {
    view.array.filter { $0 == sentinel }.count
  }
}

/// Half the squared distance of `output` from `target`, summed in double precision; writes
/// its gradient `output - target` into `gradient` when given.
func squaredError(_ output: Matrix, _ target: Matrix, gradient: Matrix? = nil) -> Float {
  var sum = 0.0
  for r in 0..<output.rows {
    for c in 0..<output.columns {
      let difference = output[r, c] - target[r, c]
      sum += 0.5 * Double(difference) * Double(difference)
      gradient?[r, c] = difference
    }
  }
  return Float(sum)
}
