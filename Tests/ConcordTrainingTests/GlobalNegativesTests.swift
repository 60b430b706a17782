import ConcordTensors
import Foundation
import Testing

/// Flags of a one-step SimCLR run that dumps the reduced gradients of step 0.
private func simCLRStep(out: String, negatives: String, steps: Int, batchSize: Int) -> [String] {
  [
    "train", "--out", out, "--tasks", "simclr", "--steps", String(steps), "--train-limit", "512",
    "--test-limit", "128", "--batch-size", String(batchSize), "--hidden", "128,64",
    "--dump-gradients", "0", "--simclr-negatives", negatives,
  ]
}

/// Returns the relative L2 distance between `y` and `x`, in double precision.
private func relativeDifference(_ x: [Double], _ y: [Double]) -> Double {
  let difference = zip(x, y).map { ($0 - $1) * ($0 - $1) }.reduce(0, +)
  let norm = x.map { $0 * $0 }.reduce(0, +)
  return (difference / max(norm, 1e-30)).squareRoot()
}

@Suite(.serialized, .enabled(if: hasFashionMNIST, "Fashion-MNIST is not installed"))
struct GlobalNegativesTests {
  /// Runs one SimCLR step on `ranks` ranks and returns the reduced loss and encoder gradient
  /// that the balancer read.
  private func reducedStep(
    ranks: Int, negatives: String, steps: Int = 1, batchSize: Int = 64
  ) throws -> (loss: Double, gradient: [Double], output: String) {
    let out = try makeTemporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: out) }
    let arguments = simCLRStep(out: out, negatives: negatives, steps: steps, batchSize: batchSize)
    let result = try mpirun(ranks: ranks, arguments, timeout: 120)
    try #require(result.status == 0, "\(result.standardError)")
    let dump = try SafeTensors.read(path: out + "/gradients-step-0.safetensors")
    return (
      try dump.doubles("losses")[0], try dump.floats("gradients").map(Double.init),
      result.standardOutput
    )
  }

  /// With global negatives the reduced NT-Xent loss and gradient of 2 ranks equal those of 1 rank
  /// with the same global batch, up to float rounding.
  ///
  /// With local negatives each rank contrasts only its own half of the batch, so both differ.
  @Test func twoRanksMatchOneRankOnlyWithGlobalNegatives() throws {
    let one = try reducedStep(ranks: 1, negatives: "global")
    let two = try reducedStep(ranks: 2, negatives: "global", steps: 3)
    #expect(two.output.contains("identical on all 2 ranks"), "\(two.output)")
    #expect(abs(two.loss - one.loss) <= 1e-6 * one.loss, "\(two.loss) vs \(one.loss)")
    let global = relativeDifference(one.gradient, two.gradient)
    #expect(global <= 1e-5, "relative gradient difference \(global)")

    let localOne = try reducedStep(ranks: 1, negatives: "local")
    let localTwo = try reducedStep(ranks: 2, negatives: "local")
    // One rank contains the whole batch either way.
    #expect(localOne.loss == one.loss)
    #expect(abs(localTwo.loss - localOne.loss) > 1e-2 * localOne.loss)
    let local = relativeDifference(localOne.gradient, localTwo.gradient)
    #expect(local > 1e-3, "relative gradient difference \(local)")
  }

  /// With global negatives one image per rank still has negatives, the other ranks' views,
  /// and 2 ranks match 1 rank with the same batch of 2.
  @Test func oneImagePerRankWithGlobalNegatives() throws {
    let one = try reducedStep(ranks: 1, negatives: "global", batchSize: 2)
    let two = try reducedStep(ranks: 2, negatives: "global", batchSize: 2)
    #expect(two.output.contains("identical on all 2 ranks"), "\(two.output)")
    #expect(one.loss > 0, "NT-Xent of 2 images with a negative each is positive")
    #expect(abs(two.loss - one.loss) <= 1e-6 * one.loss, "\(two.loss) vs \(one.loss)")
    let difference = relativeDifference(one.gradient, two.gradient)
    #expect(difference <= 1e-5, "relative gradient difference \(difference)")
  }
}
