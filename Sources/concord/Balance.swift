import ConcordBalancing
import ConcordTraining
import Foundation

/// The usage text of `concord balance`.
let balanceUsage = """
  usage: concord balance --input FILE [--balancer NAME]

  Replays one gradient balancing step and prints the result as JSON:
  {"direction": [...], "weights": [...], "projections": N, "cosines": [[...]],
   "grad_norms": [...], "targets": [...]}
  where weights are the task weights after the GradNorm update.

  FILE is a gradient dump (concord train --dump-gradients STEP) or JSON of the form
  {"balancer": "pcgrad", "gradients": [[...], ...], "losses": [...],
   "initial_losses": [...], "weights": [...], "alpha": 1.5, "weight_lr": 0.025,
   "order": [[...], ...]}
  --balancer NAME replays the same inputs under another balancer: equal, gradnorm,
  pcgrad or pcgrad+gradnorm.
  """

/// Runs `concord balance` and returns the exit code.
func balance(arguments: [String]) -> Int32 {
  if arguments.contains("--help") || arguments.contains("-h") {
    print(balanceUsage)
    return 0
  }
  var path: String?
  var override: BalancerKind?
  var index = 0
  while index < arguments.count {
    let flag = arguments[index]
    guard flag == "--input" || flag == "--balancer" else {
      printError(
        "unknown flag \(flag): concord balance takes --input FILE [--balancer NAME]", rank: nil)
      return usageExitCode
    }
    guard index + 1 < arguments.count else {
      printError("\(flag) needs a value (concord balance --help)", rank: nil)
      return usageExitCode
    }
    let value = arguments[index + 1]
    if flag == "--input" {
      path = value
    } else {
      guard let kind = BalancerKind(rawValue: value) else {
        let names = BalancerKind.allCases.map(\.rawValue).joined(separator: ", ")
        printError("invalid --balancer \(value): pass one of \(names)", rank: nil)
        return usageExitCode
      }
      override = kind
    }
    index += 2
  }
  guard let path else {
    printError("concord balance needs --input FILE (concord balance --help)", rank: nil)
    return usageExitCode
  }

  let replay: BalancingCase.Replay
  do {
    guard let data = FileManager.default.contents(atPath: path) else {
      throw BalancingCaseError("cannot read \(path): check the path")
    }
    let trimmed = data.prefix(64).drop { $0 == 0x20 || $0 == 0x0A || $0 == 0x0D || $0 == 0x09 }
    let isJSON =
      path.hasSuffix(".json") || trimmed.first == UInt8(ascii: "{")
      || trimmed.first == UInt8(ascii: "[")
    var balancingCase = isJSON ? try BalancingCase(json: data) : try GradientDump.read(path: path)
    if let override { balancingCase.balancer = override }
    replay = balancingCase.replay()
  } catch {
    printError("\(path): \(error)", rank: nil)
    return usageExitCode
  }

  let result = replay.result
  let t = result.taskWeights.count
  func list(_ values: [Double]) -> String {
    "[" + values.map(jsonNumber).joined(separator: ", ") + "]"
  }
  let cosines = (0..<t).map { i in list(Array(result.cosineSimilarities[(i * t)..<((i + 1) * t)])) }
  var text = "{\"direction\": \(list(replay.direction)), "
  text += "\"weights\": \(list(result.updatedWeights)), "
  text += "\"projections\": \(result.projectionCount), "
  text += "\"cosines\": [\(cosines.joined(separator: ", "))], "
  text += "\"grad_norms\": \(result.gradNorms.map(list) ?? "null"), "
  text += "\"targets\": \(result.targets.map(list) ?? "null")}"
  print(text)
  return 0
}

/// Formats a number for JSON with 17 significant digits, so that it reads back exactly.
func jsonNumber(_ value: Double) -> String {
  value.isFinite ? String(format: "%.17g", value) : "null"
}
