import Testing

@testable import ConcordTensors

@Test func gemmMatchesNaiveProduct() {
  var stream = RandomStream(seed: 1, purpose: .test)
  let a = Matrix(rows: 5, columns: 7, values: (0..<35).map { _ in stream.normal() })
  let b = Matrix(rows: 7, columns: 3, values: (0..<21).map { _ in stream.normal() })
  let c = Matrix(rows: 5, columns: 3)
  BLAS.gemm(a, b, into: c)
  for i in 0..<5 {
    for j in 0..<3 {
      var expected: Float = 0
      for k in 0..<7 { expected += a[i, k] * b[k, j] }
      #expect(abs(c[i, j] - expected) < 1e-5)
    }
  }
}

@Test func gemmTransposesStridedViews() {
  var stream = RandomStream(seed: 2, purpose: .test)
  let wide = Matrix(rows: 4, columns: 10, values: (0..<40).map { _ in stream.normal() })
  let a = wide.columns(2..<6)  // [4, 4], row stride 10
  let b = Matrix(rows: 4, columns: 2, values: (0..<8).map { _ in stream.normal() })
  let c = Matrix(rows: 4, columns: 2)
  BLAS.gemm(a, transposeA: true, b, into: c)
  for i in 0..<4 {
    for j in 0..<2 {
      var expected: Float = 0
      for k in 0..<4 { expected += a[k, i] * b[k, j] }
      #expect(abs(c[i, j] - expected) < 1e-5)
    }
  }
}

@Test func randomStreamDependsOnlyOnKey() {
  var first = RandomStream(seed: 7, purpose: .augmentation, counters: 3, 11)
  var second = RandomStream(seed: 7, purpose: .augmentation, counters: 3, 11)
  var other = RandomStream(seed: 7, purpose: .augmentation, counters: 3, 12)
  let a = (0..<16).map { _ in first.next() }
  let b = (0..<16).map { _ in second.next() }
  let c = (0..<16).map { _ in other.next() }
  #expect(a == b)
  #expect(a != c)
}

@Test func randomStreamUniformAndNormalMoments() {
  var stream = RandomStream(seed: 3, purpose: .test)
  let n = 100_000
  var sum = 0.0
  var sumNormal = 0.0
  var sumSquares = 0.0
  for _ in 0..<n {
    let u = stream.uniform()
    #expect(u >= 0 && u < 1)
    sum += Double(u)
    let z = Double(stream.normal())
    sumNormal += z
    sumSquares += z * z
  }
  #expect(abs(sum / Double(n) - 0.5) < 0.01)
  #expect(abs(sumNormal / Double(n)) < 0.02)
  #expect(abs(sumSquares / Double(n) - 1) < 0.02)
}

@Test func permutationHoldsEveryIndexOnce() {
  var stream = RandomStream(seed: 4, purpose: .dataOrder, counters: 0)
  let order = stream.permutation(1000)
  #expect(order.sorted() == Array(0..<1000))
  #expect(order != Array(0..<1000))
}
