/// The properties shared by every emulated link: one-way delay, rate and queue limit.
///
/// Each host has one uplink (host to switch) and one downlink (switch to host), both at
/// ``bitsPerSecond``. A packet from host A to host B waits for A's uplink, is serialised on it,
/// travels for ``delay``, waits for B's downlink and is serialised again, so the one-way
/// latency of an idle path is `delay + 2 * serialisationTime(bytes)`.
public struct LinkProfile: Sendable, Equatable {
  /// The one-way propagation delay in nanoseconds.
  public var delay: Int64
  /// The rate of every uplink and downlink in bits per second, or 0 for no rate limit.
  public var bitsPerSecond: Int64
  /// The bytes that may wait for serialisation at one port before new packets are dropped.
  ///
  /// The queue is drop-tail, and packets in propagation do not count. Ignored without a rate limit, because
  /// no queue forms then.
  public var queueLimit: Int64

  /// Creates a profile.
  ///
  /// - Parameters:
  ///   - delay: the one-way propagation delay in nanoseconds, at least 0.
  ///   - bitsPerSecond: the port rate in bits per second, or 0 for no limit.
  ///   - queueLimit: the bytes each port may queue, at least 1.
  public init(delay: Int64, bitsPerSecond: Int64, queueLimit: Int64) {
    precondition(delay >= 0, "delay \(delay) ns is negative")
    precondition(bitsPerSecond >= 0, "rate \(bitsPerSecond) bit/s is negative")
    precondition(queueLimit > 0, "queue limit \(queueLimit) bytes is not positive")
    self.delay = delay
    self.bitsPerSecond = bitsPerSecond
    self.queueLimit = queueLimit
  }

  /// Whether the ports serialise packets at a finite rate.
  public var hasRateLimit: Bool { bitsPerSecond > 0 }

  /// Returns the nanoseconds that `bytes` take on a port, rounded up so that a port never
  /// exceeds the rate, or 0 without a rate limit.
  public func serialisationTime(bytes: Int64) -> Int64 {
    guard hasRateLimit else { return 0 }
    // bytes * 8e9 stays below Int64.max for up to about 1.1e9 bytes, far above any queue.
    let bitNanoseconds = bytes * 8_000_000_000
    return (bitNanoseconds + bitsPerSecond - 1) / bitsPerSecond
  }

  /// The maximum queueing time a port accepts: the serialisation time of ``queueLimit``.
  public var maximumQueueingTime: Int64 { serialisationTime(bytes: queueLimit) }

  /// Schedules a packet of `bytes` that reaches a port at `arrival` behind the packets that
  /// keep the port busy until `busyUntil`, and returns when its serialisation ends.
  ///
  /// The packet starts at `max(arrival, busyUntil)` and `busyUntil` moves to its end. When it
  /// would wait and serialise for longer than ``maximumQueueingTime``, the port drops it
  /// (drop-tail): the function returns nil and leaves `busyUntil` unchanged.
  public func serialise(bytes: Int, arrivingAt arrival: Int64, busyUntil: inout Int64) -> Int64? {
    let serialisation = serialisationTime(bytes: Int64(bytes))
    let start = max(arrival, busyUntil)
    if hasRateLimit && start - arrival + serialisation > maximumQueueingTime { return nil }
    busyUntil = start + serialisation
    return busyUntil
  }
}

/// An invalid delay or rate text.
public struct LinkValueError: Error, Equatable, CustomStringConvertible {
  /// The one-line message, naming the value and the accepted form.
  public let description: String
}

extension LinkProfile {
  /// Parses a delay in milliseconds, such as `2` or `0.1`, into nanoseconds.
  ///
  /// - Throws: ``LinkValueError`` when `text` is not a non-negative decimal number, or is
  ///   longer than an hour.
  public static func parseDelay(_ text: String) throws -> Int64 {
    guard let milliseconds = parseDecimal(text), milliseconds <= 3_600_000 else {
      throw LinkValueError(
        description:
          "delay \(text) is invalid: give milliseconds from 0 to 3600000, such as 2 or 0.1")
    }
    return Int64((milliseconds * 1_000_000).rounded())
  }

  /// Parses a rate in tc's units, such as `1gbit` or `500mbit`, into bits per second.
  ///
  /// The units are `bit`, `kbit`, `mbit` and `gbit`, powers of 1000 as in tc.
  ///
  /// - Throws: ``LinkValueError`` when `text` has no known unit, or is below 1 bit/s or above
  ///   1 Tbit/s.
  public static func parseRate(_ text: String) throws -> Int64 {
    let units: [(suffix: String, scale: Double)] = [
      ("gbit", 1e9), ("mbit", 1e6), ("kbit", 1e3), ("bit", 1),
    ]
    for unit in units where text.hasSuffix(unit.suffix) {
      let number = String(text.dropLast(unit.suffix.count))
      if let value = parseDecimal(number) {
        let bits = (value * unit.scale).rounded()
        if bits >= 1 && bits <= 1e12 { return Int64(bits) }
      }
      break
    }
    throw LinkValueError(
      description:
        "rate \(text) is invalid: give a number and a unit (bit, kbit, mbit or gbit) from 1bit to 1000gbit, such as 1gbit"
    )
  }

  /// Parses digits with an optional fraction (`12`, `0.5`), rejecting signs and exponents.
  private static func parseDecimal(_ text: String) -> Double? {
    let parts = text.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count <= 2, parts.allSatisfy({ !$0.isEmpty && $0.allSatisfy(\.isASCII) }),
      parts.allSatisfy({ $0.allSatisfy(\.isNumber) })
    else { return nil }
    return Double(text)
  }
}
