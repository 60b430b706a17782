import ConcordBalancing
import ConcordDistributed
import Foundation

/// Rank 0's progress line on a terminal: epoch, step, per-task losses, throughput and time
/// left, redrawn in place about once a second.
///
/// Each call to ``add(step:losses:result:)`` counts one finished step. Once a second has
/// passed since the last drawing, or at the last step, it returns the text to draw, with the
/// losses averaged and the throughput measured over the steps since that drawing.
final class ProgressLine {
  /// The minimum time between two drawings, in nanoseconds.
  static let refreshInterval: UInt64 = 1_000_000_000

  private let taskNames: [String]
  private let batchSize: Int
  private let totalSteps: Int
  private let stepsPerEpoch: Int
  private var window: IntervalStatistics
  private var windowStart = StepRecorder.now()

  init(taskNames: [String], batchSize: Int, totalSteps: Int, stepsPerEpoch: Int) {
    self.taskNames = taskNames
    self.batchSize = batchSize
    self.totalSteps = totalSteps
    self.stepsPerEpoch = stepsPerEpoch
    window = IntervalStatistics(taskCount: taskNames.count)
  }

  /// Counts step `step` (the number of steps done) and returns the line to draw, or nil
  /// when the last drawing is less than ``refreshInterval`` old.
  func add(step: Int, losses: [Double], result: BalancingResult?) -> String? {
    window.add(losses: losses, result: result)
    let now = StepRecorder.now()
    guard now - windowStart >= Self.refreshInterval || step == totalSteps else { return nil }
    let seconds = Double(now - windowStart) / 1e9
    let samplesPerSecond = Double(window.steps * batchSize) / max(seconds, 1e-9)
    let secondsLeft = Double(totalSteps - step) * seconds / Double(max(window.steps, 1))
    let lossText = zip(taskNames, window.meanLosses)
      .map { "\($0) \(String(format: "%.4f", $1))" }
      .joined(separator: " ")
    let epoch = step == 0 ? 0 : (step - 1) / stepsPerEpoch
    window = IntervalStatistics(taskCount: taskNames.count)
    windowStart = now
    return "epoch \(epoch) step \(step)/\(totalSteps) | loss \(lossText) | "
      + "\(String(format: "%.0f", samplesPerSecond)) samples/s | eta \(formatDuration(secondsLeft))"
  }
}

/// The kind of standard output: a terminal or not, and the terminal's width.
enum Terminal {
  /// Whether standard output reaches a terminal, where a line can be redrawn in place.
  ///
  /// Open MPI 4.1's `mpirun` gives the ranks on its own host a pseudo-terminal as standard
  /// output even when its own output goes to a file or a pipe. Under an MPI launcher, this
  /// property therefore reports whether the launcher's (the parent process's) standard output
  /// is a terminal, read from `/proc`. A rank started by a remote daemon finds no terminal there and writes
  /// plain lines.
  static let isStandardOutputTerminal: Bool = {
    guard isatty(STDOUT_FILENO) != 0 else { return false }
    guard MPICommunicator.isLaunchedByMPI else { return true }
    guard let path = launcherOutputPath else { return false }
    return path.hasPrefix("/dev/pts/") || path.hasPrefix("/dev/tty") || path == "/dev/console"
  }()

  /// The width of the terminal in columns, or nil when it is unknown.
  static let columns: Int? = {
    if let width = columns(of: STDOUT_FILENO) { return width }
    // The pseudo-terminal of an MPI rank has no size; the launcher's terminal has one.
    guard MPICommunicator.isLaunchedByMPI, let path = launcherOutputPath else { return nil }
    let descriptor = open(path, O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC)
    guard descriptor >= 0 else { return nil }
    defer { close(descriptor) }
    return columns(of: descriptor)
  }()

  /// The file that the parent process writes its standard output to, as `/proc` names it.
  private static var launcherOutputPath: String? {
    var buffer = [CChar](repeating: 0, count: 4096)
    let count = readlink("/proc/\(getppid())/fd/1", &buffer, buffer.count - 1)
    guard count > 0 else { return nil }
    return String(decoding: buffer.prefix(count).map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }

  private static func columns(of descriptor: Int32) -> Int? {
    var size = winsize()
    guard ioctl(descriptor, UInt(TIOCGWINSZ), &size) == 0, size.ws_col > 0 else { return nil }
    return Int(size.ws_col)
  }
}
