// libFuzzer harness: parses arbitrary bytes as a safetensors file. Build and run it with
// launch/fuzz safetensors.
import CFuzzer
import ConcordTensors
import Foundation

/// Checks one input; libFuzzer calls it with every input it makes.
private func fuzzSafeTensors(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
  guard let file = try? SafeTensors(bytes: UnsafeRawBufferPointer(start: start, count: count))
  else { return 0 }
  // A file that parses must serialize and parse back to the same value.
  let bytes = file.serialized()
  guard let again = try? SafeTensors(bytes: bytes), again == file else {
    fatalError("a parsed safetensors file did not survive serialization")
  }
  return 0
}

@main
struct FuzzSafeTensors {
  static func main() {
    let code = concord_fuzzer_run(CommandLine.argc, CommandLine.unsafeArgv) { data, size in
      fuzzSafeTensors(UnsafeRawPointer(data ?? UnsafePointer(bitPattern: 1)!), size)
    }
    exit(code)
  }
}
