import Foundation

extension ScalingReport {
  /// Returns BENCHMARKS.md: the measured tables, the model's fit and error, its projections,
  /// and how they compare with published scaling.
  ///
  /// - Parameters:
  ///   - resultsPath: the JSON file of this run, as the page should name it.
  ///   - plotPath: the SVG of throughput and efficiency, relative to the page.
  ///   - quick: whether the measurements come from `launch/bench-scaling --quick`.
  public func markdown(resultsPath: String, plotPath: String, quick: Bool) -> String {
    var page: [String] = []
    let date = measurements.machine["date"] ?? "an unrecorded date"
    page.append("# Concord scaling benchmarks")
    page.append(
      """
      Measured by `launch/\(quick ? "bench-scaling --quick" : "bench-scaling")` on \(date); \
      the records and the fit are in `\(resultsPath)`. `launch/bench-scaling` remeasures \
      everything and rewrites this page (`--quick` in under 5 minutes, with fewer repeats).
      """)
    page.append(setupSection())
    page.append(scalingSection("strong", title: "Strong scaling: fixed global batch"))
    page.append(scalingSection("weak", title: "Weak scaling: fixed batch per rank"))
    page.append("![Throughput and efficiency against ranks](\(plotPath))")
    page.append(allreduceSection())
    page.append(optionsSection())
    page.append(modelSection())
    page.append(projectionSection())
    page.append(publishedSection())
    page.append(assumptionsSection())
    return page.joined(separator: "\n\n") + "\n"
  }

  // MARK: - Sections

  private func setupSection() -> String {
    let m = measurements.machine
    let repeats = measurements.steps.map(\.stepMilliseconds.count)
    var lines = ["## Set-up", ""]
    lines.append(
      "- Machine: \(measurements.cores) cores (\(m["cpu"] ?? "CPU not recorded")), "
        + "\(m["memory"] ?? "memory not recorded"), Linux \(m["kernel"] ?? "?"), "
        + "\(m["mpi"] ?? "MPI not recorded"), \(m["blas"] ?? "BLAS not recorded").")
    lines.append(
      "- Model: \(m["model"] ?? "the default network"); each step allreduces "
        + "\(megabytes(allreduceBytes)) MB: every task's gradient on the shared encoder, the "
        + "heads' gradients and the losses, in one buffer.")
    lines.append(
      "- Each point is the median of \(repeats.min() ?? 0)-\(repeats.max() ?? 0) runs, each "
        + "run the median step time of `concord bench step` on synthetic images; the spread "
        + "is the lowest and highest run. A `*` marks oversubscription: more ranks than the "
        + "machine's \(measurements.cores) cores.")
    if !measurements.networks.isEmpty {
      lines.append(
        "- Emulated hosts: network namespaces of this machine (`launch/netns-cluster`), one "
          + "rank per host, so every message between ranks crosses an emulated link. All "
          + "hosts share the machine's cores. Link profiles:")
      for network in measurements.networks {
        lines.append(
          "  - `\(network.name)`: \(number(network.delayMilliseconds, 2)) ms one-way delay per "
            + "host, \(network.rate), emulated by \(network.mechanism).")
      }
    }
    return lines.joined(separator: "\n")
  }

  private func scalingSection(_ scaling: String, title: String) -> String {
    let points = measurements.steps.filter { $0.scaling == scaling && $0.label == "default" }
    guard let first = points.first else { return "## \(title)\n\nNot measured." }
    let batch =
      scaling == "strong"
      ? "\(first.batchSize) images per step, split over the ranks"
      : "\(Int(first.localBatch)) images per rank"
    var lines = [
      "## \(title)", "",
      "\(batch). Speed-up and efficiency are against one rank on one host with the same "
        + (scaling == "strong" ? "global batch." : "batch per rank."), "",
      "| network | hosts | ranks | step ms (spread) | images/s | speed-up | efficiency "
        + "| compute ms | exposed allreduce ms | balancing ms | optimizer ms | model ms | model error |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for point in points {
      let base = baseline(of: point)
      let speedUp = base.map { point.samplesPerSecond / $0.samplesPerSecond }
      let check = checks.first {
        $0.point.network == point.network && $0.point.ranks == point.ranks
          && $0.point.scaling == point.scaling && $0.point.hosts == point.hosts
      }
      let exposed = point.phase("allreduce")
      let oversubscribed = point.ranks > measurements.cores ? "*" : ""
      lines.append(
        "| \(point.network) | \(point.hosts) | \(point.ranks)\(oversubscribed) | "
          + "\(number(point.medianMilliseconds, 1)) (\(number(point.stepMilliseconds.min()!, 1))-"
          + "\(number(point.stepMilliseconds.max()!, 1))) | \(number(point.samplesPerSecond, 0)) | "
          + "\(speedUp.map { number($0, 2) } ?? "-") | "
          + "\(efficiency(of: point).map(percent) ?? "-") | "
          + "\(number(point.medianMilliseconds - exposed, 1)) | \(number(exposed, 1)) | "
          + "\(number(point.phase("balancing"), 2)) | \(number(point.phase("optimizer"), 2)) | "
          + "\(check.map { number($0.predictedMilliseconds, 1) } ?? "-") | "
          + "\(check.map { signedPercent($0.relativeError) } ?? "-") |")
    }
    return lines.joined(separator: "\n")
  }

  private func allreduceSection() -> String {
    var lines = [
      "## Allreduce against message size", "",
      "Each size is timed as a plain `MPI_Allreduce` (separate buffers), as Concord's "
        + "communicator (in place, as the step calls it), and as Concord's bfloat16 allreduce "
        + "of the same float count, interleaved in one run. A sample is the slowest rank's "
        + "time; the table gives medians with the 10th-90th percentile of the plain call. Bus "
        + "bandwidth is 2(p-1)/p times bytes over time, as nccl-tests define it.",
    ]
    let groups = Dictionary(grouping: measurements.allreduces) {
      "\($0.network)|\($0.hosts)|\($0.ranks)"
    }
    for key in groups.keys.sorted() {
      let points = groups[key]!.sorted { $0.bytes < $1.bytes }
      let head = points[0]
      lines.append("")
      lines.append(
        "**\(head.network), \(head.ranks) ranks on \(head.hosts) host(s)**"
          + (linkFitErrors[head.network].map {
            " (alpha-beta fit: median error \(percent($0)) from 256 KiB up, "
              + "\(percent(linkSweepErrors[head.network] ?? .nan)) over all sizes)"
          } ?? ""))
      lines.append("")
      lines.append(
        "| bytes | MPI_Allreduce µs (p10-p90) | Concord µs | bandwidth, Concord / MPI | bfloat16 µs "
          + "| MPI bus GB/s | Concord bus GB/s |")
      lines.append("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
      for point in points {
        let factor = 2 * Double(point.ranks - 1) / Double(point.ranks)
        func bus(_ microseconds: Double) -> String {
          point.ranks > 1 ? number(factor * point.bytes / microseconds / 1e3, 2) : "-"
        }
        let plain = point.plain.first ?? .nan
        let concord = point.concord.first ?? .nan
        lines.append(
          "| \(byteSize(point.bytes)) | \(number(plain, 1)) (\(number(point.plain[safe: 1], 1))-"
            + "\(number(point.plain[safe: 2], 1))) | \(number(concord, 1)) | "
            + "\(number(plain / concord, 2)) | "
            + "\(point.bfloat16.first.map { number($0, 1) } ?? "-") | \(bus(plain)) | "
            + "\(bus(concord)) |")
      }
    }
    if measurements.allreduces.isEmpty { lines.append("\nNot measured.") }
    return lines.joined(separator: "\n")
  }

  private func optionsSection() -> String {
    var lines = [
      "## Communication options, on and off", "",
      "Each option against the default (one fused allreduce of all tasks, float32, blocking) "
        + "in the same network, ranks and batch.", "",
      "| network | hosts | ranks | options | step ms (spread) | exposed allreduce ms | images/s "
        + "| against default |",
      "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: |",
    ]
    var rows = 0
    var listedBases: [Int] = []
    for point in measurements.steps where point.label != "default" {
      let baseIndex = measurements.steps.firstIndex {
        $0.label == "default" && $0.network == point.network && $0.hosts == point.hosts
          && $0.ranks == point.ranks && $0.batchSize == point.batchSize
          && $0.scaling == point.scaling
      }
      let base = baseIndex.map { measurements.steps[$0] }
      // Each default row once, above the options measured against it.
      var tableRows = [point]
      if let baseIndex, let base, !listedBases.contains(baseIndex) {
        listedBases.append(baseIndex)
        tableRows.insert(base, at: 0)
      }
      for row in tableRows {
        lines.append(
          "| \(row.network) | \(row.hosts) | \(row.ranks) | \(row.label) | "
            + "\(number(row.medianMilliseconds, 1)) (\(number(row.stepMilliseconds.min()!, 1))-"
            + "\(number(row.stepMilliseconds.max()!, 1))) | \(number(row.phase("allreduce"), 2)) | "
            + "\(number(row.samplesPerSecond, 0)) | "
            + "\(base.map { number($0.medianMilliseconds / row.medianMilliseconds, 2) + "x" } ?? "-") |"
        )
      }
      rows += 1
    }
    if rows == 0 { lines.append("| not measured | | | | | | | |") }
    if !measurements.accuracies.isEmpty {
      lines += [
        "", "Accuracy of full training runs (Fashion-MNIST) with each allreduce precision:", "",
        "| options | ranks | epochs | test accuracy | kNN accuracy | seconds |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
      ]
      for run in measurements.accuracies {
        lines.append(
          "| \(run.label) | \(run.ranks) | \(run.epochs) | "
            + "\(run.testAccuracy.map { number($0, 4) } ?? "-") | \(number(run.knnAccuracy, 4)) | "
            + "\(number(run.seconds, 0)) |")
      }
    }
    return lines.joined(separator: "\n")
  }

  private func modelSection() -> String {
    guard let model else {
      return "## Scaling model\n\nNot fitted: the records hold no single-host step."
    }
    var lines = [
      "## Scaling model", "",
      "A step of p ranks with b images each takes `s * (c0 + c1 * b + T_ring(p, n))`: `s` is "
        + "max(1, ranks on the machine / cores), the slowdown of ranks that share cores, which "
        + "slows communication too (its copies and TCP processing share the cores, and waiting "
        + "ranks poll); "
        + "`c0 + c1 * b` is one rank's compute (augmentation, forward and backward passes, "
        + "balancing, optimizer), fitted to the single-host runs whose ranks each have a core; "
        + "`T_ring(p, n) = 2(p-1) * alpha + 2(p-1)/p * n / B` is a ring allreduce of the "
        + "step's n bytes over a link of latency alpha and bandwidth B, fitted to that "
        + "network's allreduce sweep from 256 KiB up (least squares on the relative error; "
        + "Open MPI's TCP transport sends messages up to 64 KiB eagerly and larger ones after "
        + "a rendezvous, which costs two more trips, so one alpha cannot fit both). The allreduce is "
        + "counted in full: with one core per rank Concord runs it blocking.", "",
      "- Compute: c0 = \(number(model.compute.fixed * 1e3, 2)) ms per step, c1 = "
        + "\(number(model.compute.perSample * 1e6, 1)) µs per image.",
    ]
    for (name, link) in model.links.sorted(by: { $0.key < $1.key }) {
      lines.append(
        "- Link `\(name)`: alpha = \(number(link.latency * 1e6, 1)) µs, B = "
          + "\(number(link.bandwidth / 1e9, 3)) GB/s (\(number(link.bandwidth * 8 / 1e9, 2)) "
          + "Gbit/s); median error \(linkFitErrors[name].map(percent) ?? "-") on the sizes from "
          + "256 KiB up, \(linkSweepErrors[name].map(percent) ?? "-") on all sizes.")
    }
    let error = checkError
    lines.append(
      "- Against the \(checks.count) measured step points: median error \(percent(error.median)), "
        + "largest \(percent(error.maximum)) (the model ms and model error columns above).")
    let worst = checks.max { abs($0.relativeError) < abs($1.relativeError) }
    if let worst {
      lines.append(
        "- The largest error is at \(worst.point.ranks) ranks on \(worst.point.network) "
          + "(\(worst.point.scaling) scaling): measured \(number(worst.point.medianMilliseconds, 1)) "
          + "ms, predicted \(number(worst.predictedMilliseconds, 1)) ms.")
    }
    return lines.joined(separator: "\n")
  }

  private func projectionSection() -> String {
    guard model != nil, !projections.isEmpty else { return "## Projection\n\nNot fitted." }
    var lines = [
      "## Projection to 8, 64 and 512 nodes", "",
      "The stated node: \(measurements.cores) cores like this machine's, one rank per core "
        + "with the compute fitted above, \(Int(Self.projectedLocalBatch)) images per rank "
        + "(weak scaling), and the same model (\(megabytes(allreduceBytes)) MB allreduced per "
        + "step). Nodes are joined by one link profile, a full-bisection network; the ring runs "
        + "over all ranks and each of its steps waits for the inter-node link. The "
        + "`\(Self.referenceLink.name)` profile is stated, not measured: 25 Gbit/s and "
        + "5 µs per message, the network of Horovod's published benchmark. Efficiency is "
        + "compute over step time.", "",
      "| link | nodes | ranks | step ms | efficiency, ring | efficiency, halving-doubling "
        + "| efficiency, bfloat16 ring | images/s |",
      "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for p in projections {
      lines.append(
        "| \(p.network) | \(p.nodes) | \(p.ranks) | \(number(p.stepMilliseconds, 1)) | "
          + "\(percent(p.efficiency)) | \(percent(p.halvingDoublingEfficiency)) | "
          + "\(percent(p.bfloat16Efficiency)) | \(number(p.samplesPerSecond, 0)) |")
    }
    return lines.joined(separator: "\n")
  }

  private func publishedSection() -> String {
    let reference = projections.filter { $0.network == Self.referenceLink.name }
    let at64 = reference.first { $0.nodes == 64 }
    let at512 = reference.first { $0.nodes == 512 }
    var lines = [
      "## Against published scaling", "",
      "- Horovod: 90% scaling efficiency for Inception V3 and ResNet-101 and 68% for VGG-16 "
        + "on 512 GPUs (128 servers with 4 Pascal GPUs, 25 Gbit/s RoCE). Sergeev and Del "
        + "Balso, \"Horovod: fast and easy distributed deep learning in TensorFlow\", "
        + "arXiv:1802.05799, 2018, and Horovod's documentation, docs/benchmarks.rst.",
      "- Goyal et al., \"Accurate, Large Minibatch SGD: Training ImageNet in 1 Hour\", "
        + "arXiv:1706.02677, 2017: about 90% scaling efficiency for ResNet-50 from 8 to 256 "
        + "GPUs.",
      "- Li et al., \"PyTorch Distributed: Experiences on Accelerating Data Parallel "
        + "Training\", VLDB 2020 (arXiv:2006.15704): near-linear scaling of DistributedDataParallel "
        + "up to 256 GPUs.",
    ]
    if let at64, let at512, let model {
      let compute = model.compute.seconds(localBatch: Self.projectedLocalBatch)
      lines.append("")
      lines.append(
        "On the stated 25 Gbit/s link the model projects \(percent(at64.efficiency)) at 64 "
          + "nodes and \(percent(at512.efficiency)) at 512 nodes (\(percent(at512.halvingDoublingEfficiency)) "
          + "with halving-doubling). What sets the difference from the published figures is "
          + "compute per byte allreduced: one rank here computes for "
          + "\(number(compute * 1e3, 1)) ms per step and allreduces "
          + "\(megabytes(allreduceBytes)) MB, \(number(compute * 1e3 / (allreduceBytes / 1e6), 2)) "
          + "ms per MB, because Concord sends one gradient per task on the shared encoder. "
          + "VGG-16, the published model with the least compute per byte (138 million "
          + "parameters, 553 MB per step), is also the one that scaled worst, at 68%.")
    }
    return lines.joined(separator: "\n")
  }

  private func assumptionsSection() -> String {
    var lines = ["## Which assumptions break first", ""]
    if let model,
      let link = model.links.filter({ $0.key != "local" }).min(by: {
        $0.value.latency > $1.value.latency
      })
    {
      let ranks = Self.projectedNodes.last! * measurements.cores
      let latencyTerm = 2 * Double(ranks - 1) * link.value.latency
      let halving = 2 * log2(Double(ranks)) * link.value.latency
      lines.append(
        "1. The ring's latency term. At \(ranks) ranks on `\(link.key)` it alone costs "
          + "\(number(latencyTerm * 1e3, 1)) ms per step, against \(number(halving * 1e3, 2)) ms "
          + "for halving-doubling. MPI libraries switch algorithms by message size and rank "
          + "count (Open MPI's tuned collectives do), so the ring column is a floor on "
          + "efficiency at many nodes, and the halving-doubling column is closer to what "
          + "Open MPI would run.")
    } else {
      lines.append(
        "1. The ring's latency term, 2(p-1) alpha, grows with the ranks; at hundreds of nodes "
          + "MPI libraries switch to halving-doubling or trees.")
    }
    let oversubscribed = checks.filter { $0.point.ranks > measurements.cores }
    let oversubscribedError = median(oversubscribed.map { abs($0.relativeError) })
    lines.append(
      "2. Shared cores. Every emulated host runs on this machine's \(measurements.cores) "
        + "cores, and so does the link emulator when the kernel lacks netem. The model "
        + "slows the whole step by ranks over cores, as if the cores were shared evenly; "
        + "Open MPI's waiting ranks poll and the emulator takes its own share, so sharing is "
        + "not even"
        + (oversubscribed.isEmpty
          ? "."
          : ": on the \(oversubscribed.count) oversubscribed points the median model error is "
            + "\(percent(oversubscribedError)).")
        + " On a real cluster each rank has its own core and this term vanishes.")
    lines.append(
      "3. A full-bisection network without contention or jitter. Real clusters share "
        + "switches, and at 512 nodes each step waits for the slowest of all ranks, so "
        + "stragglers lower efficiency further than the mean compute time suggests.")
    lines.append(
      "4. A fixed batch per rank. Weak scaling to 512 nodes means a global batch of "
        + "\(Int(Self.projectedLocalBatch) * measurements.cores * 512) images; the model says "
        + "nothing about the accuracy at that batch, which needs learning-rate scaling and "
        + "warm-up (Goyal et al.) or LARS.")
    lines.append(
      "5. Compute that does not change with scale. Per-rank compute is measured on this "
        + "machine's cores with their cache and memory bandwidth; a node with more cores per "
        + "memory channel computes more slowly per core.")
    return lines.joined(separator: "\n")
  }
}

// MARK: - Formatting

private func number(_ value: Double, _ digits: Int) -> String {
  value.isFinite ? String(format: "%.\(digits)f", value) : "-"
}

private func percent(_ fraction: Double) -> String {
  fraction.isFinite ? String(format: "%.1f%%", fraction * 100) : "-"
}

private func signedPercent(_ fraction: Double) -> String {
  fraction.isFinite ? String(format: "%+.1f%%", fraction * 100) : "-"
}

private func megabytes(_ bytes: Double) -> String { String(format: "%.2f", bytes / 1e6) }

private func byteSize(_ bytes: Double) -> String {
  if bytes >= 1_048_576 { return String(format: "%g MiB", bytes / 1_048_576) }
  if bytes >= 1024 { return String(format: "%g KiB", bytes / 1024) }
  return String(format: "%g B", bytes)
}

extension Array where Element == Double {
  fileprivate subscript(safe index: Int) -> Double { index < count ? self[index] : .nan }
}
