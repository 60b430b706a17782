import ConcordTensors

/// Computes the invariance loss, the mean over rows of `1 - cos(a_i, b_i)`, and its gradient
/// with respect to both inputs.
///
/// Row `i` of `a` is the representation of an augmented view, and row `i` of `b` that of its
/// invariance twin, the same view without the invariant augmentation kinds. Both sides get a
/// gradient, so the two representations move toward each other. Rows are L2-normalised as
/// `x / max(||x||, 1e-12)`, as in ``byolLoss(predictions:targets:gradient:)``:
///
/// ```
/// dL/da_i = -(1 / m) * (b_i/||b_i|| - c_i * a_i/||a_i||) / ||a_i||,   c_i = cos(a_i, b_i)
/// ```
///
/// and the same with `a` and `b` swapped. A row shorter than `1e-12` is divided by `1e-12`
/// instead and keeps its radial component, which keeps the loss and gradient finite. A zero
/// row gives loss 1 and a zero gradient to the other side.
///
/// - Parameters:
///   - a: The representations of the views, `[m, d]` with `m >= 1`, any row stride.
///   - b: The representations of the twins, `[m, d]`, any row stride.
///   - gradientA: `[m, d]`, any row stride, overwritten with `dL/da`.
///   - gradientB: `[m, d]`, any row stride, overwritten with `dL/db`.
/// - Returns: The mean loss, in `[0, 2]` up to rounding.
public func invarianceLoss(_ a: Matrix, _ b: Matrix, gradientA: Matrix, gradientB: Matrix)
  -> Float
{
  let m = a.rows
  let d = a.columns
  precondition(
    m >= 1 && d >= 1, "invarianceLoss needs at least one row and column, got [\(m), \(d)]")
  for (name, matrix) in [("b", b), ("gradientA", gradientA), ("gradientB", gradientB)] {
    precondition(
      matrix.rows == m && matrix.columns == d,
      "invarianceLoss: \(name) [\(matrix.rows), \(matrix.columns)] must match a [\(m), \(d)]")
  }

  var lossSum = 0.0
  for i in 0..<m {
    let aRow = a.base + i * a.rowStride
    let bRow = b.base + i * b.rowStride
    let (aa, bb, ab) = rowProducts(aRow, bRow, count: d)
    let aNorm = aa.squareRoot()
    let bNorm = bb.squareRoot()
    let aDivisor = max(aNorm, normalizationEpsilon)
    let bDivisor = max(bNorm, normalizationEpsilon)
    let cosine = ab / (aDivisor * bDivisor)
    lossSum += 1 - cosine

    // Only a row that was really normalised loses its radial component.
    let crossScale = Float(-1 / (Double(m) * aDivisor * bDivisor))
    let aRadial = aNorm > normalizationEpsilon ? cosine / (Double(m) * aDivisor * aDivisor) : 0
    let bRadial = bNorm > normalizationEpsilon ? cosine / (Double(m) * bDivisor * bDivisor) : 0
    let ga = gradientA.base + i * gradientA.rowStride
    let gb = gradientB.base + i * gradientB.rowStride
    for k in 0..<d {
      ga[k] = crossScale * bRow[k] + Float(aRadial) * aRow[k]
      gb[k] = crossScale * aRow[k] + Float(bRadial) * bRow[k]
    }
  }
  return Float(lossSum / Double(m))
}

/// Returns `x . x`, `y . y` and `x . y` of two rows of `count` values, summed in double
/// precision in index order.
func rowProducts(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count: Int) -> (
  xx: Double, yy: Double, xy: Double
) {
  var xx = 0.0
  var yy = 0.0
  var xy = 0.0
  for k in 0..<count {
    let a = Double(x[k])
    let b = Double(y[k])
    xx += a * a
    yy += b * b
    xy += a * b
  }
  return (xx, yy, xy)
}

/// The invariance task: no parameters, a loss that pulls the representation of each first
/// view toward that of its invariance twin, the same view with the invariant augmentation
/// kinds left out (``invarianceLoss(_:_:gradientA:gradientB:)``).
///
/// It reads every row of the batch: the first views are rows `0..<pairCount` and the twins
/// the last `pairCount` rows. Its gradient on the other rows is zero. MT-SLVR (Heggan et al.,
/// Interspeech 2023) learns invariance through contrastive tasks and sensitivity through
/// augmentation prediction. This task adds a direct invariance term for chosen kinds, so that
/// the kinds that augpred leaves out can be ignored on purpose rather than only not detected.
public final class InvarianceHead: TaskHead {
  public let task = TaskKind.invariance

  public init() {}

  public func lossAndGradients(features: Matrix, batch: TaskBatch, featuresGradient: Matrix)
    -> Float
  {
    let n = batch.pairCount
    let rows = features.rows
    precondition(
      batch.invariantRowCount == n && rows >= 2 * n + n,
      "the invariance task needs \(n) twin rows after the views, got \(batch.invariantRowCount)")
    let twins = (rows - n)..<rows
    featuresGradient.rows(n..<twins.lowerBound).fill(0)
    return invarianceLoss(
      features.rows(0..<n), features.rows(twins), gradientA: featuresGradient.rows(0..<n),
      gradientB: featuresGradient.rows(twins))
  }
}
