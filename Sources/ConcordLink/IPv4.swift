/// IPv4 addresses as 32-bit integers in host byte order (198.18.1.2 is 0xC612_0102).
public enum IPv4 {
  /// Parses dotted-quad text such as `198.18.1.2`, or returns nil when it is not one.
  public static func parse(_ text: String) -> UInt32? {
    let parts = text.split(separator: ".", omittingEmptySubsequences: false)
    guard parts.count == 4 else { return nil }
    var address: UInt32 = 0
    for part in parts {
      guard (1...3).contains(part.count), part.allSatisfy({ $0.isASCII && $0.isNumber }),
        let octet = UInt32(part), octet <= 255
      else { return nil }
      address = address << 8 | octet
    }
    return address
  }

  /// Formats `address` as dotted-quad text.
  public static func format(_ address: UInt32) -> String {
    [24, 16, 8, 0].map { String(address >> UInt32($0) & 0xFF) }.joined(separator: ".")
  }

  /// Returns the destination address of an IPv4 packet, or nil when `packet` is shorter than an
  /// IPv4 header or has another IP version.
  public static func destination(of packet: UnsafeRawBufferPointer) -> UInt32? {
    // RFC 791: the version is the high nibble of byte 0, the destination bytes 16 to 19.
    guard packet.count >= 20, packet[0] >> 4 == 4 else { return nil }
    return UInt32(packet[16]) << 24 | UInt32(packet[17]) << 16 | UInt32(packet[18]) << 8
      | UInt32(packet[19])
  }
}
