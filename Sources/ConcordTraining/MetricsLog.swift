import Foundation

/// Rank 0's output: the progress lines on the console and `metrics.jsonl` in the run folder.
///
/// On every other rank it prints and writes nothing, so callers need not check the rank.
final class MetricsLog {
  private let isRoot: Bool
  private let handle: FileHandle?
  /// Whether rank 0's standard output is a terminal, which shows one progress line redrawn
  /// in place instead of a line per logging interval.
  let isTerminal: Bool
  private var isShowingProgress = false

  init(isRoot: Bool, path: String?) throws {
    self.isRoot = isRoot
    isTerminal = isRoot && Terminal.isStandardOutputTerminal
    guard isRoot, let path else {
      handle = nil
      return
    }
    if !FileManager.default.fileExists(atPath: path) {
      guard FileManager.default.createFile(atPath: path, contents: nil) else {
        throw TrainingError(
          "cannot create \(path): check that the run folder is writable or pass another --out")
      }
    }
    guard let handle = FileHandle(forUpdatingAtPath: path) else {
      throw TrainingError("cannot open \(path) for writing: pass another --out")
    }
    handle.seekToEndOfFile()
    self.handle = handle
  }

  /// Prints a line on rank 0's standard output.
  func print(_ line: String) {
    guard isRoot else { return }
    // Carriage return and "erase to end of line" (ANSI CSI K) remove the progress line,
    // which the next progress update draws again below this line.
    let prefix = isShowingProgress ? "\r\u{1B}[K" : ""
    isShowingProgress = false
    FileHandle.standardOutput.write((prefix + line + "\n").data(using: .utf8)!)
  }

  /// Draws `text` over the progress line on a terminal, cut to the terminal's width so that
  /// it never wraps (a wrapped line cannot be redrawn in place).
  func showProgress(_ text: String) {
    guard isTerminal else { return }
    let width = (Terminal.columns ?? 80) - 1
    let shown = text.count > width ? String(text.prefix(max(width, 0))) : text
    FileHandle.standardOutput.write(("\r" + shown + "\u{1B}[K").data(using: .utf8)!)
    isShowingProgress = true
  }

  /// Ends the progress line, leaving its last text on the screen.
  func endProgress() {
    guard isShowingProgress else { return }
    FileHandle.standardOutput.write("\n".data(using: .utf8)!)
    isShowingProgress = false
  }

  /// Drops the lines logged after step `step`, as a resumed run logs those steps again.
  ///
  /// Lines are in step order, each starting `{"step": N,`; the file is cut after the last
  /// line whose step is at most `step`.
  func truncate(afterStep step: Int) throws {
    guard let handle else { return }
    handle.seek(toFileOffset: 0)
    let data = handle.readDataToEndOfFile()
    var keep = 0
    var lineStart = 0
    let bytes = [UInt8](data)
    for index in bytes.indices where bytes[index] == UInt8(ascii: "\n") {
      let line = String(decoding: bytes[lineStart..<index], as: UTF8.self)
      if let logged = Self.step(of: line), logged > step { break }
      keep = index + 1
      lineStart = index + 1
    }
    try handle.truncate(atOffset: UInt64(keep))
    handle.seekToEndOfFile()
  }

  private static func step(of line: String) -> Int? {
    guard line.hasPrefix("{\"step\": ") else { return nil }
    return Int(line.dropFirst("{\"step\": ".count).prefix { $0.isNumber })
  }

  /// Appends one JSON object to `metrics.jsonl`.
  func record(_ line: JSONLine) {
    handle?.write((line.text + "\n").data(using: .utf8)!)
  }

  deinit {
    try? handle?.close()
  }
}

/// Prints a warning on standard error, prefixed with the rank.
func warn(rank: Int, _ message: String) {
  FileHandle.standardError.write("concord: rank \(rank): warning: \(message)\n".data(using: .utf8)!)
}

/// Formats a duration in seconds as `1h02m`, `3m05s` or `12s`.
func formatDuration(_ seconds: Double) -> String {
  guard seconds.isFinite && seconds >= 0 else { return "?" }
  // The cap keeps Int(_:) from trapping on the eta of an absurd --steps.
  let total = Int(min(seconds, 1e15).rounded())
  if total >= 3600 { return "\(total / 3600)h" + String(format: "%02dm", (total % 3600) / 60) }
  if total >= 60 { return "\(total / 60)m" + String(format: "%02ds", total % 60) }
  return "\(total)s"
}
