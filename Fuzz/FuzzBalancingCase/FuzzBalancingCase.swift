// libFuzzer harness: reads arbitrary bytes as the JSON case of concord balance and replays
// the cases that parse. Build and run it with launch/fuzz balance.
import CFuzzer
import ConcordBalancing
import Foundation

/// Checks one input; libFuzzer calls it with every input it makes.
private func fuzzBalancingCase(_ start: UnsafeRawPointer, _ count: Int) -> CInt {
  let data = Data(UnsafeRawBufferPointer(start: start, count: count))
  if let balancingCase = try? BalancingCase(json: data) {
    _ = balancingCase.replay()
  }
  return 0
}

@main
struct FuzzBalancingCase {
  static func main() {
    let code = concord_fuzzer_run(CommandLine.argc, CommandLine.unsafeArgv) { data, size in
      fuzzBalancingCase(UnsafeRawPointer(data ?? UnsafePointer(bitPattern: 1)!), size)
    }
    exit(code)
  }
}
