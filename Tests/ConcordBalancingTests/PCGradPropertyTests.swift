import ConcordTensors
import Testing

@testable import ConcordBalancing

/// With two tasks, PCGrad projects each gradient onto the normal plane of the other when they
/// conflict, so the projected gradient no longer conflicts with the other task's gradient:
/// `p_0 . g_1 >= 0` and `p_1 . g_0 >= 0`.
///
/// The direction `p_0 + p_1` then agrees with both.
@Test(arguments: 0..<50)
func twoTaskProjectionRemovesConflict(seed: Int) {
  var stream = RandomStream(seed: UInt64(seed), purpose: .test, counters: 71)
  let dimension = 2 + seed % 30
  var gradients = randomGradients(&stream, taskCount: 2, dimension: dimension)
  // Make the pair conflict: flip the second gradient if the two agree.
  if dot(gradients[0], gradients[1]) > 0 { gradients[1] = gradients[1].map { -$0 } }

  var pcgrad = PCGrad(taskCount: 2)
  let result = pcgrad.balance(
    BalancingInput(gradients: gradients, taskOrder: [[1], [0]]))
  #expect(result.projectionCount == 2)

  // For two conflicting tasks the direction must be p_0 + p_1 with
  // p_i = g_i - (g_i . g_j / |g_j|^2) g_j; check that, then the property of each p_i.
  let d = direction(coefficients: result.coefficients, gradients: gradients)
  let g0 = gradients[0]
  let g1 = gradients[1]
  let p0 = zip(g0, g1).map { $0 - dot(g0, g1) / dot(g1, g1) * $1 }
  let p1 = zip(g1, g0).map { $0 - dot(g1, g0) / dot(g0, g0) * $1 }
  let scale = dot(g0, g0) + dot(g1, g1)
  #expect(relativeError(d, zip(p0, p1).map(+)) < 1e-9)
  #expect(dot(p0, g1) >= -1e-9 * scale)
  #expect(dot(p1, g0) >= -1e-9 * scale)
  #expect(dot(d, g0) >= -1e-9 * scale)
  #expect(dot(d, g1) >= -1e-9 * scale)
}
