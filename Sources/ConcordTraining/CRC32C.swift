/// CRC-32C (Castagnoli), the checksum of TFRecord files.
///
/// The reflected polynomial is 0x82F63B78, the initial value and the final XOR are all ones,
/// so that the checksum of the ASCII bytes `123456789` is 0xE3069283. The computation takes one table look-up per byte, which suffices for the few kilobytes of
/// metrics that a run writes per logging interval.
public enum CRC32C {
  private static let table: [UInt32] = (0..<256).map { index in
    var crc = UInt32(index)
    for _ in 0..<8 {
      crc = crc & 1 == 1 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1
    }
    return crc
  }

  /// Returns the CRC-32C of `bytes`.
  public static func checksum<Bytes: Sequence>(_ bytes: Bytes) -> UInt32
  where Bytes.Element == UInt8 {
    var crc: UInt32 = 0xFFFF_FFFF
    for byte in bytes {
      crc = table[Int((crc ^ UInt32(byte)) & 0xFF)] ^ (crc >> 8)
    }
    return crc ^ 0xFFFF_FFFF
  }

  /// Returns TensorFlow's masked form of a CRC-32C: rotated right by 15 bits plus 0xA282EAD8.
  ///
  /// TFRecord stores masked checksums, because computing the CRC of data that contains
  /// embedded CRCs is problematic.
  public static func masked(_ crc: UInt32) -> UInt32 {
    ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8
  }
}
