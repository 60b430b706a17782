import ConcordBalancing
import Testing

@Test func taskOrderIsDeterministic() {
  for step in [0, 1, 17, 100_000] {
    let first = PCGrad.taskOrder(seed: 42, step: step, taskCount: 4)
    let second = PCGrad.taskOrder(seed: 42, step: step, taskCount: 4)
    #expect(first == second, "step \(step)")
  }
}

@Test func taskOrderChangesAcrossSteps() {
  let orders = (0..<10).map { PCGrad.taskOrder(seed: 42, step: $0, taskCount: 4) }
  let distinct = Set(orders.map { $0.flatMap { $0 } })
  #expect(distinct.count > 5)
}

@Test func taskOrderChangesAcrossSeeds() {
  let orders = (0..<10).map { PCGrad.taskOrder(seed: UInt64($0), step: 3, taskCount: 4) }
  let distinct = Set(orders.map { $0.flatMap { $0 } })
  #expect(distinct.count > 5)
}

@Test(arguments: 1...6)
func taskOrderRowsPermuteOtherTasks(taskCount: Int) {
  for step in 0..<20 {
    let order = PCGrad.taskOrder(seed: 9, step: step, taskCount: taskCount)
    #expect(order.count == taskCount)
    for (i, row) in order.enumerated() {
      let others = (0..<taskCount).filter { $0 != i }
      #expect(row.sorted() == others, "step \(step), row \(i): \(row)")
    }
  }
}

@Test func taskOrderRowsAreShuffled() {
  // Row 0 of four tasks can take 6 orders, and 50 shuffled steps draw every one of them.
  let firstRows = Set((0..<50).map { PCGrad.taskOrder(seed: 5, step: $0, taskCount: 4)[0] })
  #expect(firstRows.count == 6)
}

@Test func writeTaskOrderMatchesTaskOrder() {
  var order = [[Int]](repeating: [], count: 5)
  for step in 0..<10 {
    PCGrad.writeTaskOrder(into: &order, seed: 11, step: step)
    #expect(order == PCGrad.taskOrder(seed: 11, step: step, taskCount: 5))
  }
}
