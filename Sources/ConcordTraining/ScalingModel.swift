import Foundation

/// The cost of one link in the alpha-beta model: a latency per message and a bandwidth.
///
/// A message of `n` bytes takes `alpha + n / bandwidth` seconds. A ring allreduce of `n`
/// bytes over `p` ranks runs `2(p - 1)` such steps (a reduce-scatter and an allgather), each
/// moving `n / p` bytes, so it takes `2(p - 1) * alpha + 2(p - 1) / p * n / bandwidth`.
///
/// ### References
/// - Thakur, Rabenseifner and Gropp, "Optimization of Collective Communication Operations in
///   MPICH", International Journal of High Performance Computing Applications, 2005.
public struct LinkCost: Sendable, Equatable {
  /// The latency per message, alpha, in seconds.
  public var latency: Double
  /// The bandwidth, 1 / beta, in bytes per second.
  public var bandwidth: Double

  /// Creates a link of `latency` seconds per message and `bandwidth` bytes per second.
  public init(latency: Double, bandwidth: Double) {
    self.latency = latency
    self.bandwidth = bandwidth
  }

  /// Returns the seconds of a ring allreduce of `bytes` bytes over `ranks` ranks.
  public func ringAllreduce(ranks: Int, bytes: Double) -> Double {
    guard ranks > 1 else { return 0 }
    let steps = 2 * Double(ranks - 1)
    return steps * latency + steps / Double(ranks) * bytes / bandwidth
  }

  /// Returns the seconds of Rabenseifner's allreduce (recursive halving reduce-scatter, then
  /// recursive doubling allgather) of `bytes` bytes over `ranks` ranks.
  ///
  /// It moves the same bytes as the ring, but in `2 log2(p)` messages instead of `2(p - 1)`,
  /// which is why MPI libraries prefer it, or trees, on many ranks.
  public func halvingDoublingAllreduce(ranks: Int, bytes: Double) -> Double {
    guard ranks > 1 else { return 0 }
    let p = Double(ranks)
    return 2 * log2(p) * latency + 2 * (p - 1) / p * bytes / bandwidth
  }

  /// Fits alpha and beta to measured allreduce times by least squares on the relative error.
  ///
  /// Each sample gives `seconds ≈ 2(p - 1) * alpha + 2(p - 1) / p * bytes * beta`. The fit
  /// weighs each sample by `1 / seconds`, so that 4 KB messages count as much as 64 MB ones.
  /// When the unconstrained fit gives a negative latency, the latency is 0 and the bandwidth
  /// is refitted alone.
  ///
  /// - Returns: the link, or nil when fewer than two samples have more than one rank.
  public static func fit(_ samples: [AllreduceSample]) -> LinkCost? {
    let usable = samples.filter { $0.ranks > 1 && $0.seconds > 0 && $0.bytes > 0 }
    guard usable.count >= 2 else { return nil }
    let rows = usable.map { sample -> (x: [Double], y: Double) in
      let steps = 2 * Double(sample.ranks - 1)
      let weight = 1 / sample.seconds
      return (
        [steps * weight, steps / Double(sample.ranks) * sample.bytes * weight],
        sample.seconds * weight
      )
    }
    if let solution = leastSquares(rows), solution[0] >= 0, solution[1] > 0 {
      return LinkCost(latency: solution[0], bandwidth: 1 / solution[1])
    }
    guard let beta = leastSquares(rows.map { ([$0.x[1]], $0.y) })?[0], beta > 0 else {
      return nil
    }
    return LinkCost(latency: 0, bandwidth: 1 / beta)
  }
}

/// One measured allreduce: ranks, bytes and seconds.
public struct AllreduceSample: Sendable, Equatable {
  /// The number of ranks.
  public var ranks: Int
  /// The bytes that each rank contributes.
  public var bytes: Double
  /// The time of the allreduce, in seconds.
  public var seconds: Double

  /// Creates a sample.
  public init(ranks: Int, bytes: Double, seconds: Double) {
    self.ranks = ranks
    self.bytes = bytes
    self.seconds = seconds
  }
}

/// The time of the work of one step that does not communicate: a fixed part and a part per
/// sample of the local batch.
public struct ComputeCost: Sendable, Equatable {
  /// Seconds per step whatever the batch: balancing, the optimizer, kernel launches.
  public var fixed: Double
  /// Seconds per image of the local batch: augmentation, forward and backward passes.
  public var perSample: Double

  /// Creates a cost of `fixed` seconds plus `perSample` seconds per image.
  public init(fixed: Double, perSample: Double) {
    self.fixed = fixed
    self.perSample = perSample
  }

  /// Returns the seconds of a step with `localBatch` images on one rank.
  public func seconds(localBatch: Double) -> Double { fixed + perSample * localBatch }

  /// Fits the cost to `(local batch, seconds)` pairs by least squares on the relative error.
  ///
  /// With one distinct batch size the fixed part cannot be separated from the per-sample part, so it is 0; a negative
  /// fixed part is likewise set to 0 and the per-sample part refitted.
  ///
  /// - Returns: the cost, or nil without samples.
  public static func fit(_ samples: [(localBatch: Double, seconds: Double)]) -> ComputeCost? {
    let usable = samples.filter { $0.localBatch > 0 && $0.seconds > 0 }
    guard !usable.isEmpty else { return nil }
    let rows = usable.map { ([1 / $0.seconds, $0.localBatch / $0.seconds], 1.0) }
    if Set(usable.map(\.localBatch)).count >= 2, let solution = leastSquares(rows),
      solution[0] >= 0, solution[1] > 0
    {
      return ComputeCost(fixed: solution[0], perSample: solution[1])
    }
    guard let perSample = leastSquares(rows.map { ([$0.0[1]], $0.1) })?[0] else { return nil }
    return ComputeCost(fixed: 0, perSample: perSample)
  }
}

/// Predicts the time of a data-parallel training step from its compute and its allreduce.
///
/// A step of `p` ranks with `b` images each takes `s * (compute(b) + allreduce(p, bytes))`.
/// The allreduce is the ring of the link that joins the ranks, exposed in full (the blocking
/// allreduce that Concord runs when ranks have no spare core). `s = max(1, ranks on the
/// machine / cores)` is the slowdown of ranks that share cores: communication slows with them,
/// because its copies and TCP processing run on the same cores and Open MPI's waiting ranks
/// poll.
public struct ScalingModel: Sendable, Equatable {
  /// The compute of one rank that has a core to itself.
  public var compute: ComputeCost
  /// The link of each network, by name.
  public var links: [String: LinkCost]
  /// The cores of one machine.
  public var cores: Int

  /// Creates a model.
  public init(compute: ComputeCost, links: [String: LinkCost], cores: Int) {
    self.compute = compute
    self.links = links
    self.cores = cores
  }

  /// Returns the predicted seconds of one step.
  ///
  /// - Parameters:
  ///   - network: the name of the link between the ranks.
  ///   - ranks: the ranks of the job.
  ///   - ranksPerMachine: the ranks that share one machine's cores.
  ///   - localBatch: the images per rank.
  ///   - bytes: the bytes that each step allreduces.
  /// - Returns: the seconds, or nil when the network has no fitted link.
  public func stepSeconds(
    network: String, ranks: Int, ranksPerMachine: Int, localBatch: Double, bytes: Double
  ) -> Double? {
    let slowdown = max(1, Double(ranksPerMachine) / Double(cores))
    let work = compute.seconds(localBatch: localBatch)
    guard ranks > 1 else { return slowdown * work }
    guard let link = links[network] else { return nil }
    return slowdown * (work + link.ringAllreduce(ranks: ranks, bytes: bytes))
  }
}

/// Returns the coefficients that minimise the squared residuals of `rows`, each a feature
/// vector and a target, or nil when the normal equations are singular.
///
/// Solves the normal equations by Gaussian elimination with partial pivoting: the fits here
/// have one or two unknowns.
func leastSquares(_ rows: [(x: [Double], y: Double)]) -> [Double]? {
  guard let width = rows.first?.x.count, width > 0 else { return nil }
  var matrix = [[Double]](repeating: [Double](repeating: 0, count: width + 1), count: width)
  for row in rows {
    for i in 0..<width {
      for j in 0..<width { matrix[i][j] += row.x[i] * row.x[j] }
      matrix[i][width] += row.x[i] * row.y
    }
  }
  let scale = matrix.map { $0.prefix(width).map(abs).max() ?? 0 }.max() ?? 0
  guard scale > 0 else { return nil }
  for column in 0..<width {
    let pivot = (column..<width).max { abs(matrix[$0][column]) < abs(matrix[$1][column]) }!
    guard abs(matrix[pivot][column]) > scale * 1e-12 else { return nil }
    matrix.swapAt(column, pivot)
    for row in 0..<width where row != column {
      let factor = matrix[row][column] / matrix[column][column]
      for k in column...width { matrix[row][k] -= factor * matrix[column][k] }
    }
  }
  return (0..<width).map { matrix[$0][width] / matrix[$0][$0] }
}
