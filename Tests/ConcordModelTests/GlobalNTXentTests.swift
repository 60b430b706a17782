import ConcordTensors
import Testing

@testable import ConcordModel

/// Returns the rows of `source` in the order `order`: row `i` of the result is row
/// `order[i]` of `source`.
private func permutedRows(_ source: Matrix, _ order: [Int]) -> Matrix {
  let result = Matrix(rows: source.rows, columns: source.columns)
  for (i, row) in order.enumerated() {
    _ = result.row(i).update(fromContentsOf: source.row(row))
  }
  return result
}

/// Returns, for each row of the ranks' batches one after the other, its row in the global batch of
/// `images` images.
///
/// The global batch has the first views and then the second views. Each of the `ranks` ranks has
/// `images / ranks` images, also first views, then second views.
private func rankOrder(images: Int, ranks: Int) -> [Int] {
  let n = images / ranks
  var order: [Int] = []
  for r in 0..<ranks {
    order += (0..<n).map { r * n + $0 }
    order += (0..<n).map { images + r * n + $0 }
  }
  return order
}

/// One exchange between the simulated ranks of a test, in a single process: each rank's
/// allgather reads the rows that every rank published before the loss ran.
private final class SharedRows: ProjectionExchange {
  let rank: Int
  let size: Int
  let published: Matrix

  init(rank: Int, size: Int, published: Matrix) {
    self.rank = rank
    self.size = size
    self.published = published
  }

  func allgather(_ local: Matrix, into all: Matrix) {
    all.copy(from: published)
    all.rows((rank * local.rows)..<((rank + 1) * local.rows)).copy(from: local)
  }

  func reduceScatterSum(_ all: Matrix, into local: Matrix) {
    local.copy(from: all.rows((rank * local.rows)..<((rank + 1) * local.rows)))
  }
}

/// The ranks' losses over their own anchors average to the NT-Xent loss of the whole batch,
/// and their candidate gradients sum to the rank count times its gradient: positives stay
/// paired when each rank's block holds its own two views.
@Test(arguments: [(4, 2, 3), (6, 3, 5), (8, 4, 16), (4, 1, 7)])
func anchorLossesAddUpToTheWholeBatch(shape: (Int, Int, Int)) {
  let (images, ranks, d) = shape
  let z = randomMatrix(rows: 2 * images, columns: d, seed: 31)
  let wholeGradient = Matrix(rows: 2 * images, columns: d)
  let whole = NTXentLoss(rows: 2 * images, dimension: d)(
    projections: z, temperature: 0.5, gradient: wholeGradient)

  let order = rankOrder(images: images, ranks: ranks)
  let candidates = permutedRows(z, order)
  let rows = 2 * images / ranks
  let loss = NTXentLoss(anchorRows: rows, candidateRows: 2 * images, dimension: d)
  let gradient = Matrix(rows: 2 * images, columns: d)
  let summed = Matrix(rows: 2 * images, columns: d)
  summed.fill(0)
  var lossSum = 0.0
  for r in 0..<ranks {
    lossSum += Double(
      loss(
        candidates: candidates, anchors: (r * rows)..<((r + 1) * rows), temperature: 0.5,
        gradient: gradient))
    for i in 0..<summed.count { summed.elements[i] += gradient.elements[i] }
  }

  #expect(abs(lossSum / Double(ranks) - Double(whole)) < 1e-5 * Double(whole))
  let expected = permutedRows(wholeGradient, order)
  let scale = expected.elements.map { abs($0) }.max()!
  for i in 0..<summed.count {
    let difference = abs(summed.elements[i] - Float(ranks) * expected.elements[i])
    #expect(difference <= 1e-5 * Float(ranks) * scale, "element \(i)")
  }
}

/// The gradient of the anchors' loss covers every candidate, the other ranks' views
/// included, and matches finite differences.
@Test func anchorLossMatchesFiniteDifferences() {
  let d = 5
  let z = randomMatrix(rows: 12, columns: d, seed: 32)
  let gradient = Matrix(rows: 12, columns: d)
  let scratch = Matrix(rows: 12, columns: d)
  let loss = NTXentLoss(anchorRows: 4, candidateRows: 12, dimension: d)
  for anchors in [0..<4, 4..<8, 8..<12] {
    _ = loss(candidates: z, anchors: anchors, temperature: 0.3, gradient: gradient)
    let result = GradientCheck(step: 1e-2).compare(input: z, analyticGradient: gradient) {
      loss(candidates: z, anchors: anchors, temperature: 0.3, gradient: scratch)
    }
    #expect(result.maximumRelativeError < 1e-2, "anchors \(anchors): \(result)")
    let outside = (0..<12).filter { !anchors.contains($0) }
    #expect(outside.contains { i in gradient.row(i).contains { $0 != 0 } })
  }
}

/// Through the SimCLR head, two simulated ranks with global negatives each get their share of the
/// whole batch's loss.
///
/// On one rank the head's result equals NT-Xent within the batch bit for bit.
@Test func simCLRHeadWithGlobalNegatives() {
  let configuration = ModelConfiguration(
    inputSize: 10, hiddenSizes: [12, 8], tasks: [.simclr], projectorHiddenSize: 9,
    projectionSize: 5, temperature: 0.5)
  let labels = [Int32](repeating: 0, count: 8)
  let augmentationLabels = Matrix(rows: 8, columns: 6)
  let input = randomMatrix(rows: 8, columns: 10, seed: 33)

  func losses(_ model: MultiTaskModel, _ rows: Range<Int>) -> (Float, [Float]) {
    let batch = labels.withUnsafeBufferPointer {
      TaskBatch(
        input: input.rows(rows), labels: $0.baseAddress!,
        augmentationLabels: augmentationLabels.rows(rows), pairCount: rows.count / 2)
    }
    model.computeTaskGradients(batch: batch)
    return (model.losses[0], model.reduceBuffer.array)
  }

  // One rank: the exchange copies, and the loss is NT-Xent within the batch.
  let local = MultiTaskModel(configuration: configuration, capacity: 8, seed: 3)
  let global = MultiTaskModel(configuration: configuration, capacity: 8, seed: 3)
  let head = global.heads[0] as! SimCLRHead
  head.useGlobalNegatives(SharedRows(rank: 0, size: 1, published: Matrix(rows: 8, columns: 5)))
  #expect(head.usesGlobalNegatives)
  #expect(losses(local, 0..<8).1 == losses(global, 0..<8).1)

  // Two ranks of 2 images each: rows 4r..<4r + 4 of `input` are rank r's batch, its first
  // views and then its second views. As one batch of 4 images, the first views are rows
  // 0, 1, 4, 5 and the second views rows 2, 3, 6, 7.
  let whole = MultiTaskModel(configuration: configuration, capacity: 8, seed: 3)
  let wholeHead = whole.heads[0] as! SimCLRHead
  let projections = Matrix(rows: 8, columns: 5)
  projections.copy(from: wholeHead.projector.forward(whole.encoder.forward(input)))
  let wholeLoss = NTXentLoss(rows: 8, dimension: 5)(
    projections: permutedRows(projections, [0, 1, 4, 5, 2, 3, 6, 7]), temperature: 0.5,
    gradient: Matrix(rows: 8, columns: 5))
  var sum: Float = 0
  for r in 0..<2 {
    let model = MultiTaskModel(configuration: configuration, capacity: 4, seed: 3)
    (model.heads[0] as! SimCLRHead).useGlobalNegatives(
      SharedRows(rank: r, size: 2, published: projections))
    sum += losses(model, (4 * r)..<(4 * r + 4)).0
  }
  #expect(abs(sum / 2 - wholeLoss) < 1e-5 * wholeLoss)
}
