// libFuzzer harness: reads arbitrary bytes as a concord train --config file. Build and run it
// with launch/fuzz config.
import CFuzzer
import ConcordTraining
import Foundation

/// A sample of the flag names of concord train, without their dashes.
private let keys = ["batch-size", "tasks", "hidden", "lr", "seed", "steps", "out", "knn"]

/// Checks one input; libFuzzer calls it with every input it makes.
private func fuzzConfiguration(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
  let data = Data(UnsafeRawBufferPointer(start: start, count: count))
  if let settings = try? ConfigurationFile.settings(json: data, path: "fuzz.json", keys: keys) {
    precondition(settings.allSatisfy { keys.contains($0.key) })
  }
  return 0
}

@main
struct FuzzConfiguration {
  static func main() {
    let code = concord_fuzzer_run(CommandLine.argc, CommandLine.unsafeArgv) { data, size in
      fuzzConfiguration(UnsafeRawPointer(data ?? UnsafePointer(bitPattern: 1)!), size)
    }
    exit(code)
  }
}
