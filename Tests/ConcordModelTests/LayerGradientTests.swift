import ConcordTensors
import Testing

@testable import ConcordModel

private func normalMatrix(_ rows: Int, _ columns: Int, seed: UInt64, scale: Float = 1) -> Matrix {
  var stream = RandomStream(seed: seed, purpose: .test, counters: UInt64(rows), UInt64(columns))
  return Matrix(
    rows: rows, columns: columns, values: (0..<rows * columns).map { _ in scale * stream.normal() })
}

/// A stack of linear layers over one parameter buffer, for tests.
private struct TestNetwork {
  let parameters: FloatBuffer
  let gradients: FloatBuffer
  let layers: [Linear]
  let gradientPairs: [(weight: Matrix, bias: Matrix)]

  init(widths: [Int], seed: UInt64) {
    var layout = ParameterLayout()
    for i in 0..<(widths.count - 1) {
      layout.append("\(i).weight", shape: [widths[i + 1], widths[i]])
      layout.append("\(i).bias", shape: [widths[i + 1]])
    }
    parameters = FloatBuffer(count: layout.count)
    gradients = FloatBuffer(count: layout.count)
    var layers: [Linear] = []
    var pairs: [(weight: Matrix, bias: Matrix)] = []
    for i in 0..<(widths.count - 1) {
      let w = layout.slot(named: "\(i).weight")!
      let b = layout.slot(named: "\(i).bias")!
      layers.append(
        Linear(
          weight: parameters.matrix(rows: w.shape[0], columns: w.shape[1], offset: w.offset),
          bias: parameters.matrix(rows: 1, columns: b.shape[0], offset: b.offset)))
      pairs.append(
        (
          gradients.matrix(rows: w.shape[0], columns: w.shape[1], offset: w.offset),
          gradients.matrix(rows: 1, columns: b.shape[0], offset: b.offset)
        ))
    }
    for (i, layer) in layers.enumerated() {
      var stream = RandomStream(seed: seed, purpose: .test, counters: UInt64(i))
      layer.initialise(stream: &stream)
    }
    self.layers = layers
    gradientPairs = pairs
  }
}

@Test func linearGradientsMatchFiniteDifferences() throws {
  let network = TestNetwork(widths: [7, 5], seed: 1)
  let layer = network.layers[0]
  let input = normalMatrix(4, 7, seed: 2)
  let target = normalMatrix(4, 5, seed: 3)
  let output = Matrix(rows: 4, columns: 5)
  let outputGradient = Matrix(rows: 4, columns: 5)
  let inputGradient = Matrix(rows: 4, columns: 7)
  let ones = FloatBuffer([Float](repeating: 1, count: 4))

  func loss() -> Float {
    layer.forward(input, into: output)
    return squaredError(output, target)
  }
  layer.forward(input, into: output)
  _ = squaredError(output, target, gradient: outputGradient)
  let (weightGradient, biasGradient) = network.gradientPairs[0]
  layer.backward(
    input: input, outputGradient: outputGradient, weightGradient: weightGradient,
    biasGradient: biasGradient, inputGradient: inputGradient, ones: ones.baseAddress)

  let check = GradientCheck(step: 1e-2)
  let weightResult = check.compare(
    input: layer.weight, analyticGradient: weightGradient, loss: loss)
  #expect(weightResult.maximumRelativeError < 1e-2, "\(weightResult)")
  let biasResult = check.compare(input: layer.bias, analyticGradient: biasGradient, loss: loss)
  #expect(biasResult.maximumRelativeError < 1e-2, "\(biasResult)")
  let inputResult = check.compare(input: input, analyticGradient: inputGradient, loss: loss)
  #expect(inputResult.maximumRelativeError < 1e-2, "\(inputResult)")
}

@Test(arguments: [false, true])
func mlpGradientsMatchFiniteDifferences(hasFinalReLU: Bool) throws {
  let network = TestNetwork(widths: [6, 9, 4], seed: 4)
  let mlp = MLP(layers: network.layers, hasFinalReLU: hasFinalReLU, capacity: 5)
  let input = normalMatrix(5, 6, seed: 5)
  let target = normalMatrix(5, 4, seed: 6)
  let outputGradient = Matrix(rows: 5, columns: 4)
  let inputGradient = Matrix(rows: 5, columns: 6)
  let ones = FloatBuffer([Float](repeating: 1, count: 5))

  func loss() -> Float { squaredError(mlp.forward(input), target) }
  _ = squaredError(mlp.forward(input), target, gradient: outputGradient)
  mlp.backward(
    outputGradient: outputGradient, gradients: network.gradientPairs, inputGradient: inputGradient,
    ones: ones.baseAddress)

  // Finite differences are meaningless next to a ReLU kink; the check leaves such
  // coordinates out. The loss is near 10 here, so its Float rounding alone moves the
  // numeric derivatives by about 1e-2 relative, and more at the smallest step, which leaves
  // out a few of the smallest derivatives too.
  let parameterGradients = Array(network.gradients.elements)
  let parameterResult = kinkAwareCheck(network.parameters.elements, parameterGradients, loss: loss)
  #expect(parameterResult.worst < 3e-2, "\(parameterResult)")
  #expect(parameterResult.checked >= 90, "\(parameterResult) of 103")
  let inputResult = kinkAwareCheck(input.elements, inputGradient.array, loss: loss)
  #expect(inputResult.worst < 3e-2, "\(inputResult)")
  #expect(inputResult.checked >= 20, "\(inputResult)")
}

/// The fused backward pass of the shared encoder gives each task the gradient that a
/// separate backward pass of that task alone gives.
@Test func sharedEncoderMatchesSeparateBackwardPasses() throws {
  let widths = [12, 10, 8]
  let taskCount = 3
  let rows = 6
  let network = TestNetwork(widths: widths, seed: 7)
  let gradientCount = SharedEncoder.gradientCount(widths: widths, taskCount: taskCount)
  let taskGradients = FloatBuffer(count: gradientCount)
  let encoder = SharedEncoder(
    layers: network.layers, taskCount: taskCount, capacity: rows,
    gradients: taskGradients.baseAddress, owner: taskGradients)
  let reference = MLP(layers: network.layers, hasFinalReLU: true, capacity: rows)
  let input = normalMatrix(rows, widths[0], seed: 8)
  let ones = FloatBuffer([Float](repeating: 1, count: rows))
  let targets = (0..<taskCount).map { normalMatrix(rows, widths.last!, seed: 20 + UInt64($0)) }

  let features = encoder.forward(input)
  for t in 0..<taskCount {
    _ = squaredError(features, targets[t], gradient: encoder.featuresGradient(task: t, rows: rows))
  }
  encoder.backward(rows: rows, ones: ones.baseAddress)

  for t in 0..<taskCount {
    let outputGradient = Matrix(rows: rows, columns: widths.last!)
    _ = squaredError(reference.forward(input), targets[t], gradient: outputGradient)
    reference.backward(
      outputGradient: outputGradient, gradients: network.gradientPairs, inputGradient: nil,
      ones: ones.baseAddress)
    // Block 2i holds layer i's weight gradients, block 2i + 1 its bias gradients, row t task t.
    for (i, pair) in network.gradientPairs.enumerated() {
      let fusedWeight = encoder.gradientBlocks[2 * i].row(t)
      let separateWeight = pair.weight.array
      let fusedBias = encoder.gradientBlocks[2 * i + 1].row(t)
      let separateBias = pair.bias.array
      let scale = separateWeight.map(abs).max()! + 1e-6
      for k in 0..<separateWeight.count {
        #expect(abs(fusedWeight[k] - separateWeight[k]) <= 1e-5 * scale, "task \(t) layer \(i)")
      }
      for k in 0..<separateBias.count {
        #expect(abs(fusedBias[k] - separateBias[k]) <= 1e-5 * scale, "task \(t) layer \(i) bias")
      }
    }
  }
}

/// Records the regions a backward pass reports.
private final class RegionLog: GradientObserver {
  var regions: [(start: UnsafeMutablePointer<Float>, count: Int)] = []
  func gradientsReady(_ start: UnsafeMutablePointer<Float>, count: Int) {
    regions.append((start, count))
  }
}

/// Reporting final regions, which splits the first layer's weight gradients by task, gives
/// the same gradients, and the regions cover the gradient storage once, without overlap.
@Test func sharedEncoderReportsEveryRegionOnce() throws {
  let widths = [12, 10, 8]
  let taskCount = 3
  let rows = 6
  let network = TestNetwork(widths: widths, seed: 11)
  let count = SharedEncoder.gradientCount(widths: widths, taskCount: taskCount)
  let plain = FloatBuffer(count: count)
  let observed = FloatBuffer(count: count)
  let input = normalMatrix(rows, widths[0], seed: 12)
  let ones = FloatBuffer([Float](repeating: 1, count: rows))
  let targets = (0..<taskCount).map { normalMatrix(rows, widths.last!, seed: 30 + UInt64($0)) }
  let log = RegionLog()

  for (storage, observer) in [(plain, nil), (observed, log)] as [(FloatBuffer, RegionLog?)] {
    let encoder = SharedEncoder(
      layers: network.layers, taskCount: taskCount, capacity: rows,
      gradients: storage.baseAddress, owner: storage)
    let features = encoder.forward(input)
    for t in 0..<taskCount {
      _ = squaredError(
        features, targets[t], gradient: encoder.featuresGradient(task: t, rows: rows))
    }
    encoder.backward(rows: rows, ones: ones.baseAddress, observer: observer)
  }

  #expect(plain.array == observed.array)
  let offsets = log.regions.map { ($0.start - observed.baseAddress, $0.count) }.sorted {
    $0.0 < $1.0
  }
  var next = 0
  for (offset, length) in offsets {
    #expect(offset == next, "regions \(offsets)")
    next = offset + length
  }
  #expect(next == count)
  // The first layer's weights come task by task, after everything else.
  #expect(log.regions.count == 2 + taskCount)

  // Listing the regions without computing gives the same regions in the same order.
  let encoder = SharedEncoder(
    layers: network.layers, taskCount: taskCount, capacity: rows,
    gradients: observed.baseAddress, owner: observed)
  let listed = RegionLog()
  encoder.reportRegions(to: listed)
  #expect(listed.regions.map(\.start) == log.regions.map(\.start))
  #expect(listed.regions.map(\.count) == log.regions.map(\.count))
}
