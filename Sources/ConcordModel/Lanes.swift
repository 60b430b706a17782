/// Eight floats in one vector register, for the channel loops of the convolutional encoder.
///
/// Channel counts are usually multiples of 8; every loop handles the remainder one float at
/// a time.
typealias Lanes = SIMD8<Float>

extension UnsafePointer where Pointee == Float {
  /// Loads the eight floats from `self + offset`, at any alignment.
  @inline(__always)
  func lanes(_ offset: Int) -> Lanes {
    UnsafeRawPointer(self + offset).loadUnaligned(as: Lanes.self)
  }
}

extension UnsafeMutablePointer where Pointee == Float {
  /// Loads the eight floats from `self + offset`, at any alignment.
  @inline(__always)
  func lanes(_ offset: Int) -> Lanes {
    UnsafeRawPointer(self + offset).loadUnaligned(as: Lanes.self)
  }

  /// Stores `value` at `self + offset`, at any alignment.
  @inline(__always)
  func setLanes(_ offset: Int, _ value: Lanes) {
    UnsafeMutableRawPointer(self + offset).storeBytes(of: value, as: Lanes.self)
  }
}
