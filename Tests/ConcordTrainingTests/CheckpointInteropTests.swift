import ConcordTensors
import Foundation
import Testing

/// The virtual environment with `safetensors` and `numpy` from PyPI, kept between test runs
/// under `.build/python-venv`.
private let virtualEnvironment = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  .deletingLastPathComponent().deletingLastPathComponent()
  .appendingPathComponent(".build/python-venv").path

/// Returns the Python interpreter of the virtual environment, creating it on first use, or
/// the reason it cannot be had (no python3, no venv module, or no connection to PyPI).
private func pythonWithSafeTensors() throws -> Result<String, CheckpointInteropSkip> {
  let python = virtualEnvironment + "/bin/python"
  let probe = ["-c", "import safetensors.numpy, numpy"]
  if FileManager.default.fileExists(atPath: python),
    try run(python, probe, timeout: 60).status == 0
  {
    return .success(python)
  }
  let created = try run("/usr/bin/env", ["python3", "-m", "venv", virtualEnvironment])
  guard created.status == 0 else {
    return .failure(
      CheckpointInteropSkip("python3 -m venv failed: \(created.standardError.suffix(300))"))
  }
  let installed = try run(
    virtualEnvironment + "/bin/pip",
    [
      "install", "--disable-pip-version-check", "--timeout", "20", "--retries", "1",
      "safetensors", "numpy",
    ], timeout: 600)
  guard installed.status == 0, try run(python, probe, timeout: 60).status == 0 else {
    return .failure(
      CheckpointInteropSkip(
        "pip could not install safetensors and numpy from PyPI: "
          + "\(installed.standardError.suffix(300))"))
  }
  return .success(python)
}

/// Why the interoperability test cannot run here.
private struct CheckpointInteropSkip: Error {
  let reason: String
  init(_ reason: String) { self.reason = reason }
}

/// Loads a checkpoint with `safetensors.numpy.load_file` and prints, as JSON, the metadata,
/// the CRC-32 of the data section, and each tensor's dtype, shape, sum and first elements
/// (as hexadecimal floating-point text, which converts exactly).
private let loadScript = """
  import json, sys, zlib
  import numpy as np
  from safetensors import safe_open
  from safetensors.numpy import load_file

  path = sys.argv[1]
  tensors = load_file(path)
  with safe_open(path, framework="np") as handle:
      metadata = handle.metadata()
  raw = open(path, "rb").read()
  header_length = int.from_bytes(raw[:8], "little")
  summary = {
      name: {
          "dtype": str(array.dtype),
          "shape": list(array.shape),
          "sum": float(array.astype(np.float64).sum()),
          "first": [float(x).hex() for x in array.reshape(-1)[:3]],
      }
      for name, array in tensors.items()
  }
  print(json.dumps({
      "metadata": metadata,
      "crc32": "%08x" % zlib.crc32(raw[8 + header_length:]),
      "tensors": summary,
  }))
  """

@Suite(.serialized, .enabled(if: hasFashionMNIST, "Fashion-MNIST is not installed"))
struct CheckpointInteropTests {
  /// Python's safetensors package reads a Concord checkpoint with the same values, shapes
  /// and metadata, and its data section matches `data_crc32`.
  @Test func pythonSafeTensorsLoadsCheckpoint() throws {
    let python: String
    switch try pythonWithSafeTensors() {
    case .success(let path): python = path
    case .failure(let skip): try Test.cancel(Comment(rawValue: skip.reason))
    }
    let out = try makeTemporaryDirectory()
    #expect(try mpirun(ranks: 2, quickRun(out: out, steps: 2)).status == 0)
    let path = checkpointPath(out, step: 2)

    let loaded = try run(python, ["-c", loadScript, path], timeout: 120)
    #expect(loaded.status == 0, "\(loaded.standardError)")
    let output = try #require(
      try JSONSerialization.jsonObject(with: Data(loaded.standardOutput.utf8)) as? [String: Any])
    let file = try SafeTensors.read(path: path)
    #expect(output["metadata"] as? [String: String] == file.metadata)
    #expect(output["crc32"] as? String == file.metadata["data_crc32"])

    let tensors = try #require(output["tensors"] as? [String: [String: Any]])
    #expect(Set(tensors.keys) == Set(file.tensors.map(\.name)))
    let dtypes: [SafeTensors.DType: String] = [.f32: "float32", .f64: "float64", .i64: "int64"]
    for tensor in file.tensors {
      let summary = try #require(tensors[tensor.name], "\(tensor.name) missing in Python")
      #expect(summary["dtype"] as? String == dtypes[tensor.dtype], "\(tensor.name)")
      #expect(summary["shape"] as? [Int] == tensor.shape, "\(tensor.name)")
      let values: [Double]
      switch tensor.dtype {
      case .f32: values = try file.floats(tensor.name).map(Double.init)
      case .i64: values = try file.int64s(tensor.name).map(Double.init)
      default: values = try doublesOf(tensor)
      }
      let sum = values.reduce(0, +)
      let pythonSum = try #require(summary["sum"] as? Double)
      #expect(abs(pythonSum - sum) <= 1e-9 * max(1, values.map(abs).reduce(0, +)), "\(tensor.name)")
      // Hexadecimal text, because a JSON reader may round the last digit of a decimal.
      let first = (summary["first"] as? [String] ?? []).map { Double($0) }
      #expect(first == Array(values.prefix(3)), "\(tensor.name)")
    }
    let encoder = try #require(tensors["encoder.0.weight"])
    print(
      "python safetensors.numpy.load_file: \(tensors.count) tensors, metadata keys "
        + "\((output["metadata"] as? [String: String])?.keys.sorted() ?? []), crc32 "
        + "\(output["crc32"] ?? "?"), encoder.0.weight sum \(encoder["sum"] ?? "?") "
        + "first \(encoder["first"] ?? "?")")
  }
}

/// Returns the elements of an `F64` tensor.
private func doublesOf(_ tensor: SafeTensors.Tensor) throws -> [Double] {
  tensor.bytes.withUnsafeBytes { raw in
    (0..<tensor.elementCount).map { i in
      Double(
        bitPattern: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))
    }
  }
}
