import ConcordTensors

/// A 64-bit FNV-1a hash of the bytes of a rank's training state.
///
/// Ranks must hold bit-identical parameters, optimizer moments, BYOL target and task
/// weights after every step. Comparing one hash per rank detects a difference without
/// sending the state itself.
struct StateChecksum {
  private(set) var value: UInt64 = 0xCBF2_9CE4_8422_2325

  mutating func add(_ buffer: FloatBuffer) {
    add(UnsafeRawBufferPointer(start: buffer.baseAddress, count: buffer.count * 4))
  }

  mutating func add(_ values: [Double]) {
    values.withUnsafeBytes { add($0) }
  }

  mutating func add(_ value: Int) {
    withUnsafeBytes(of: Int64(value).littleEndian) { add($0) }
  }

  mutating func add(_ bytes: UnsafeRawBufferPointer) {
    // Eight bytes at a time: FNV-1a over 64-bit words, which is as sensitive to a changed
    // bit and eight times faster than byte by byte on a 10 MB state.
    var hash = value
    let words = bytes.count / 8
    for i in 0..<words {
      hash = (hash ^ bytes.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)) &* 0x100_0000_01B3
    }
    for i in (8 * words)..<bytes.count {
      hash = (hash ^ UInt64(bytes[i])) &* 0x100_0000_01B3
    }
    value = hash
  }
}
