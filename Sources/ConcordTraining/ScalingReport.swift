import Foundation

/// The analysis of a scaling benchmark: the fitted ``ScalingModel``, its error on every
/// measured point, and its projection to clusters larger than the machine.
public struct ScalingReport: Sendable {
  /// The measured point and what the model predicts for it.
  public struct Check: Sendable {
    /// The measured configuration.
    public var point: ScalingMeasurements.StepPoint
    /// The predicted step time, in milliseconds.
    public var predictedMilliseconds: Double
    /// Whether the point was used to fit the compute cost.
    public var isFitted: Bool
    /// `(predicted - measured) / measured`.
    public var relativeError: Double {
      predictedMilliseconds / point.medianMilliseconds - 1
    }
  }

  /// The projected weak scaling of one link profile at one cluster size.
  public struct Projection: Sendable {
    /// The link profile.
    public var network: String
    /// The nodes.
    public var nodes: Int
    /// The ranks: nodes times ranks per node.
    public var ranks: Int
    /// The step time with a ring allreduce, in milliseconds.
    public var stepMilliseconds: Double
    /// The share of the step that computes, with a ring allreduce: the weak-scaling efficiency.
    public var efficiency: Double
    /// The efficiency with Rabenseifner's allreduce in place of the ring.
    public var halvingDoublingEfficiency: Double
    /// The efficiency with a ring allreduce of bfloat16 gradients (half the bytes).
    public var bfloat16Efficiency: Double
    /// The throughput of all ranks, in images per second.
    public var samplesPerSecond: Double
  }

  /// The images per rank of the projections.
  public static let projectedLocalBatch = 128.0
  /// The cluster sizes of the projections, in nodes.
  public static let projectedNodes = [8, 64, 512]
  /// A link profile that no measurement here gives, stated for comparison with published
  /// clusters: 25 Gbit/s with 5 microseconds per message, like the RoCE network of Horovod's
  /// published benchmark.
  public static let referenceLink = (
    name: "25gbit-reference", cost: LinkCost(latency: 5e-6, bandwidth: 25e9 / 8)
  )

  /// The measurements.
  public let measurements: ScalingMeasurements
  /// The fitted model; nil when the measurements hold no single-host step.
  public let model: ScalingModel?
  /// Every default-option step point with its prediction.
  public let checks: [Check]
  /// The smallest message that the link fits use, in bytes.
  ///
  /// Open MPI's TCP transport sends messages up to 64 KiB eagerly and larger ones after a
  /// rendezvous, which costs two more trips across the link, so one alpha and one beta cannot
  /// describe both. The fits take the rendezvous sizes, where Concord's allreduce lives: its
  /// step sends 9.6 MB, and a ring of 8 ranks moves 1.2 MB per message.
  public static let fittedMinimumBytes = 262_144.0
  /// The relative error of each link fit on the sizes it was fitted to: the median of |error|
  /// by network.
  public let linkFitErrors: [String: Double]
  /// The relative error of each link fit on its whole sweep, small messages included.
  public let linkSweepErrors: [String: Double]
  /// The projections, by link profile and cluster size.
  public let projections: [Projection]
  /// The bytes that one step allreduces in the default configuration.
  public let allreduceBytes: Double

  /// Fits the model to `measurements` and projects it.
  public init(measurements: ScalingMeasurements) {
    self.measurements = measurements
    let cores = measurements.cores
    let defaults = measurements.steps.filter { $0.label == "default" }
    allreduceBytes = defaults.first?.allreduceBytes ?? 0

    // Compute: single-host points whose ranks each have a core, less their exposed allreduce.
    let fitted = defaults.filter { $0.network == "local" && $0.ranks <= cores }
    let compute = ComputeCost.fit(
      fitted.map { ($0.localBatch, ($0.medianMilliseconds - $0.phase("allreduce")) / 1e3) })

    var links: [String: LinkCost] = [:]
    var errors: [String: Double] = [:]
    var sweepErrors: [String: Double] = [:]
    for network in Set(measurements.allreduces.map(\.network)) {
      // A sweep's ranks share this machine's cores like a step's, so the link is fitted to
      // their times over the same slowdown that the model applies to steps.
      let samples = measurements.allreduces.filter { $0.network == network && !$0.concord.isEmpty }
        .map { point in
          let slowdown = max(1, Double(point.ranks) / Double(cores))
          return AllreduceSample(
            ranks: point.ranks, bytes: point.bytes, seconds: point.concord[0] / 1e6 / slowdown)
        }
      let fitted = samples.filter { $0.bytes >= Self.fittedMinimumBytes }
      guard let link = LinkCost.fit(fitted) else { continue }
      links[network] = link
      func error(_ sample: AllreduceSample) -> Double {
        abs(link.ringAllreduce(ranks: sample.ranks, bytes: sample.bytes) / sample.seconds - 1)
      }
      errors[network] = median(fitted.map(error))
      sweepErrors[network] = median(samples.map(error))
    }
    linkFitErrors = errors
    linkSweepErrors = sweepErrors

    guard let compute else {
      model = nil
      checks = []
      projections = []
      return
    }
    let model = ScalingModel(compute: compute, links: links, cores: cores)
    self.model = model
    checks = defaults.compactMap { point in
      // Every rank of the emulated cluster runs on this machine's cores.
      guard
        let seconds = model.stepSeconds(
          network: point.network, ranks: point.ranks, ranksPerMachine: point.ranks,
          localBatch: point.localBatch, bytes: point.allreduceBytes)
      else { return nil }
      return Check(
        point: point, predictedMilliseconds: seconds * 1e3,
        isFitted: fitted.contains {
          $0.ranks == point.ranks && $0.network == point.network
            && $0.batchSize == point.batchSize && $0.scaling == point.scaling
        })
    }

    var projections: [Projection] = []
    let profiles =
      links.filter { $0.key != "local" }.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
      + [(Self.referenceLink.name, Self.referenceLink.cost)]
    let work = compute.seconds(localBatch: Self.projectedLocalBatch)
    for (name, link) in profiles {
      for nodes in Self.projectedNodes {
        let ranks = nodes * cores
        let ring = link.ringAllreduce(ranks: ranks, bytes: allreduceBytes)
        let halving = link.halvingDoublingAllreduce(ranks: ranks, bytes: allreduceBytes)
        let half = link.ringAllreduce(ranks: ranks, bytes: allreduceBytes / 2)
        projections.append(
          Projection(
            network: name, nodes: nodes, ranks: ranks, stepMilliseconds: (work + ring) * 1e3,
            efficiency: work / (work + ring), halvingDoublingEfficiency: work / (work + halving),
            bfloat16Efficiency: work / (work + half),
            samplesPerSecond: Double(ranks) * Self.projectedLocalBatch / (work + ring)))
      }
    }
    self.projections = projections
  }

  /// The median of |relative error| over the checked points, and its maximum.
  public var checkError: (median: Double, maximum: Double) {
    let errors = checks.map { abs($0.relativeError) }
    return (median(errors), errors.max() ?? 0)
  }

  /// Returns the one-rank point that `point` is measured against: the single-host, single-rank
  /// run with the same scaling and, for weak scaling, the same local batch.
  public func baseline(of point: ScalingMeasurements.StepPoint) -> ScalingMeasurements.StepPoint? {
    measurements.steps.first {
      $0.network == "local" && $0.ranks == 1 && $0.label == "default" && $0.scaling == point.scaling
        && (point.scaling == "strong"
          ? $0.batchSize == point.batchSize : $0.localBatch == point.localBatch)
    }
  }

  /// Returns the scaling efficiency of `point`: the throughput per rank against one rank's.
  public func efficiency(of point: ScalingMeasurements.StepPoint) -> Double? {
    guard let base = baseline(of: point) else { return nil }
    return point.samplesPerSecond / (base.samplesPerSecond * Double(point.ranks))
  }
}
