import Foundation
import Testing

@testable import ConcordTraining

struct LinkCostTests {
  @Test func ringAllreduceFollowsAlphaBeta() {
    let link = LinkCost(latency: 1e-4, bandwidth: 1e9)
    #expect(link.ringAllreduce(ranks: 1, bytes: 1e6) == 0)
    // 2(p - 1) = 6 messages of 1e-4 s, and 2(p - 1)/p = 1.5 times 1e6 bytes at 1e9 bytes/s.
    #expect(abs(link.ringAllreduce(ranks: 4, bytes: 1e6) - (6e-4 + 1.5e-3)) < 1e-15)
    // 2 log2(8) = 6 messages for halving-doubling, against 14 for the ring.
    #expect(abs(link.halvingDoublingAllreduce(ranks: 8, bytes: 0) - 6e-4) < 1e-15)
    #expect(abs(link.ringAllreduce(ranks: 8, bytes: 0) - 14e-4) < 1e-15)
  }

  @Test func fitRecoversLatencyAndBandwidth() throws {
    let truth = LinkCost(latency: 2.5e-5, bandwidth: 3.2e9)
    var samples: [AllreduceSample] = []
    for ranks in [2, 4] {
      for exponent in 12...26 {
        let bytes = Double(1 << exponent)
        samples.append(
          AllreduceSample(
            ranks: ranks, bytes: bytes, seconds: truth.ringAllreduce(ranks: ranks, bytes: bytes)))
      }
    }
    let fitted = try #require(LinkCost.fit(samples))
    #expect(abs(fitted.latency / truth.latency - 1) < 1e-9)
    #expect(abs(fitted.bandwidth / truth.bandwidth - 1) < 1e-9)
  }

  /// Checks that a fit which would give a negative latency keeps it at 0.
  ///
  /// Times a little below proportional to the bytes give such a fit, so the bandwidth is
  /// fitted alone.
  @Test func negativeLatencyIsClampedToZero() throws {
    let samples = [
      AllreduceSample(ranks: 2, bytes: 1e6, seconds: 0.9e-3),
      AllreduceSample(ranks: 2, bytes: 1e7, seconds: 10e-3),
    ]
    let fitted = try #require(LinkCost.fit(samples))
    #expect(fitted.latency == 0)
    #expect(fitted.bandwidth > 0.9e9)
    #expect(fitted.bandwidth < 1.12e9)
  }

  @Test func fitNeedsTwoMultiRankSamples() {
    #expect(LinkCost.fit([AllreduceSample(ranks: 2, bytes: 1e6, seconds: 1e-3)]) == nil)
    #expect(
      LinkCost.fit([
        AllreduceSample(ranks: 1, bytes: 1e6, seconds: 1e-3),
        AllreduceSample(ranks: 1, bytes: 2e6, seconds: 2e-3),
      ]) == nil)
  }
}

struct ComputeCostTests {
  @Test func fitRecoversFixedAndPerSampleParts() throws {
    let samples: [(localBatch: Double, seconds: Double)] = [256.0, 128, 64].map {
      ($0, 0.002 + $0 * 1e-4)
    }
    let fitted = try #require(ComputeCost.fit(samples))
    #expect(abs(fitted.fixed - 0.002) < 1e-12)
    #expect(abs(fitted.perSample - 1e-4) < 1e-15)
  }

  @Test func oneBatchSizeGivesPerSampleCostOnly() throws {
    let fitted = try #require(ComputeCost.fit([(128, 0.0128), (128, 0.0128)]))
    #expect(fitted.fixed == 0)
    #expect(abs(fitted.perSample - 1e-4) < 1e-15)
    #expect(ComputeCost.fit([]) == nil)
  }

  @Test func singularSystemHasNoSolution() {
    #expect(leastSquares([([1, 2], 1), ([2, 4], 2)]) == nil)
    #expect(leastSquares([]) == nil)
  }
}

struct ScalingModelTests {
  @Test func sharedCoresSlowComputeAndLinksAddTheAllreduce() throws {
    let model = ScalingModel(
      compute: ComputeCost(fixed: 0.001, perSample: 1e-4),
      links: ["wan": LinkCost(latency: 1e-3, bandwidth: 1.25e8)], cores: 2)
    // One rank: compute alone, no link needed.
    #expect(
      model.stepSeconds(network: "none", ranks: 1, ranksPerMachine: 1, localBatch: 100, bytes: 1e7)
        == 0.011)
    // Eight ranks on two cores compute and communicate four times slower.
    let eight = try #require(
      model.stepSeconds(network: "wan", ranks: 8, ranksPerMachine: 8, localBatch: 100, bytes: 1e7))
    let ring = 14 * 1e-3 + 14.0 / 8 * 1e7 / 1.25e8
    #expect(abs(eight - 4 * (0.011 + ring)) < 1e-12)
    #expect(
      model.stepSeconds(network: "lan", ranks: 2, ranksPerMachine: 2, localBatch: 1, bytes: 1)
        == nil)
  }
}

/// Records of a benchmark whose times follow a known model exactly.
private func syntheticRecords() -> [String] {
  let compute = ComputeCost(fixed: 0.002, perSample: 1.5e-4)
  let links = [
    "local": LinkCost(latency: 5e-6, bandwidth: 4e9),
    "wan": LinkCost(latency: 1e-3, bandwidth: 1.2e8),
  ]
  let model = ScalingModel(compute: compute, links: links, cores: 2)
  let bytes = 9_600_000.0
  var lines = [
    #"{"kind":"machine","cores":2,"cpu":"Test CPU","date":"2026-12-04 00:00 UTC"}"#,
    #"{"kind":"network","name":"wan","delay_ms":1,"rate":"1gbit","mechanism":"concord-link"}"#,
  ]
  for (network, rankCounts) in [("local", [1, 2, 4, 8]), ("wan", [2, 4])] {
    for ranks in rankCounts {
      for (scaling, batch) in [("strong", 256), ("weak", 128 * ranks)] {
        let local = Double(batch) / Double(ranks)
        let seconds = model.stepSeconds(
          network: network, ranks: ranks, ranksPerMachine: ranks, localBatch: local, bytes: bytes)!
        let exposed = ranks > 1 ? links[network]!.ringAllreduce(ranks: ranks, bytes: bytes) : 0
        lines.append(
          #"{"kind":"step","network":"\#(network)","hosts":\#(network == "local" ? 1 : ranks),"#
            + #""scaling":"\#(scaling)","label":"default","repeat":1,"result":{"step_ms":"#
            + #"\#(seconds * 1e3),"phase_ms":{"allreduce":\#(exposed * 1e3),"balancing":0.5},"#
            + #""ranks":\#(ranks),"batch_size":\#(batch),"allreduce_bytes":\#(Int(bytes)),"#
            + #""allreduce_mode":"blocking"}}"#)
      }
    }
    for exponent in stride(from: 12, through: 26, by: 2) {
      let size = Double(1 << exponent)
      let microseconds = links[network]!.ringAllreduce(ranks: 2, bytes: size) * 1e6
      lines.append(
        #"{"kind":"allreduce","network":"\#(network)","hosts":\#(network == "local" ? 1 : 2),"#
          + #""result":{"bytes":\#(Int(size)),"ranks":2,"plain_us":{"median":\#(microseconds),"#
          + #""p10":\#(microseconds),"p90":\#(microseconds)},"concord_us":{"median":"#
          + #"\#(microseconds),"p10":\#(microseconds),"p90":\#(microseconds)}}}"#)
    }
  }
  lines.append(
    #"{"kind":"step","network":"local","hosts":1,"scaling":"strong","label":"per-task","repeat":1,"#
      + #""result":{"step_ms":40,"phase_ms":{"allreduce":4},"ranks":2,"batch_size":256,"#
      + #""allreduce_bytes":9600000}}"#)
  return lines
}

struct ScalingReportTests {
  @Test func fitsAndChecksRecordsThatFollowTheModel() throws {
    var measurements = ScalingMeasurements()
    for line in syntheticRecords() { try measurements.add(line: line) }
    #expect(measurements.cores == 2)
    #expect(measurements.steps.count == 13)
    let report = ScalingReport(measurements: measurements)
    let model = try #require(report.model)
    #expect(abs(model.compute.fixed / 0.002 - 1) < 1e-6)
    #expect(abs(model.compute.perSample / 1.5e-4 - 1) < 1e-6)
    #expect(abs(try #require(model.links["wan"]).latency / 1e-3 - 1) < 1e-6)
    #expect(report.checks.count == 12)
    #expect(report.checkError.maximum < 1e-6)
    // wan and the stated reference link, at 8, 64 and 512 nodes.
    #expect(report.projections.count == 6)
    let wan64 = try #require(report.projections.first { $0.network == "wan" && $0.nodes == 64 })
    #expect(wan64.ranks == 128)
    let work = 0.002 + 128 * 1.5e-4
    let latencyPart: Double = 2 * 127 * 1e-3
    let bandwidthPart: Double = 2 * 127.0 / 128 * 9.6e6 / 1.2e8
    let ring = latencyPart + bandwidthPart
    #expect(abs(wan64.efficiency - work / (work + ring)) < 1e-9)
    #expect(wan64.halvingDoublingEfficiency > wan64.efficiency)
    #expect(wan64.bfloat16Efficiency > wan64.efficiency)
  }

  @Test func writesTablesJSONAndPlot() throws {
    var measurements = ScalingMeasurements()
    for line in syntheticRecords() { try measurements.add(line: line) }
    let report = ScalingReport(measurements: measurements)
    let page = report.markdown(
      resultsPath: "bench/results/x.json", plotPath: "docs/scaling.svg", quick: true)
    for heading in [
      "## Strong scaling", "## Weak scaling", "## Allreduce against message size",
      "## Communication options", "## Scaling model", "## Projection to 8, 64 and 512 nodes",
      "## Against published scaling", "## Which assumptions break first",
    ] {
      #expect(page.contains(heading), "missing \(heading)")
    }
    // The 8-rank local row is marked as oversubscribed, and the per-task row is compared.
    #expect(page.contains("| local | 1 | 8* |"))
    #expect(page.contains("| per-task |"))

    let json = try JSONSerialization.jsonObject(with: report.json()) as? [String: Any]
    let steps = try #require(json?["steps"] as? [[String: Any]])
    #expect(steps.count == 13)
    #expect((json?["model"] as? [String: Any])?["links"] != nil)

    let path = try makeTemporaryDirectory() + "/scaling.svg"
    try report.svg().write(toFile: path, atomically: true, encoding: .utf8)
    let svg = try SVGElementCounter(path: path)
    #expect(svg.root == "svg")
    // Two panels, each with a measured and a modelled path per network and scaling mode.
    #expect(svg.counts["path"] == 2 * 2 * 4)
  }

  @Test func badRecordsNameTheirLine() throws {
    let folder = try makeTemporaryDirectory()
    let path = folder + "/records.jsonl"
    let lines = [syntheticRecords()[0], #"{"kind":"step","network":"local"}"#]
    try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
    #expect {
      _ = try ScalingMeasurements(contentsOf: path)
    } throws: { error in
      "\(error)" == "\(path):2: the record lacks the number field \"hosts\""
    }
    var measurements = ScalingMeasurements()
    #expect(throws: ScalingMeasurementsError.self) { try measurements.add(line: "[1, 2]") }
    #expect(throws: ScalingMeasurementsError.self) {
      try measurements.add(line: #"{"kind":"weather"}"#)
    }
  }
}
