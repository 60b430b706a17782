import ConcordTensors
import Testing

@testable import ConcordDistributed

/// With one rank, the allgather and the reduce-scatter of float blocks copy the block.
@Test func singleProcessBlockCollectivesCopy() throws {
  let communicator = SingleProcessCommunicator()
  let local = FloatBuffer([1.5, -2, 3])
  let all = FloatBuffer([0, 0, 0])
  try communicator.allgather(local.baseAddress, count: 3, into: all.baseAddress)
  #expect(all.array == [1.5, -2, 3])
  let sum = FloatBuffer([9, 8, 7])
  try communicator.reduceScatterSum(sum.baseAddress, into: local.baseAddress, count: 3)
  #expect(local.array == [9, 8, 7])
}
