import COpenBLAS

/// The shape of one matrix product `op(a) [m, k] x op(b) [k, n]`.
public struct GEMMShape: Sendable, Hashable {
  /// Rows of the result.
  public var m: Int
  /// Columns of the result.
  public var n: Int
  /// The shared dimension.
  public var k: Int
  /// Whether `a` is transposed.
  public var transposeA: Bool
  /// Whether `b` is transposed.
  public var transposeB: Bool

  /// Floating-point operations of the product, `2 m n k`.
  public var flops: Int { 2 * m * n * k }
}

/// Matrix products and vector operations through OpenBLAS (CBLAS, row-major).
public enum BLAS {
  /// When set, every ``gemm(_:transposeA:_:transposeB:into:alpha:beta:)`` appends its shape
  /// here; benchmarks use it to time `cblas_sgemm` alone on the shapes of a training step.
  ///
  /// Only for single-threaded use: nothing synchronises it.
  nonisolated(unsafe) public static var recordedShapes: [GEMMShape]? = nil

  /// The number of threads OpenBLAS uses for one call.
  public static var threadCount: Int {
    get { Int(openblas_get_num_threads()) }
    set { openblas_set_num_threads(Int32(newValue)) }
  }

  /// Computes `c = alpha * op(a) * op(b) + beta * c`, where `op(x)` is `x` or its transpose.
  ///
  /// - Parameters:
  ///   - a: `[m, k]`, or `[k, m]` when `transposeA`.
  ///   - b: `[k, n]`, or `[n, k]` when `transposeB`.
  ///   - c: `[m, n]`; with `beta == 0` its old contents are ignored.
  public static func gemm(
    _ a: Matrix, transposeA: Bool = false, _ b: Matrix, transposeB: Bool = false,
    into c: Matrix, alpha: Float = 1, beta: Float = 0
  ) {
    let m = transposeA ? a.columns : a.rows
    let k = transposeA ? a.rows : a.columns
    let kb = transposeB ? b.columns : b.rows
    let n = transposeB ? b.rows : b.columns
    precondition(
      k == kb && c.rows == m && c.columns == n,
      "gemm shapes: op(a) [\(m), \(k)] x op(b) [\(kb), \(n)] into c [\(c.rows), \(c.columns)]")
    if m == 0 || n == 0 { return }
    recordedShapes?.append(
      GEMMShape(m: m, n: n, k: k, transposeA: transposeA, transposeB: transposeB))
    cblas_sgemm(
      CblasRowMajor, transposeA ? CblasTrans : CblasNoTrans,
      transposeB ? CblasTrans : CblasNoTrans, Int32(m), Int32(n), Int32(k), alpha,
      a.base, Int32(max(a.rowStride, 1)), b.base, Int32(max(b.rowStride, 1)), beta, c.base,
      Int32(max(c.rowStride, 1)))
  }

  /// Computes `y = alpha * op(a) * x + beta * y` for dense vectors `x` and `y`.
  public static func gemv(
    _ a: Matrix, transpose: Bool = false, _ x: UnsafePointer<Float>,
    into y: UnsafeMutablePointer<Float>, alpha: Float = 1, beta: Float = 0
  ) {
    cblas_sgemv(
      CblasRowMajor, transpose ? CblasTrans : CblasNoTrans, Int32(a.rows), Int32(a.columns),
      alpha, a.base, Int32(max(a.rowStride, 1)), x, 1, beta, y, 1)
  }

  /// Returns the dot product of `count` elements of `x` and `y`.
  public static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count: Int)
    -> Float
  {
    cblas_sdot(Int32(count), x, 1, y, 1)
  }

  /// Computes `y += alpha * x` over `count` elements.
  public static func axpy(
    _ alpha: Float, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, count: Int
  ) {
    cblas_saxpy(Int32(count), alpha, x, 1, y, 1)
  }

  /// Computes `x *= alpha` over `count` elements.
  public static func scale(_ x: UnsafeMutablePointer<Float>, by alpha: Float, count: Int) {
    cblas_sscal(Int32(count), alpha, x, 1)
  }
}
