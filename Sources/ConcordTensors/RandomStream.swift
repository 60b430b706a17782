import Foundation

/// A counter-based stream of random numbers: its output is a pure function of its key.
///
/// Every random draw in Concord comes from a stream keyed by the run's seed, a
/// purpose and counters such as the epoch, the step or the sample's place in the
/// global batch. A rank never draws from a stream that another rank would
/// draw differently, and a resumed run recreates the streams of an
/// uninterrupted one from the step alone.
///
/// The key is folded into a 64-bit state with the SplitMix64 finaliser
/// (Steele, Lea and Flood 2014), and the stream is SplitMix64 from that state.
public struct RandomStream: Sendable {
  /// The use of a stream, part of its key so that streams of different uses never overlap.
  public enum Purpose: UInt64, Sendable {
    case initialisation = 1
    case dataOrder = 2
    case augmentation = 3
    case taskOrder = 4
    case evaluation = 5
    case test = 6
  }

  private var state: UInt64
  private var spareNormal: Float?

  /// Creates the stream for `seed`, `purpose` and `counters`.
  public init(seed: UInt64, purpose: Purpose, counters: UInt64...) {
    self.init(seed: seed, purpose: purpose, counterList: counters)
  }

  /// Creates the stream for `seed`, `purpose` and a list of counters.
  public init(seed: UInt64, purpose: Purpose, counterList: [UInt64]) {
    var key = Self.mix(seed &+ 0x9E37_79B9_7F4A_7C15)
    key = Self.mix(key ^ (purpose.rawValue &* 0xD1B5_4A32_D192_ED03))
    for counter in counterList {
      key = Self.mix(key ^ Self.mix(counter &+ 0x8CB9_2BA7_2F3D_8DD7))
    }
    state = key
  }

  private static func mix(_ value: UInt64) -> UInt64 {
    var z = value
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }

  /// Returns the next 64 random bits.
  public mutating func next() -> UInt64 {
    state = state &+ 0x9E37_79B9_7F4A_7C15
    return Self.mix(state)
  }

  /// Returns a float uniform in `[0, 1)`.
  public mutating func uniform() -> Float {
    Float(next() >> 40) * (1.0 / Float(1 << 24))
  }

  /// Returns a float uniform in `range`.
  public mutating func uniform(in range: ClosedRange<Float>) -> Float {
    range.lowerBound + (range.upperBound - range.lowerBound) * uniform()
  }

  /// Returns true with probability `p`.
  public mutating func bernoulli(_ p: Float) -> Bool { uniform() < p }

  /// Returns an integer uniform in `0..<bound` (Lemire's multiply-shift, without rejection:
  /// the bias is below `bound / 2^64`).
  public mutating func integer(below bound: Int) -> Int {
    precondition(bound > 0, "integer(below:) needs a positive bound, got \(bound)")
    return Int(next().multipliedFullWidth(by: UInt64(bound)).high)
  }

  /// Returns an integer uniform in `range`.
  public mutating func integer(in range: ClosedRange<Int>) -> Int {
    range.lowerBound + integer(below: range.count)
  }

  /// Returns a standard normal sample, by Marsaglia's polar method.
  ///
  /// The method draws points uniformly in the unit disc and needs one logarithm and one
  /// square root per pair of samples, without trigonometric functions, which makes it
  /// several times faster than Box-Muller in Double (image noise draws one sample per pixel).
  public mutating func normal() -> Float {
    if let spare = spareNormal {
      spareNormal = nil
      return spare
    }
    while true {
      let u = 2 * uniform() - 1
      let v = 2 * uniform() - 1
      let s = u * u + v * v
      guard s > 0 && s < 1 else { continue }
      let factor = (-2 * logf(s) / s).squareRoot()
      spareNormal = v * factor
      return u * factor
    }
  }

  /// Returns a uniformly random permutation of `0..<count` (Fisher-Yates).
  public mutating func permutation(_ count: Int) -> [Int] {
    var order = Array(0..<count)
    shuffle(&order)
    return order
  }

  /// Shuffles `values` in place (Fisher-Yates).
  public mutating func shuffle<T>(_ values: inout [T]) {
    guard values.count > 1 else { return }
    for i in stride(from: values.count - 1, to: 0, by: -1) {
      let j = integer(below: i + 1)
      values.swapAt(i, j)
    }
  }
}
