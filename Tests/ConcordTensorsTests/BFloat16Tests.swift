import ConcordTensors
import Testing

/// Float32 bit patterns and the bfloat16 that rounding to nearest, ties to even, gives.
private let roundingCases: [(float: UInt32, bfloat16: UInt16, reason: String)] = [
  (0x3F80_0000, 0x3F80, "1.0 is exact"),
  (0x3F80_7FFF, 0x3F80, "below half a step rounds down"),
  (0x3F80_8000, 0x3F80, "a tie rounds to the even 0x3F80"),
  (0x3F80_8001, 0x3F81, "above half a step rounds up"),
  (0x3F81_8000, 0x3F82, "a tie above the odd 0x3F81 rounds up to even"),
  (0xBF81_8000, 0xBF82, "negative ties round by magnitude"),
  (0x3FFF_FFFF, 0x4000, "a carry moves into the exponent"),
  (0x7F7F_7FFF, 0x7F7F, "just below the largest bfloat16 plus half a step stays finite"),
  (0x7F7F_8000, 0x7F80, "a tie above the largest finite bfloat16 rounds to infinity"),
  (0x7F7F_FFFF, 0x7F80, "the largest float32 rounds to infinity"),
  (0xFF7F_FFFF, 0xFF80, "the lowest float32 rounds to minus infinity"),
  (0x7F80_0000, 0x7F80, "infinity stays infinity"),
  (0xFF80_0000, 0xFF80, "minus infinity stays minus infinity"),
  (0x0000_0000, 0x0000, "zero"),
  (0x8000_0000, 0x8000, "minus zero keeps its sign"),
  (0x0000_0001, 0x0000, "the smallest subnormal rounds to zero"),
  (0x0000_8000, 0x0000, "a subnormal tie rounds to the even zero"),
  (0x0000_8001, 0x0001, "above half the smallest bfloat16 subnormal rounds up to it"),
  (0x0001_8000, 0x0002, "a subnormal tie above an odd value rounds up"),
  (0x007F_FFFF, 0x0080, "the largest subnormal rounds up to the smallest normal"),
  (0x8000_8001, 0x8001, "negative subnormals round by magnitude"),
]

@Test func bfloat16RoundsToNearestEven() {
  for (float, expected, reason) in roundingCases {
    let rounded = BFloat16.round(Float(bitPattern: float))
    #expect(rounded == expected, "\(reason): 0x\(String(float, radix: 16))")
  }
}

@Test func bfloat16KeepsNaN() {
  let nans: [UInt32] = [
    0x7FC0_0000, 0x7F80_0001, 0x7F80_FFFF, 0xFFC0_0000, 0xFF80_0001, 0x7FFF_FFFF,
  ]
  for bits in nans {
    let rounded = BFloat16.round(Float(bitPattern: bits))
    #expect(BFloat16.widen(rounded).isNaN, "0x\(String(bits, radix: 16)) became 0x\(rounded)")
    #expect(rounded & 0x8000 == UInt16(bits >> 16) & 0x8000, "sign of 0x\(String(bits, radix: 16))")
  }
}

@Test func bfloat16WidensExactly() {
  for bits in UInt16.min...UInt16.max {
    let wide = BFloat16.widen(bits)
    #expect(wide.bitPattern == UInt32(bits) << 16)
    if !wide.isNaN {
      #expect(BFloat16.round(wide) == bits, "0x\(String(bits, radix: 16)) does not round-trip")
    }
  }
}

@Test func bfloat16ArraysMatchScalars() {
  // 37 values: not a multiple of any vector width, so loop tails run too.
  var floats = roundingCases.map { Float(bitPattern: $0.float) }
  floats += [
    .nan, -.infinity, 3.14159, -2.71828, .leastNormalMagnitude / 3, 65504, 1e38, -0.0, 0.1, 1e30,
  ]
  floats += [Float](repeating: 1.00390625, count: 37 - floats.count)
  var rounded = [UInt16](repeating: 0, count: floats.count)
  BFloat16.round(floats, into: &rounded, count: floats.count)
  var widened = [Float](repeating: 0, count: floats.count)
  BFloat16.widen(rounded, into: &widened, count: floats.count)
  for i in floats.indices {
    #expect(rounded[i] == BFloat16.round(floats[i]), "round at \(i): \(floats[i])")
    #expect(widened[i].bitPattern == BFloat16.widen(rounded[i]).bitPattern, "widen at \(i)")
  }
}

@Test func bfloat16SumAddsInFloat32() {
  let one = BFloat16.round(1)
  let step = BFloat16.round(0.00390625)  // 2^-8, half of bfloat16's step at 1.0
  let largest: UInt16 = 0x7F7F
  let cases: [(UInt16, UInt16, UInt16, String)] = [
    (one, one, BFloat16.round(2), "1 + 1"),
    (one, step, one, "1 + 2^-8 is a tie that rounds to the even 1"),
    (0x3F81, step, 0x3F82, "1.0078125 + 2^-8 is a tie that rounds up to even"),
    (largest, largest, 0x7F80, "overflow gives infinity"),
    (0x0001, 0x0001, 0x0002, "subnormals add exactly"),
    (one, 0xBF80, 0x0000, "1 - 1 is zero"),
  ]
  for (a, b, expected, reason) in cases {
    #expect(BFloat16.sum(a, b) == expected, "\(reason)")
    #expect(BFloat16.sum(b, a) == expected, "\(reason), commuted")
  }
  #expect(BFloat16.widen(BFloat16.sum(0x7FC0, one)).isNaN, "NaN + 1 stays NaN")
  #expect(BFloat16.widen(BFloat16.sum(0x7F80, 0xFF80)).isNaN, "infinity - infinity is NaN")
}

@Test func bfloat16AccumulateMatchesSum() {
  let addend: [UInt16] = (0..<45).map { UInt16(truncatingIfNeeded: $0 &* 7919 &+ 0x3F00) }
  let start: [UInt16] = (0..<45).map { UInt16(truncatingIfNeeded: $0 &* 104_729 &+ 0xBE80) }
  var accumulator = start
  BFloat16.accumulate(addend, into: &accumulator, count: addend.count)
  for i in addend.indices {
    let expected = BFloat16.sum(addend[i], start[i])
    #expect(accumulator[i] == expected, "index \(i)")
  }
}
