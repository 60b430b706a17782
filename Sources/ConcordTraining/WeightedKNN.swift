import ConcordTensors
import Foundation

/// The weighted k-nearest-neighbour classifier of Wu et al., "Unsupervised Feature Learning
/// via Non-Parametric Instance Discrimination" (CVPR 2018), a common evaluation of
/// self-supervised representations.
///
/// The memory bank and the queries contain L2-normalised rows, so a dot product is the cosine
/// similarity. Each query takes the `k` bank rows of largest similarity `s_i`, and each of them
/// votes for its label with weight `exp(s_i / T)`. The class with the largest vote sum wins,
/// and a tie goes to the lowest class index.
struct WeightedKNN {
  /// The training features, `[n, d]`, L2-normalised rows.
  let bank: Matrix
  /// The class of each bank row.
  let bankLabels: [Int32]
  /// The number of classes; every label is in `0..<classCount`.
  let classCount: Int
  /// The number of neighbours, at most `bank.rows`.
  let k: Int
  /// The temperature `T` of the vote weights `exp(s / T)`.
  let temperature: Float

  /// The query rows whose similarities one GEMM computes.
  static let blockRows = 256

  /// Creates a classifier; `k` above the bank's row count shrinks to it.
  init(bank: Matrix, bankLabels: [Int32], classCount: Int, k: Int, temperature: Float) {
    precondition(bankLabels.count == bank.rows, "one label per bank row")
    precondition(k >= 1 && temperature > 0, "k must be >= 1 and the temperature > 0")
    self.bank = bank
    self.bankLabels = bankLabels
    self.classCount = classCount
    self.k = min(k, bank.rows)
    self.temperature = temperature
  }

  /// Computes the vote sum of every class for every row of `query`, `[query.rows, classCount]`.
  ///
  /// `query` must contain L2-normalised rows. The similarities take one GEMM per block of
  /// ``blockRows`` queries, and the scratch memory is allocated once per call.
  func votes(_ query: Matrix) -> Matrix {
    let result = Matrix(rows: query.rows, columns: classCount)
    result.fill(0)
    guard bank.rows > 0 else { return result }
    let similarities = Matrix(rows: Self.blockRows, columns: bank.rows)
    var indices = [Int](repeating: 0, count: bank.rows)
    var start = 0
    while start < query.rows {
      let end = min(start + Self.blockRows, query.rows)
      let block = similarities.rows(0..<(end - start))
      BLAS.gemm(query.rows(start..<end), bank, transposeB: true, into: block)
      for r in 0..<block.rows {
        let row = UnsafeBufferPointer(block.row(r))
        let classVotes = result.row(start + r)
        indices.withUnsafeMutableBufferPointer { indices in
          // Starting from the identity keeps the summation order, and so the sums, the same
          // for a query whichever block or rank it falls in.
          for j in 0..<indices.count { indices[j] = j }
          Self.selectLargest(k, values: row, indices: indices)
          for n in 0..<k {
            let neighbour = indices[n]
            classVotes[Int(bankLabels[neighbour])] += expf(row[neighbour] / temperature)
          }
        }
      }
      start = end
    }
    return result
  }

  /// Returns the predicted class of every row of `query`: the argmax of ``votes(_:)``.
  func predict(_ query: Matrix) -> [Int32] {
    let votes = votes(query)
    return (0..<votes.rows).map { r in
      let row = votes.row(r)
      var best = 0
      for c in 1..<max(row.count, 1) where row[c] > row[best] { best = c }
      return Int32(best)
    }
  }

  /// Moves the indices of the `k` largest `values` to `indices[0..<k]`, in no particular order,
  /// by quickselect (Hoare's FIND) with a median-of-three pivot: expected linear time.
  ///
  /// `indices` must contain each of `0..<values.count` once. Equal values are ordered by index,
  /// the lower first, so the selected set is unique. Values must not be NaN.
  static func selectLargest(
    _ k: Int, values: UnsafeBufferPointer<Float>, indices: UnsafeMutableBufferPointer<Int>
  ) {
    precondition(indices.count == values.count, "one index per value")
    guard k > 0 && k < indices.count else { return }

    // `precedes(a, b)`: value a ranks before value b in descending order.
    func precedes(_ a: Int, _ b: Int) -> Bool {
      values[a] > values[b] || (values[a] == values[b] && a < b)
    }
    let target = k - 1
    var low = 0
    var high = indices.count - 1
    while low < high {
      let middle = low + (high - low) / 2
      if precedes(indices[middle], indices[low]) { indices.swapAt(middle, low) }
      if precedes(indices[high], indices[low]) { indices.swapAt(high, low) }
      if precedes(indices[high], indices[middle]) { indices.swapAt(high, middle) }
      // The median of the three is the pivot; Lomuto's partition wants it at `high`.
      indices.swapAt(middle, high)
      let pivot = indices[high]
      var store = low
      for i in low..<high where precedes(indices[i], pivot) {
        indices.swapAt(i, store)
        store += 1
      }
      indices.swapAt(store, high)
      if store == target { return }
      if store < target { low = store + 1 } else { high = store - 1 }
    }
  }
}
