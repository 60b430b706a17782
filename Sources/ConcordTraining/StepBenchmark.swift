import ConcordData
import ConcordDistributed
import ConcordModel
import ConcordTensors
import Foundation

/// The figures of `concord bench step`, as one JSON object prints them.
public struct StepBenchmarkReport: Sendable {
  /// The median milliseconds per step, and the 10th and 90th percentiles.
  public var stepMilliseconds: (median: Double, p10: Double, p90: Double)
  /// Mean milliseconds per step of each phase, in the order of the step.
  public var phaseMilliseconds: [(name: String, milliseconds: Double)]
  /// Floating-point operations of the matrix products of one step on one rank.
  public var flopsPerStep: Double
  /// The model's matrix-product throughput: ``flopsPerStep`` over the median step time.
  public var modelGFLOPS: Double
  /// `cblas_sgemm` alone on the same shapes, in the same run.
  public var sgemmGFLOPS: Double
  /// The bytes of the fused buffer that one step allreduces.
  public var allreduceBytes: Int
  /// Bandwidth of the step's allreduce, run alone after a barrier in the step's regions and
  /// mode: bytes over its median time.
  public var allreduceGBPS: Double
  /// The median milliseconds of that allreduce.
  public var allreduceMilliseconds: Double
  /// The milliseconds per step that the step waited for its allreduce (mean).
  public var exposedAllreduceMilliseconds: Double
  /// Bandwidth of a plain `MPI_Allreduce` of the same bytes, in the same run.
  public var mpiAllreduceGBPS: Double
  /// Milliseconds of a plain `MPI_Allreduce` of the same bytes (median).
  public var mpiAllreduceMilliseconds: Double
  /// Images per second, all ranks together.
  public var samplesPerSecond: Double
  /// The largest resident set of any rank, in MB (2^20 bytes).
  public var peakResidentMB: Double
  /// The resident set before the trainer allocates anything: the Swift runtime, MPI and
  /// OpenBLAS (after its first call), in MB; the largest over the ranks.
  public var baselineResidentMB: Double
  /// The analytic size of one rank's training state, in MB.
  public var analyticMB: Double
  /// The number of ranks.
  public var ranks: Int
  /// OpenBLAS threads per rank.
  public var blasThreads: Int
  /// The global batch in images.
  public var batchSize: Int
  /// The allreduce mode of the step.
  public var allreduceMode: AllreduceMode
  /// One allreduce of every task's gradients, or one per task.
  public var allreduceFusion: AllreduceFusion
  /// The number format of the gradients in the allreduce.
  public var allreducePrecision: AllreducePrecision
  /// The allreduce calls of one step.
  public var allreduceCalls: Int
  /// Each distinct matrix product shape of the step, in the order of its first call, with its
  /// calls per step and the throughput of `cblas_sgemm` alone on it.
  public var gemmShapes: [(shape: GEMMShape, calls: Int, sgemmGFLOPS: Double)] = []
  /// The encoder, as `mlp 512,256` or `conv 32,64,128`.
  public var encoder = ""
  /// The adapters, as `none` or `parallel rank 16`.
  public var adapters = "none"
}

/// Measures the training step: time per step and per phase, next to the limits of the
/// machine measured in the same run (`cblas_sgemm` on the step's shapes, a plain
/// `MPI_Allreduce` of the step's bytes).
///
/// The step is the trainer's own, on synthetic images (uniform pixels, random labels), so that
/// the figures do not depend on the dataset and its memory is small. Every rank must call
/// ``run(configuration:communicator:warmupSteps:steps:)``.
public enum StepBenchmark {
  /// Runs the benchmark and returns the report on every rank.
  public static func run(
    configuration: TrainingConfiguration, communicator: Communicator, warmupSteps: Int,
    steps: Int
  ) throws -> StepBenchmarkReport {
    // The resident set before Concord allocates: runtime, MPI, OpenBLAS's buffers.
    let probe = Matrix(rows: 64, columns: 64)
    BLAS.gemm(probe, probe, into: Matrix(rows: 64, columns: 64))
    let baseline = currentResidentMegabytes()

    var c = configuration
    c.outputDirectory = NSTemporaryDirectory() + "concord-bench-\(getpid())"
    c.checkpointEvery = Int.max
    c.logEvery = 0
    c.steps = warmupSteps + steps
    let images = 4 * c.batchSize
    let (trainSet, testSet) = syntheticDatasets(count: images, seed: c.seed)
    let trainer = try Trainer(
      configuration: c, communicator: communicator, trainSet: trainSet, testSet: testSet)
    defer {
      if communicator.isRoot { try? FileManager.default.removeItem(atPath: c.outputDirectory) }
    }
    let localBatch = c.batchSize / communicator.size

    // Warm-up, recording the matrix shapes of the last warm-up step.
    for index in 0..<warmupSteps {
      if index == warmupSteps - 1 { BLAS.recordedShapes = [] }
      _ = try trainer.trainStep(localBatch: localBatch)
      trainer.step += 1
    }
    let shapes = BLAS.recordedShapes ?? []
    BLAS.recordedShapes = nil
    trainer.recorder.reset()

    var times: [Double] = []
    for _ in 0..<steps {
      try communicator.barrier()
      let start = StepRecorder.now()
      _ = try trainer.trainStep(localBatch: localBatch)
      times.append(Double(StepRecorder.now() - start) / 1e6)
      trainer.step += 1
    }
    times.sort()
    // The peak of the training step itself, before the measurements below allocate their
    // own operands.
    let stepPeak = residentMegabytes()

    let flops = Double(shapes.reduce(0) { $0 + $1.flops })
    let sgemmSeconds = try timeGEMMs(shapes, communicator: communicator)
    var distinct: [(shape: GEMMShape, calls: Int, sgemmGFLOPS: Double)] = []
    for shape in shapes {
      if let index = distinct.firstIndex(where: { $0.shape == shape }) {
        distinct[index].calls += 1
      } else {
        distinct.append((shape, 1, 0))
      }
    }
    for index in distinct.indices {
      let shape = distinct[index].shape
      let seconds = try timeGEMMs([shape], communicator: communicator)
      distinct[index].sgemmGFLOPS = Double(shape.flops) / (seconds * 1e9)
    }
    let bytes = trainer.model.reduceBuffer.count * MemoryLayout<Float>.stride
    let allreduceMilliseconds = try timeAllreduce(
      count: trainer.model.reduceBuffer.count, communicator: communicator)
    var fusedTimes: [Double] = []
    for _ in 0..<10 {
      try communicator.barrier()
      let start = StepRecorder.now()
      try trainer.reduceAsInStep()
      fusedTimes.append(Double(StepRecorder.now() - start) / 1e6)
    }
    let fusedMilliseconds = percentile(fusedTimes.sorted(), 0.5)

    var phases: [(String, Double)] = []
    let names = c.tasks.map(\.rawValue)
    let order: [StepPhase] =
      [.data, .forward] + (0..<names.count).map { .task($0) } + [
        .encoderBackward, .allreduce, .balancing, .optimizer,
      ]
    for phase in order {
      let total = Double(trainer.recorder.totals[phase] ?? 0) / 1e6 / Double(steps)
      phases.append((phaseName(phase, names), total))
    }
    let exposed = phases.first { $0.0 == "allreduce" }?.1 ?? 0

    var peak = [stepPeak, baseline]
    try communicator.allreduceMaxDouble(&peak)
    let median = percentile(times, 0.5)
    return StepBenchmarkReport(
      stepMilliseconds: (median, percentile(times, 0.1), percentile(times, 0.9)),
      phaseMilliseconds: phases, flopsPerStep: flops, modelGFLOPS: flops / (median * 1e6),
      sgemmGFLOPS: flops / (sgemmSeconds * 1e9), allreduceBytes: bytes,
      allreduceGBPS: communicator.size > 1 ? Double(bytes) / (fusedMilliseconds * 1e6) : 0,
      allreduceMilliseconds: fusedMilliseconds, exposedAllreduceMilliseconds: exposed,
      mpiAllreduceGBPS: communicator.size > 1 ? Double(bytes) / (allreduceMilliseconds * 1e6) : 0,
      mpiAllreduceMilliseconds: allreduceMilliseconds,
      samplesPerSecond: Double(c.batchSize) / (median / 1e3), peakResidentMB: peak[0],
      baselineResidentMB: peak[1],
      analyticMB: analyticMegabytes(trainer: trainer, localBatch: localBatch),
      ranks: communicator.size, blasThreads: BLAS.threadCount, batchSize: c.batchSize,
      allreduceMode: trainer.allreduceMode, allreduceFusion: c.allreduceFusion,
      allreducePrecision: c.allreducePrecision, allreduceCalls: trainer.allreduceCallsPerStep,
      gemmShapes: distinct, encoder: c.encoderDescription, adapters: c.adapterDescription)
  }

  static func phaseName(_ phase: StepPhase, _ tasks: [String]) -> String {
    switch phase {
    case .data: "data"
    case .forward: "forward"
    case .task(let t): "task \(tasks[t])"
    case .encoderBackward: "encoder backward"
    case .allreduce: "allreduce"
    case .balancing: "balancing"
    case .optimizer: "optimizer"
    case .checkpoint: "checkpoint"
    }
  }

  /// Fashion-MNIST-shaped random data: 28 x 28 pixels uniform in [0, 1), ten classes.
  static func syntheticDatasets(count: Int, seed: UInt64) -> (Dataset, Dataset) {
    func make(_ count: Int, _ counter: UInt64) -> Dataset {
      var stream = RandomStream(seed: seed, purpose: .test, counters: counter)
      let images = FloatBuffer(count: count * 784)
      for i in 0..<images.count { images.baseAddress[i] = stream.uniform() }
      let labels = (0..<count).map { _ in Int32(stream.integer(below: 10)) }
      return Dataset(images: images, labels: labels, height: 28, width: 28, classCount: 10)
    }
    return (make(count, 1), make(256, 2))
  }

  /// Seconds to run every product of `shapes` once with `cblas_sgemm`: the fastest of five
  /// repetitions.
  ///
  /// All ranks run at once, as in the step, so that they share the machine alike.
  static func timeGEMMs(_ shapes: [GEMMShape], communicator: Communicator) throws -> Double {
    let operands = shapes.map { shape in
      (
        Matrix(
          rows: shape.transposeA ? shape.k : shape.m, columns: shape.transposeA ? shape.m : shape.k),
        Matrix(
          rows: shape.transposeB ? shape.n : shape.k, columns: shape.transposeB ? shape.k : shape.n),
        Matrix(rows: shape.m, columns: shape.n)
      )
    }
    for (a, _, _) in operands { a.fill(0.5) }
    for (_, b, _) in operands { b.fill(0.25) }
    var best = Double.infinity
    for _ in 0..<5 {
      try communicator.barrier()
      let start = StepRecorder.now()
      for (shape, (a, b, c)) in zip(shapes, operands) {
        BLAS.gemm(a, transposeA: shape.transposeA, b, transposeB: shape.transposeB, into: c)
      }
      best = min(best, Double(StepRecorder.now() - start) / 1e9)
    }
    return best
  }

  /// Median milliseconds of a plain blocking allreduce of `count` floats over 10 repetitions.
  static func timeAllreduce(count: Int, communicator: Communicator) throws -> Double {
    let buffer = FloatBuffer(count: count)
    buffer.fill(1)
    var times: [Double] = []
    for _ in 0..<10 {
      try communicator.barrier()
      let start = StepRecorder.now()
      try communicator.allreduceSum(buffer.baseAddress, count: count)
      times.append(Double(StepRecorder.now() - start) / 1e6)
    }
    return percentile(times.sorted(), 0.5)
  }

  /// Returns the analytic size of one rank's state, in MB: parameters, the update, Adam's two
  /// moments, the BYOL target, the reduce buffer (T encoder gradients, head gradients,
  /// losses) and the allreduce's staging buffers, the activations and deltas of the encoder
  /// and heads, and the input batch.
  static func analyticMegabytes(trainer: Trainer, localBatch: Int) -> Double {
    let model = trainer.model
    let c = model.configuration
    let rows = 2 * localBatch
    let t = model.taskCount
    let widths = c.hiddenSizes
    var floats = 4 * model.layout.count  // parameters, update, two moments
    floats += model.target?.count ?? 0
    floats += model.reduceBuffer.count
    floats += trainer.allreduceStagingBytes / MemoryLayout<Float>.stride
    if let conv = model.encoder as? ConvEncoder {
      // The target network's buffers match the online network's.
      floats += conv.workspaceCount + (model.target == nil ? 0 : conv.network.workspaceCount)
    } else if let adapted = model.encoder as? AdaptedEncoder {
      let byol = model.heads.lazy.compactMap { $0 as? BYOLHead }.first
      let target = byol?.targetEncoder as? AdaptedMLP
      floats += adapted.workspaceCount + (target?.workspaceCount ?? 0)
    } else {
      floats += widths.reduce(0) { $0 + rows * $1 * (2 + t) }  // activations, deltas, wide deltas
    }
    floats += 3 * rows * c.inputSize  // two views and the stacked input
    floats += trainer.trainSet.images.count + trainer.testSet.images.count
    return Double(floats * MemoryLayout<Float>.stride) / 1_048_576
  }

  /// Returns the current resident set in MB, from `VmRSS` in `/proc/self/status`; 0 off Linux.
  static func currentResidentMegabytes() -> Double {
    guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
      let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
      let kilobytes = Double(line.split(separator: " ").dropFirst().first ?? "")
    else { return 0 }
    return kilobytes / 1024
  }

  static func residentMegabytes() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    return Double(usage.ru_maxrss) / 1024  // kilobytes on Linux
  }

  static func percentile(_ sorted: [Double], _ fraction: Double) -> Double {
    guard !sorted.isEmpty else { return .nan }
    let position = fraction * Double(sorted.count - 1)
    let lower = Int(position.rounded(.down))
    let upper = min(lower + 1, sorted.count - 1)
    let weight = position - Double(lower)
    return sorted[lower] * (1 - weight) + sorted[upper] * weight
  }
}

extension Communicator {
  /// Replaces each value by its maximum over the ranks.
  ///
  /// Every rank must call it.
  func allreduceMaxDouble(_ values: inout [Double]) throws {
    // The values are non-negative here, so the maximum of their bit patterns as integers is
    // the bit pattern of their maximum.
    for i in values.indices {
      let bits = try allreduceMax(Int(values[i].bitPattern))
      values[i] = Double(bitPattern: UInt64(bits))
    }
  }
}
