import Foundation
import Testing

@testable import ConcordTensors

/// A fresh directory under the system's temporary directory, removed by ``remove()``.
private struct ScratchDirectory {
  let path: String

  init(_ label: String) throws {
    path =
      FileManager.default.temporaryDirectory
      .appendingPathComponent("concord-atomic-\(label)-\(getpid())").path
    try? FileManager.default.removeItem(atPath: path)
    try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
  }

  func contents() throws -> [String] {
    try FileManager.default.contentsOfDirectory(atPath: path).sorted()
  }

  func remove() {
    try? FileManager.default.removeItem(atPath: path)
  }
}

private func fileBytes(_ path: String) -> [UInt8]? {
  FileManager.default.contents(atPath: path).map { Array($0) }
}

@Test func atomicWriteCreatesAndReplaces() throws {
  let scratch = try ScratchDirectory("replace")
  defer { scratch.remove() }
  let path = "\(scratch.path)/checkpoint.safetensors"

  try AtomicFile.write([1, 2, 3], to: path)
  #expect(fileBytes(path) == [1, 2, 3])

  let large = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
  try AtomicFile.write(large, to: path)
  #expect(fileBytes(path) == large)

  try AtomicFile.write([], to: path)
  #expect(fileBytes(path) == [])
  #expect(try scratch.contents() == ["checkpoint.safetensors"])
}

@Test func atomicWriteIntoMissingDirectoryFails() throws {
  let scratch = try ScratchDirectory("missing")
  defer { scratch.remove() }
  let path = "\(scratch.path)/absent/checkpoint.safetensors"

  let error = try #require(throws: AtomicFileError.self) { try AtomicFile.write([1], to: path) }
  #expect(error.code == ENOENT)
  #expect(error.description.contains(path))
  #expect(error.description.contains("open"))
  #expect(error.description.contains("No such file or directory"))
  #expect(error.description.contains("create the directory"))
  #expect(!error.description.contains("\n"))
  #expect(try scratch.contents() == [])
}

@Test func atomicWriteUnderRegularFileFails() throws {
  let scratch = try ScratchDirectory("under-file")
  defer { scratch.remove() }
  let regular = "\(scratch.path)/regular"
  try AtomicFile.write([5, 5], to: regular)

  let error = try #require(throws: AtomicFileError.self) {
    try AtomicFile.write([1], to: "\(regular)/checkpoint.safetensors")
  }
  #expect(error.code == ENOTDIR)
  #expect(error.description.contains("Not a directory"))
  #expect(fileBytes(regular) == [5, 5])
  #expect(try scratch.contents() == ["regular"])
}

@Test func atomicWriteOverDirectoryLeavesItAndNoTemporary() throws {
  let scratch = try ScratchDirectory("over-directory")
  defer { scratch.remove() }
  let destination = "\(scratch.path)/checkpoint.safetensors"
  try FileManager.default.createDirectory(atPath: destination, withIntermediateDirectories: false)
  try AtomicFile.write([7], to: "\(destination)/inside")

  // The temporary file is written and synced; only the rename over the directory fails.
  let error = try #require(throws: AtomicFileError.self) {
    try AtomicFile.write([1, 2, 3], to: destination)
  }
  #expect(error.code == EISDIR)
  #expect(error.call.hasPrefix("rename"))
  #expect(error.description.contains(destination))
  #expect(error.description.contains("Is a directory"))
  #expect(try scratch.contents() == ["checkpoint.safetensors"])
  #expect(fileBytes("\(destination)/inside") == [7])
}

@Test func atomicWriteToDirectoryPathFails() throws {
  let scratch = try ScratchDirectory("trailing-slash")
  defer { scratch.remove() }
  let error = try #require(throws: AtomicFileError.self) {
    try AtomicFile.write([1], to: "\(scratch.path)/")
  }
  #expect(error.code == EISDIR)
  #expect(try scratch.contents() == [])
}

@Test func temporaryPathSitsBesideDestination() {
  #expect(
    AtomicFile.temporaryPath(for: "/run/a.safetensors") == "/run/.a.safetensors.tmp-\(getpid())")
  #expect(AtomicFile.temporaryPath(for: "a") == "./.a.tmp-\(getpid())")
  #expect(AtomicFile.temporaryPath(for: "/a") == "/.a.tmp-\(getpid())")
}

@Test func temporaryNamePattern() {
  #expect(AtomicFile.isTemporaryName(".checkpoint.safetensors.tmp-123"))
  #expect(AtomicFile.isTemporaryName(".a.tmp-1.tmp-2"))
  #expect(!AtomicFile.isTemporaryName("checkpoint.safetensors.tmp-123"))
  #expect(!AtomicFile.isTemporaryName(".checkpoint.tmp-"))
  #expect(!AtomicFile.isTemporaryName(".checkpoint.tmp-12a"))
  #expect(!AtomicFile.isTemporaryName("..tmp-12"))
  #expect(!AtomicFile.isTemporaryName(".tmp-12"))
  #expect(!AtomicFile.isTemporaryName(".checkpoint"))
}

@Test func strayTemporaryFilesAreRemoved() throws {
  let scratch = try ScratchDirectory("stray")
  defer { scratch.remove() }
  for name in [".ckpt.safetensors.tmp-4242", ".metrics.jsonl.tmp-1", "keep.safetensors", ".keep"] {
    try AtomicFile.write([0], to: "\(scratch.path)/\(name)")
  }
  // A directory with a matching name is not a leftover of a write and stays.
  try FileManager.default.createDirectory(
    atPath: "\(scratch.path)/.dir.tmp-7", withIntermediateDirectories: false)

  let removed = try AtomicFile.removeStrayTemporaryFiles(in: scratch.path)
  #expect(removed == [".ckpt.safetensors.tmp-4242", ".metrics.jsonl.tmp-1"])
  #expect(try scratch.contents() == [".dir.tmp-7", ".keep", "keep.safetensors"])
}

@Test func strayRemovalInMissingDirectoryFails() throws {
  let error = try #require(throws: AtomicFileError.self) {
    try AtomicFile.removeStrayTemporaryFiles(in: "/nonexistent-concord-directory")
  }
  #expect(error.code == ENOENT)
  #expect(error.description.contains("/nonexistent-concord-directory"))
}
