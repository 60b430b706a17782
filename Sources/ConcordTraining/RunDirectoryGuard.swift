import ConcordData
import ConcordModel
import Foundation

/// An advisory lock (`flock`) on `RUN_DIR/concord.lock`, held by rank 0 for the whole run, so
/// that two runs never write one run folder at once.
///
/// The kernel releases the lock when the process ends, however it ends, so a killed run never
/// leaves a stale lock behind. The file itself stays, empty, so that a run that fails to start
/// changes no file of an existing run folder.
final class RunDirectoryLock {
  /// The lock file.
  let path: String
  private let descriptor: Int32

  /// Creates or opens the lock file of `directory` and takes its lock without waiting.
  ///
  /// - Throws: ``UsageError`` when another process holds the lock; ``TrainingError`` when the
  ///   file cannot be created or locked.
  init(directory: String) throws {
    path = directory + "/concord.lock"
    descriptor = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
    guard descriptor >= 0 else {
      throw TrainingError(
        "cannot create \(path): \(String(cString: strerror(errno))); make \(directory) "
          + "writable or pass another --out")
    }
    guard flock(descriptor, LOCK_EX | LOCK_NB) == 0 else {
      let code = errno
      close(descriptor)
      if code == EWOULDBLOCK { throw Self.inUse(directory: directory, path: path) }
      throw TrainingError(
        "cannot lock \(path): \(String(cString: strerror(code))); pass an --out on a file "
          + "system that supports flock")
    }
  }

  deinit {
    close(descriptor)
  }

  /// Rejects `directory` when another process holds its lock.
  ///
  /// Call it before any check of the folder's contents, which could mistake a live run for
  /// an ended one. It creates no file.
  ///
  /// - Throws: ``UsageError`` naming the folder and the lock file.
  static func checkNotHeld(directory: String) throws {
    let path = directory + "/concord.lock"
    let probe = open(path, O_RDONLY | O_CLOEXEC)
    guard probe >= 0 else { return }
    defer { close(probe) }
    if flock(probe, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK {
      throw inUse(directory: directory, path: path)
    }
    flock(probe, LOCK_UN)
  }

  private static func inUse(directory: String, path: String) -> UsageError {
    UsageError(
      "--out \(directory) is in use by another concord train, which holds the lock on "
        + "\(path): wait for that run to end or pass another --out")
  }
}

extension Trainer {
  /// Rejects an `--out` that cannot become a run folder and a `--trace` file that exists,
  /// before anything is written.
  ///
  /// - Throws: ``UsageError`` naming the flag, the path and what to pass instead.
  static func checkOutputPaths(_ c: TrainingConfiguration, directory: String) throws {
    try checkOutputDirectory(directory)
    if let trace = c.tracePath, FileManager.default.fileExists(atPath: trace) {
      throw UsageError(
        "--trace \(trace) already exists: remove it or pass a new path; concord train never "
          + "overwrites a file with its trace")
    }
  }

  /// Rejects an `--out` folder that is a file, lies inside one, or cannot be written.
  ///
  /// - Throws: ``UsageError`` naming the path and what to pass instead.
  static func checkOutputDirectory(_ directory: String) throws {
    var isDirectory: ObjCBool = false
    if FileManager.default.fileExists(atPath: directory, isDirectory: &isDirectory) {
      guard isDirectory.boolValue else {
        throw UsageError("--out \(directory) exists and is not a folder: pass another --out")
      }
      guard access(directory, W_OK) == 0 else {
        throw UsageError("--out \(directory) is not writable: pass a writable --out")
      }
    } else {
      // The nearest existing ancestor decides whether the folder can be made.
      var ancestor = deletingLastPathComponent(directory)
      while !ancestor.isEmpty && !FileManager.default.fileExists(atPath: ancestor) {
        ancestor = deletingLastPathComponent(ancestor)
      }
      let parent = ancestor.isEmpty ? "." : ancestor
      _ = FileManager.default.fileExists(atPath: parent, isDirectory: &isDirectory)
      guard isDirectory.boolValue else {
        throw UsageError(
          "--out \(directory): \(parent) is a file, not a folder: pass another --out")
      }
      guard access(parent, W_OK) == 0 else {
        throw UsageError(
          "--out \(directory): the folder \(parent) is not writable: pass a writable --out")
      }
    }
  }

  /// Rejects settings that the data or the rank count make impossible, before the run folder
  /// is made.
  ///
  /// - Throws: ``UsageError`` naming the flag, the value and what to pass instead.
  static func checkSettings(_ c: TrainingConfiguration, trainCount: Int, ranks: Int) throws {
    // NT-Xent needs a second image to contrast with. With global negatives it may be on any
    // rank, but with local ones every rank needs its own.
    let localBatch = c.batchSize / ranks
    if c.tasks.contains(.simclr) && c.simclrNegatives == .global && c.batchSize < 2 {
      throw UsageError(
        "--batch-size \(c.batchSize) gives simclr's NT-Xent no negative pair: pass "
          + "--batch-size 2 or more")
    }
    if c.tasks.contains(.simclr) && c.simclrNegatives == .local && localBatch < 2 {
      throw UsageError(
        "--batch-size \(c.batchSize) gives \(localBatch) image per rank on \(ranks) rank(s), "
          + "but simclr's NT-Xent with local negatives needs at least 2 images per rank to "
          + "have a negative pair: pass --batch-size \(2 * ranks) or more"
          + (c.batchSize >= 2 ? ", or --simclr-negatives global" : ""))
    }
    // The default shrinks to a smaller training set, so only another value is rejected.
    let isDefaultNeighbours = c.knnNeighbours == TrainingConfiguration.defaultKNNNeighbours
    if c.knnNeighbours > trainCount && !isDefaultNeighbours {
      throw UsageError(
        "--knn \(c.knnNeighbours) exceeds the \(trainCount) training images that the kNN "
          + "evaluation searches: pass --knn \(trainCount) or less")
    }
  }

  /// Makes the run folder and its `checkpoints` folder, and takes the run folder's lock.
  ///
  /// Call it on rank 0 only.
  ///
  /// - Returns: the lock, and the paths that did not exist before, in the order they were made.
  static func prepareRunDirectory(_ directory: String) throws -> (RunDirectoryLock, [String]) {
    var created: [String] = []
    for path in [directory, directory + "/concord.lock", directory + "/checkpoints"]
    where !FileManager.default.fileExists(atPath: path) {
      created.append(path)
    }
    try makeDirectory(directory)
    let lock = try RunDirectoryLock(directory: directory)
    try makeDirectory(directory + "/checkpoints")
    return (lock, created)
  }

  /// Removes what this run made in the run folder before it failed to start, so that a failed
  /// `--resume` into a new `--out` leaves nothing behind.
  ///
  /// Only empty folders and an empty `metrics.jsonl` go, besides the lock file: whatever
  /// another process wrote in the meantime stays.
  func removeCreatedPaths() {
    guard communicator.isRoot else { return }
    for path in createdPaths.reversed() {
      var isDirectory: ObjCBool = false
      guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
        continue
      }
      if isDirectory.boolValue {
        _ = rmdir(path)
      } else if path.hasSuffix("/concord.lock") || Self.isEmptyFile(path) {
        _ = unlink(path)
      }
    }
  }

  private static func isEmptyFile(_ path: String) -> Bool {
    let attributes = try? FileManager.default.attributesOfItem(atPath: path)
    return (attributes?[.size] as? NSNumber)?.intValue == 0
  }
}
