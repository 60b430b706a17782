// libFuzzer harness: reads arbitrary bytes as an IDX file, plain or gzip-compressed. Build and
// run it with launch/fuzz idx.
import CFuzzer
import ConcordData
import Foundation

/// The file that each input is written to, because the reader takes a path (zlib's gzopen).
private let inputPath = FileManager.default.temporaryDirectory
  .appendingPathComponent("concord-fuzz-idx-\(getpid())").path

/// Checks one input; libFuzzer calls it with every input it makes.
private func fuzzIDX(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
  let bytes = UnsafeRawBufferPointer(start: start, count: count)
  guard FileManager.default.createFile(atPath: inputPath, contents: Data(bytes)) else {
    fatalError("cannot write the fuzz input to \(inputPath)")
  }
  if let array = try? IDX.read(path: inputPath) {
    precondition(array.bytes.count == array.dimensions.reduce(1, *))
  }
  return 0
}

@main
struct FuzzIDX {
  static func main() {
    let code = concord_fuzzer_run(CommandLine.argc, CommandLine.unsafeArgv) { data, size in
      fuzzIDX(UnsafeRawPointer(data ?? UnsafePointer(bitPattern: 1)!), size)
    }
    exit(code)
  }
}
