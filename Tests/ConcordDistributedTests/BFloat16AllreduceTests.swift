import ConcordTensors
import Testing

@testable import ConcordDistributed

/// With one rank the bfloat16 allreduce leaves each value rounded to bfloat16.
@Test func singleProcessBFloat16AllreduceRounds() throws {
  let communicator = SingleProcessCommunicator()
  let values: [Float] = [
    1, 1.00390625, 1.01171875, -3.14159, .infinity, .leastNormalMagnitude / 5, 0,
  ]
  let buffer = FloatBuffer(values)
  let staging = UnsafeMutablePointer<UInt16>.allocate(capacity: values.count)
  defer { staging.deallocate() }
  try communicator.allreduceSumBFloat16(buffer.baseAddress, count: values.count, staging: staging)
  for (index, value) in values.enumerated() {
    let expected = BFloat16.widen(BFloat16.round(value))
    #expect(buffer.array[index] == expected, "\(value) became \(buffer.array[index])")
  }
  #expect(buffer.array[1] == 1, "the tie 1 + 2^-8 rounds to the even 1")
  #expect(buffer.array[2] == 1.015625, "the tie 1.0078125 + 2^-8 rounds up to even")
}

@Test func singleProcessMaximumOfArrayIsIdentity() throws {
  let communicator = SingleProcessCommunicator()
  var values: [Double] = [0.5, -2, 1e300]
  try communicator.allreduceMax(&values)
  #expect(values == [0.5, -2, 1e300])
}
