#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// Whole-file writes that a crash cannot leave half done.
///
/// ``write(_:to:)-(UnsafeRawBufferPointer,_)`` writes to a temporary file in the destination's
/// directory, flushes it to the disk with `fsync`, renames it over the destination and then
/// flushes the directory, so that after a crash or power loss the destination contains either its
/// previous contents or the complete new ones. The temporary file is named
/// `.<file name>.tmp-<process id>`, and ``removeStrayTemporaryFiles(in:)`` deletes those that a
/// killed process left behind.
public enum AtomicFile {
  /// Returns whether the folder of `path` (the working folder for a bare name) exists and
  /// this process may create files in it, as a write to `path` needs.
  public static func canWrite(inFolderOf path: String) -> Bool {
    access(split(path).directory, W_OK) == 0
  }

  /// Returns the temporary path that a write to `path` by this process uses.
  public static func temporaryPath(for path: String) -> String {
    let (directory, fileName) = split(path)
    let separator = directory.hasSuffix("/") ? "" : "/"
    return "\(directory)\(separator).\(fileName).tmp-\(getpid())"
  }

  /// Replaces the file at `path` with `bytes`, atomically and durably.
  ///
  /// - Throws: ``AtomicFileError`` naming the path and the failed call. On failure the
  ///   temporary file is removed and an existing file at `path` is left unchanged, except when
  ///   only the final `fsync` of the directory fails: the new contents are then in place, but
  ///   may not survive a power loss.
  public static func write(_ bytes: [UInt8], to path: String) throws {
    try bytes.withUnsafeBytes { try write($0, to: path) }
  }

  /// Replaces the file at `path` with `bytes`, atomically and durably.
  ///
  /// - Throws: ``AtomicFileError`` naming the path and the failed call. On failure the
  ///   temporary file is removed and an existing file at `path` is left unchanged, except when
  ///   only the final `fsync` of the directory fails: the new contents are then in place, but
  ///   may not survive a power loss.
  public static func write(_ bytes: UnsafeRawBufferPointer, to path: String) throws {
    let (directory, fileName) = split(path)
    guard !fileName.isEmpty, fileName != ".", fileName != ".." else {
      throw AtomicFileError(path: path, call: "open", code: EISDIR)
    }
    let temporary = temporaryPath(for: path)

    let descriptor = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard descriptor >= 0 else {
      throw AtomicFileError(path: path, call: "open('\(temporary)')", code: errno)
    }
    var isOpen = true
    var isRenamed = false
    defer {
      if isOpen { close(descriptor) }
      if !isRenamed { unlink(temporary) }
    }

    try writeAll(bytes, to: descriptor, path: path, temporary: temporary)
    guard fsync(descriptor) == 0 else {
      throw AtomicFileError(path: path, call: "fsync('\(temporary)')", code: errno)
    }
    isOpen = false
    // Some file systems report write errors only at close, so its result matters too.
    guard close(descriptor) == 0 else {
      throw AtomicFileError(path: path, call: "close('\(temporary)')", code: errno)
    }
    guard rename(temporary, path) == 0 else {
      throw AtomicFileError(path: path, call: "rename('\(temporary)')", code: errno)
    }
    isRenamed = true
    try syncDirectory(directory, path: path)
  }

  /// Deletes the temporary files that interrupted writes left in `directory`.
  ///
  /// A name matches when it has the form `.<file name>.tmp-<digits>` and is a regular file.
  /// Call it only while no write into `directory` is in progress, because it also deletes the
  /// temporary file of a write that is still running.
  ///
  /// - Returns: the names of the deleted files, sorted.
  /// - Throws: ``AtomicFileError`` when the directory cannot be listed or a file not deleted.
  @discardableResult
  public static func removeStrayTemporaryFiles(in directory: String) throws -> [String] {
    guard let stream = opendir(directory) else {
      throw AtomicFileError(path: directory, call: "opendir", code: errno)
    }
    defer { closedir(stream) }

    var removed: [String] = []
    while let entry = readdir(stream) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
        String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
      }
      guard isTemporaryName(name) else { continue }
      let path = "\(directory)/\(name)"
      var status = stat()
      guard lstat(path, &status) == 0, (status.st_mode & S_IFMT) == S_IFREG else { continue }
      guard unlink(path) == 0 || errno == ENOENT else {
        throw AtomicFileError(path: path, call: "unlink", code: errno)
      }
      removed.append(name)
    }
    return removed.sorted()
  }

  /// Returns whether `name` has the form `.<file name>.tmp-<digits>`.
  static func isTemporaryName(_ name: String) -> Bool {
    let utf8 = Array(name.utf8)
    let marker = Array(".tmp-".utf8)
    guard utf8.first == UInt8(ascii: "."), utf8.count > 1 + marker.count else { return false }
    // The last ".tmp-" starts the process id, which must be all digits.
    var start = utf8.count - marker.count
    while start > 1, Array(utf8[start..<(start + marker.count)]) != marker { start -= 1 }
    guard start > 1, Array(utf8[start..<(start + marker.count)]) == marker else { return false }
    let digits = utf8[(start + marker.count)...]
    return !digits.isEmpty && digits.allSatisfy { (0x30...0x39).contains($0) }
  }

  /// Splits `path` into its directory (`.` when there is none) and its last component.
  private static func split(_ path: String) -> (directory: String, fileName: String) {
    guard let slash = path.lastIndex(of: "/") else { return (".", path) }
    let directory = String(path[..<slash])
    return (directory.isEmpty ? "/" : directory, String(path[path.index(after: slash)...]))
  }

  /// Writes all of `bytes`, resuming after partial writes and interrupted calls.
  private static func writeAll(
    _ bytes: UnsafeRawBufferPointer, to descriptor: Int32, path: String, temporary: String
  ) throws {
    // Linux transfers at most 0x7ffff000 bytes per call, so larger writes go in pieces.
    let maximumChunk = 1 << 30
    var offset = 0
    while offset < bytes.count {
      let length = min(bytes.count - offset, maximumChunk)
      let written = writeBytes(descriptor, bytes.baseAddress.map { $0 + offset }, length)
      if written < 0 {
        if errno == EINTR { continue }
        throw AtomicFileError(path: path, call: "write('\(temporary)')", code: errno)
      }
      guard written > 0 else {
        throw AtomicFileError(path: path, call: "write('\(temporary)') wrote 0 bytes", code: EIO)
      }
      offset += written
    }
  }

  /// Flushes `directory` so that a rename inside it survives a power loss.
  private static func syncDirectory(_ directory: String, path: String) throws {
    let descriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard descriptor >= 0 else {
      throw AtomicFileError(path: path, call: "open('\(directory)')", code: errno)
    }
    defer { close(descriptor) }
    // File systems without directory sync report EINVAL, because they keep renames without it.
    guard fsync(descriptor) == 0 || errno == EINVAL else {
      throw AtomicFileError(path: path, call: "fsync('\(directory)')", code: errno)
    }
  }
}

/// A failed system call while writing a file through ``AtomicFile``.
public struct AtomicFileError: Error, CustomStringConvertible, Equatable {
  /// The file that was being written, or the directory being cleaned.
  public let path: String
  /// The system call that failed, with its argument when it is not ``path``.
  public let call: String
  /// The `errno` value the call set.
  public let code: Int32

  /// Creates an error for `call` failing with `code` while writing `path`.
  public init(path: String, call: String, code: Int32) {
    self.path = path
    self.call = call
    self.code = code
  }

  /// One line: the path, the failed call, the system's message and what to do.
  public var description: String {
    "cannot write '\(path)': \(call) failed: \(systemErrorMessage(code)); \(remedy)"
  }

  private var remedy: String {
    switch code {
    case ENOSPC, EDQUOT: "free disk space or choose another output path"
    case EACCES, EPERM, EROFS: "make the directory writable or choose another output path"
    case ENOENT, ENOTDIR: "create the directory or choose another output path"
    case EISDIR: "the path names a directory; choose a file path"
    default: "check the disk and the path, or choose another output path"
    }
  }
}

/// Calls the C library's `write`, which the static `write` methods of ``AtomicFile`` hide.
private func writeBytes(_ descriptor: Int32, _ bytes: UnsafeRawPointer?, _ count: Int) -> Int {
  write(descriptor, bytes, count)
}

/// Returns the C library's message for the `errno` value `code`, followed by the number.
func systemErrorMessage(_ code: Int32) -> String {
  "\(String(cString: strerror(code))) (errno \(code))"
}
