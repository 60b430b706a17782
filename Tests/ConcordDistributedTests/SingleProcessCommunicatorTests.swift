import ConcordTensors
import Testing

@testable import ConcordDistributed

@Test func singleProcessIsRankZeroOfOne() {
  let communicator: any Communicator = SingleProcessCommunicator()
  #expect(communicator.rank == 0)
  #expect(communicator.size == 1)
  #expect(communicator.isRoot)
}

@Test func singleProcessReductionsAreIdentities() throws {
  let communicator = SingleProcessCommunicator()
  let buffer = FloatBuffer([1.5, -2, 0, .greatestFiniteMagnitude])
  try communicator.allreduceSum(buffer)
  #expect(buffer.array == [1.5, -2, 0, .greatestFiniteMagnitude])
  try communicator.allreduceSum(buffer.baseAddress + 1, count: 2)
  #expect(buffer.array == [1.5, -2, 0, .greatestFiniteMagnitude])

  var values: [Double] = [0.1, 1e300, -3]
  try communicator.allreduceSum(&values)
  #expect(values == [0.1, 1e300, -3])

  #expect(try communicator.allreduceMax(-7) == -7)
  #expect(try communicator.allreduceMax(1) == 1)
  #expect(try communicator.allgather(42) == [42])
}

@Test func singleProcessBroadcastKeepsBytes() throws {
  let communicator = SingleProcessCommunicator()
  var bytes: [UInt8] = [3, 1, 4, 1, 5]
  try communicator.broadcast(&bytes, root: 0)
  #expect(bytes == [3, 1, 4, 1, 5])
  var empty: [UInt8] = []
  try communicator.broadcast(&empty, root: 0)
  #expect(empty.isEmpty)
  try communicator.barrier()
}

@Test func mpiErrorNamesCallAndSite() {
  let error = MPIError(
    call: "MPI_Allreduce", code: 3, message: "MPI_ERR_BUFFER: invalid buffer pointer", rank: 2,
    file: "ConcordDistributed/MPICommunicator.swift", line: 120)
  #expect(error.description.hasPrefix("rank 2: MPI_Allreduce failed with error 3"))
  #expect(error.description.contains("MPI_ERR_BUFFER: invalid buffer pointer"))
  #expect(error.description.contains("ConcordDistributed/MPICommunicator.swift:120"))
  #expect(!error.description.contains("\n"))
}

@Test func mpiCheckAcceptsSuccess() throws {
  try mpiCheck(0, "MPI_Barrier")
}

@Test func mpiCheckWithoutMPIStillThrows() throws {
  // No test starts MPI, so the error cannot carry MPI's text or a rank.
  let error = try #require(throws: MPIError.self) { try mpiCheck(3, "MPI_Test") }
  #expect(error.call == "MPI_Test")
  #expect(error.code == 3)
  #expect(error.rank == nil)
  #expect(error.description.hasPrefix("MPI: MPI_Test failed with error 3"))
  #expect(error.description.contains("SingleProcessCommunicatorTests.swift"))
}
