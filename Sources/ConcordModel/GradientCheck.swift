import ConcordTensors
import Foundation

/// A central-difference check of an analytic gradient against the loss it belongs to.
///
/// For each checked coordinate `x_c`, the numeric derivative is
/// `(L(x_c + h) - L(x_c - h)) / ((x_c + h) - (x_c - h))`, with the denominator taken from
/// the perturbed values as Float stores them, and the error is
///
/// ```
/// |a_c - n_c| / max(|a_c|, |n_c|, floor)
/// ```
///
/// where `a_c` is the analytic and `n_c` the numeric derivative. The check reports the worst
/// coordinate. Up to ``maximumCoordinateCount`` coordinates are checked: all of them when
/// there are that many or fewer, otherwise a sample drawn from a stream keyed by ``seed``, so
/// a failing check repeats exactly.
///
/// Choosing the step and the floor for Float: a loss returned as Float carries a rounding
/// error of a few units in its last place, about `1e-7 * |L|`, and more when the loss itself
/// computes in Float. The central difference divides that error by `2h`, so the numeric
/// derivative has an absolute noise of about `1e-7 * |L| / h`. Its truncation error grows as
/// `h^2 * |L'''| / 6`. For a loss and derivatives of order 1, `h = 1e-2` gives a noise near
/// 1e-5 and a truncation error near 2e-5, while `h = 1e-3` trades a truncation error near
/// 2e-7 for a noise near 1e-4. Either way, a tolerance around 1e-2 on the reported error
/// separates a correct gradient of order 1e-2 or more from a wrong one.
///
/// The `floor` keeps coordinates whose true derivative is near zero from dividing that noise
/// by almost nothing. It must exceed the noise divided by the tolerance, so by the estimate
/// above the default of 1e-2 suits `h = 1e-2` and losses up to about 10. It should also sit
/// below the typical magnitude of the gradient, so that a wrong gradient still shows.
///
/// When the gradient is much smaller than `1e-7 * |L| / h`, a Float loss cannot resolve it:
/// subtract a known constant from the loss in Double before rounding, or check against a
/// Double formula. Functions with kinks (ReLU) give wrong numeric derivatives for
/// coordinates within `h` of a kink, so keep inputs away from kinks.
public struct GradientCheck: Sendable {
  /// The perturbation `h` added to and subtracted from each checked coordinate.
  public var step: Float
  /// The smallest denominator of the relative error.
  public var floor: Float
  /// The largest number of coordinates checked.
  ///
  /// A larger input is sampled down to this many.
  public var maximumCoordinateCount: Int
  /// The seed of the stream that samples coordinates.
  public var seed: UInt64

  /// Creates a check.
  ///
  /// - Parameters:
  ///   - step: The positive perturbation `h` (default 1e-2).
  ///   - floor: The positive smallest denominator of the relative error (default 1e-2).
  ///   - maximumCoordinateCount: The number of coordinates checked at most (default 256).
  ///   - seed: The seed of the coordinate sample (default 0).
  public init(
    step: Float = 1e-2, floor: Float = 1e-2, maximumCoordinateCount: Int = 256, seed: UInt64 = 0
  ) {
    precondition(step > 0, "GradientCheck step must be positive, got \(step)")
    precondition(floor > 0, "GradientCheck floor must be positive, got \(floor)")
    precondition(
      maximumCoordinateCount >= 1,
      "GradientCheck maximumCoordinateCount must be at least 1, got \(maximumCoordinateCount)")
    self.step = step
    self.floor = floor
    self.maximumCoordinateCount = maximumCoordinateCount
    self.seed = seed
  }

  /// The outcome of a check: the worst relative error and where it occurred.
  public struct Result: Sendable, CustomStringConvertible {
    /// The largest relative error over the checked coordinates.
    public var maximumRelativeError: Float
    /// The index of the worst coordinate, `row * columns + column` for a matrix.
    public var worstCoordinate: Int
    /// The analytic derivative at the worst coordinate.
    public var analyticDerivative: Float
    /// The numeric derivative at the worst coordinate.
    public var numericDerivative: Float
    /// The number of coordinates checked.
    public var checkedCount: Int

    /// One line with the error, the coordinate and both derivatives.
    public var description: String {
      "maximum relative error \(maximumRelativeError) at coordinate \(worstCoordinate) "
        + "(analytic \(analyticDerivative), numeric \(numericDerivative), "
        + "\(checkedCount) coordinates checked)"
    }
  }

  /// Compares `analyticGradient` with central differences of `loss` over `values`.
  ///
  /// `loss` must read its input from `values` and must not change it. Each checked
  /// coordinate is restored to its exact original value afterwards, also when `loss` throws.
  ///
  /// - Parameters:
  ///   - values: The point at which the gradient was computed, perturbed in place.
  ///   - analyticGradient: The gradient to check, one derivative per element of `values`.
  ///   - loss: Evaluates the loss at the current contents of `values`.
  /// - Returns: The worst relative error and where it occurred.
  public func compare(
    values: UnsafeMutableBufferPointer<Float>, analyticGradient: UnsafeBufferPointer<Float>,
    loss: () throws -> Float
  ) rethrows -> Result {
    precondition(
      values.count == analyticGradient.count,
      "GradientCheck: \(values.count) values but \(analyticGradient.count) derivatives")
    guard let base = values.baseAddress else {
      return Result(
        maximumRelativeError: 0, worstCoordinate: 0, analyticDerivative: 0,
        numericDerivative: 0, checkedCount: 0)
    }
    return try compare(
      count: values.count, coordinate: { base + $0 }, analytic: { analyticGradient[$0] },
      loss: loss)
  }

  /// Compares `analyticGradient` with central differences of `loss` over the elements of
  /// `input`.
  ///
  /// `loss` must read its input through `input` (or another view of the same elements) and
  /// must not change it. Each checked element is restored to its exact original value.
  ///
  /// - Parameters:
  ///   - input: The point at which the gradient was computed, `[rows, columns]`, any row
  ///     stride, perturbed in place.
  ///   - analyticGradient: The gradient to check, the same shape as `input`, any row stride.
  ///   - loss: Evaluates the loss at the current contents of `input`.
  /// - Returns: The worst relative error and where it occurred, with coordinates numbered
  ///   `row * columns + column`.
  public func compare(input: Matrix, analyticGradient: Matrix, loss: () throws -> Float)
    rethrows -> Result
  {
    precondition(
      input.rows == analyticGradient.rows && input.columns == analyticGradient.columns,
      "GradientCheck: input [\(input.rows), \(input.columns)] but gradient "
        + "[\(analyticGradient.rows), \(analyticGradient.columns)]")
    let columns = input.columns
    return try compare(
      count: input.count,
      coordinate: { input.base + ($0 / columns) * input.rowStride + $0 % columns },
      analytic: { analyticGradient[$0 / columns, $0 % columns] }, loss: loss)
  }

  private func compare(
    count: Int, coordinate: (Int) -> UnsafeMutablePointer<Float>, analytic: (Int) -> Float,
    loss: () throws -> Float
  ) rethrows -> Result {
    var result = Result(
      maximumRelativeError: 0, worstCoordinate: 0, analyticDerivative: 0, numericDerivative: 0,
      checkedCount: 0)
    var worst = -1.0
    for index in coordinatesToCheck(count: count) {
      let x = coordinate(index)
      let original = x.pointee
      let plus = original + step
      let minus = original - step
      defer { x.pointee = original }
      x.pointee = plus
      let lossPlus = Double(try loss())
      x.pointee = minus
      let lossMinus = Double(try loss())

      let numeric = (lossPlus - lossMinus) / (Double(plus) - Double(minus))
      let analyticValue = Double(analytic(index))
      let denominator = max(abs(analyticValue), abs(numeric), Double(floor))
      let error = abs(analyticValue - numeric) / denominator
      // A NaN error is the worst possible and stays reported: it must not pass silently.
      if !worst.isNaN && (error.isNaN || error > worst) {
        worst = error
        result.maximumRelativeError = Float(error)
        result.worstCoordinate = index
        result.analyticDerivative = Float(analyticValue)
        result.numericDerivative = Float(numeric)
      }
      result.checkedCount += 1
    }
    return result
  }

  private func coordinatesToCheck(count: Int) -> [Int] {
    if count <= maximumCoordinateCount { return Array(0..<count) }
    var stream = RandomStream(seed: seed, purpose: .test, counters: UInt64(count))
    return Array(stream.permutation(count).prefix(maximumCoordinateCount)).sorted()
  }
}
