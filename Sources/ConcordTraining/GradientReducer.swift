import ConcordDistributed
import ConcordModel
import ConcordTensors
import Foundation

/// The way the step's allreduce runs.
public enum AllreduceMode: String, Sendable, Codable, CaseIterable {
  /// ``overlap`` when the rank has a core that its BLAS threads leave free, else ``blocking``.
  ///
  /// Open MPI's blocking calls poll while they wait, so a communication thread without a core
  /// of its own takes turns with the compute thread. On 2 ranks of a 2-core host that made the
  /// backward pass 5-7 ms slower per step, more than the 3 ms that the overlap hid.
  case auto
  /// One blocking allreduce of the whole buffer after the backward pass.
  case blocking
  /// Buckets reduced by a communication thread while the backward pass goes on.
  case overlap
}

/// Sums the per-task gradients and losses over the ranks, bucket by bucket.
///
/// With ``AllreduceMode/overlap``, a communication thread owns every MPI call of the step.
/// The backward pass hands it each region of the reduce buffer as soon as the region is
/// final (``GradientObserver``), and the thread reduces the regions in that order while the
/// compute thread goes on. Open MPI 4.1 has no progress thread of its own, so a non-blocking
/// allreduce would only advance inside MPI calls; a thread that sits in blocking calls
/// advances the reduction while the compute thread runs GEMMs. Every rank hands over the same
/// regions in the same order, as collectives require.
///
/// MPI must be initialised with at least `MPI_THREAD_SERIALIZED`: the compute thread makes no
/// MPI call between ``begin()`` and ``finish()``, and the communication thread makes none
/// outside them.
final class GradientReducer: GradientObserver {
  private final class Shared: @unchecked Sendable {
    let allreduce: GradientAllreduce
    let lock = NSLock()
    let work = DispatchSemaphore(value: 0)
    let completed = DispatchSemaphore(value: 0)
    var queue: [(UnsafeMutablePointer<Float>, Int)] = []
    var next = 0
    var error: Error?
    var isStopping = false

    init(allreduce: GradientAllreduce, capacity: Int) {
      self.allreduce = allreduce
      queue.reserveCapacity(capacity)
    }

    func run() {
      while true {
        work.wait()
        lock.lock()
        if isStopping {
          lock.unlock()
          return
        }
        let (start, count) = queue[next]
        next += 1
        let failed = error != nil
        lock.unlock()
        if !failed {
          do {
            try allreduce.reduce(region: start, count: count)
          } catch {
            lock.lock()
            self.error = error
            lock.unlock()
          }
        }
        completed.signal()
      }
    }
  }

  let mode: AllreduceMode
  /// The calls that sum the buffer, in the run's fusion and precision.
  let allreduce: GradientAllreduce
  private let buffer: FloatBuffer
  private let shared: Shared
  private var submitted = 0
  private var covered = 0

  /// Creates the reducer of `model`'s reduce buffer; with ``AllreduceMode/overlap`` it starts
  /// its thread.
  ///
  /// - Throws: ``UsageError`` for ``AllreduceMode/overlap`` with ``AllreduceFusion/perTask``,
  ///   whose calls wait for the whole backward pass; ``AllreduceMode/auto`` resolves to
  ///   ``AllreduceMode/blocking`` there.
  init(
    communicator: Communicator, model: MultiTaskModel, mode: AllreduceMode,
    fusion: AllreduceFusion = .all, precision: AllreducePrecision = .float32
  ) throws {
    guard !(mode == .overlap && fusion == .perTask) else {
      throw UsageError(
        "--allreduce overlap cannot run with --allreduce-fusion per-task, whose allreduce calls "
          + "start after the backward pass: pass --allreduce blocking or --allreduce-fusion all")
    }
    let isConv = model.configuration.conv != nil
    guard !(mode == .overlap && isConv) else {
      throw UsageError(
        "--allreduce overlap cannot run with --encoder conv, whose batch normalisation sums "
          + "statistics over the ranks during the backward pass, when the communication thread "
          + "owns MPI: pass --allreduce blocking or auto")
    }
    var resolved = mode
    if mode == .auto {
      resolved = HostCores.hasSpareCore && fusion == .all && !isConv ? .overlap : .blocking
    }
    self.mode = communicator.size > 1 ? resolved : .blocking
    self.buffer = model.reduceBuffer
    allreduce = GradientAllreduce(
      communicator: communicator, model: model, fusion: fusion, precision: precision)
    shared = Shared(allreduce: allreduce, capacity: 64)
    if self.mode == .overlap {
      let shared = shared
      let thread = Thread { shared.run() }
      thread.name = "concord-allreduce"
      thread.start()
    }
  }

  deinit {
    shared.lock.lock()
    shared.isStopping = true
    shared.lock.unlock()
    if mode == .overlap { shared.work.signal() }
  }

  /// Starts a step: no region is reduced yet.
  func begin() {
    shared.lock.lock()
    shared.queue.removeAll(keepingCapacity: true)
    shared.next = 0
    shared.lock.unlock()
    allreduce.resetCallCount()
    submitted = 0
    covered = 0
  }

  /// Hands a final region to the communication thread (overlap), or notes it (blocking).
  func gradientsReady(_ start: UnsafeMutablePointer<Float>, count: Int) {
    covered += count
    guard mode == .overlap else { return }
    shared.lock.lock()
    shared.queue.append((start, count))
    shared.lock.unlock()
    submitted += 1
    shared.work.signal()
  }

  /// Waits until every region is summed over the ranks; with ``AllreduceMode/blocking``, runs
  /// the allreduce of the whole buffer now: one call, or one per task.
  ///
  /// - Throws: the first MPI error of the step.
  func finish() throws {
    switch mode {
    case .blocking, .auto:
      try allreduce.reduceAll()
    case .overlap:
      precondition(
        covered == buffer.count,
        "the reduced regions cover \(covered) of \(buffer.count) floats")
      for _ in 0..<submitted { shared.completed.wait() }
      shared.lock.lock()
      let error = shared.error
      shared.lock.unlock()
      if let error { throw error }
    }
  }
}
