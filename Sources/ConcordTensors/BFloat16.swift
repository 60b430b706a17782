/// Conversions between `Float` and bfloat16, stored as its bit pattern in a `UInt16`.
///
/// bfloat16 keeps float32's sign bit and 8-bit exponent and the top 7 bits of its 23-bit
/// significand, so a bfloat16 is the upper half of a float32 and widening appends 16 zero
/// bits. The two formats share their range, infinities and subnormals. Rounding is to nearest,
/// ties to even, so a float32 at least half a bfloat16 step above the largest finite bfloat16
/// rounds to infinity.
///
/// The array functions are plain loops over the scalar ones, which the compiler vectorizes:
/// a version written with `SIMD8` ran about 20 times slower (Swift 6.3.1, one rank of
/// `concord bench allreduce`).
public enum BFloat16 {
  /// Returns the bfloat16 nearest to `value`, ties to even.
  ///
  /// A NaN stays a NaN with the same sign: its significand keeps its top bits, and the quiet
  /// bit is set so that no NaN truncates to an infinity.
  @inlinable
  public static func round(_ value: Float) -> UInt16 {
    round(bits: value.bitPattern)
  }

  /// Returns the float32 equal to the bfloat16 `bits`.
  @inlinable
  public static func widen(_ bits: UInt16) -> Float {
    Float(bitPattern: UInt32(bits) << 16)
  }

  /// Returns the bfloat16 nearest to the float32 sum of the bfloat16 values `a` and `b`.
  @inlinable
  public static func sum(_ a: UInt16, _ b: UInt16) -> UInt16 {
    round(widen(a) + widen(b))
  }

  /// Rounds `count` floats from `source` to bfloat16 into `destination`.
  public static func round(
    _ source: UnsafePointer<Float>, into destination: UnsafeMutablePointer<UInt16>, count: Int
  ) {
    for i in 0..<count { destination[i] = round(source[i]) }
  }

  /// Widens `count` bfloat16 values from `source` to float32 into `destination`.
  public static func widen(
    _ source: UnsafePointer<UInt16>, into destination: UnsafeMutablePointer<Float>, count: Int
  ) {
    for i in 0..<count { destination[i] = widen(source[i]) }
  }

  /// Replaces each of the `count` bfloat16 values of `accumulator` with ``sum(_:_:)`` of it
  /// and the value of `addend` at the same index: the reduction of a bfloat16 allreduce.
  public static func accumulate(
    _ addend: UnsafePointer<UInt16>, into accumulator: UnsafeMutablePointer<UInt16>, count: Int
  ) {
    for i in 0..<count { accumulator[i] = sum(addend[i], accumulator[i]) }
  }

  /// Returns the bfloat16 nearest to the float32 with bit pattern `bits`.
  ///
  /// Written without branches, so that loops over it vectorize.
  @inlinable
  @inline(__always)
  static func round(bits: UInt32) -> UInt16 {
    // Adding 0x7FFF carries into the kept half exactly when the dropped half exceeds one
    // half. Adding the kept half's lowest bit as well breaks a tie toward an even result.
    let rounded = (bits &+ 0x7FFF &+ ((bits >> 16) & 1)) >> 16
    let quietNaN = (bits >> 16) | 0x0040
    let isNaN = bits & 0x7FFF_FFFF > 0x7F80_0000
    return UInt16(truncatingIfNeeded: isNaN ? quietNaN : rounded)
  }
}
