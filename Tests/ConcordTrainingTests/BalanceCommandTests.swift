import Foundation
import Testing

/// The golden balancing cases that the balancer unit tests also read.
private let goldenDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
  .deletingLastPathComponent().appendingPathComponent("ConcordBalancingTests/Golden").path

private var goldenFiles: [String] {
  ((try? FileManager.default.contentsOfDirectory(atPath: goldenDirectory)) ?? [])
    .filter { $0.hasSuffix(".json") }.sorted()
}

private func parseJSON(_ text: String) throws -> [String: Any] {
  try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
}

private func maximumRelativeError(_ actual: [Double], _ expected: [Double]) -> Double {
  guard actual.count == expected.count else { return .infinity }
  let scale = max(1, expected.map(abs).max() ?? 0)
  return zip(actual, expected).map { abs($0 - $1) }.max().map { $0 / scale } ?? 0
}

@Test(arguments: goldenFiles)
func balanceCommandAnswersGoldenCase(file: String) throws {
  let path = goldenDirectory + "/" + file
  let result = try run(concordBinary(), ["balance", "--input", path], timeout: 60)
  #expect(result.status == 0, "\(result.standardError)")
  let output = try parseJSON(result.standardOutput)
  let golden = try parseJSON(String(contentsOfFile: path, encoding: .utf8))
  let expected = try #require(golden["expected"] as? [String: Any])

  let direction = try #require(output["direction"] as? [Double])
  let expectedDirection = try #require(expected["direction"] as? [Double])
  #expect(maximumRelativeError(direction, expectedDirection) <= 1e-5, "direction of \(file)")
  if let expectedWeights = expected["weights"] as? [Double] {
    let weights = try #require(output["weights"] as? [Double])
    #expect(maximumRelativeError(weights, expectedWeights) <= 1e-5, "weights of \(file)")
  }
  #expect(output["projections"] as? Int != nil)
}

@Test(arguments: [
  ("not json at all {", "invalid"),
  ("{\"balancer\": \"pcgrad\"}", "gradients"),
  ("{\"balancer\": \"mgda\", \"gradients\": [[1, 2]]}", "mgda"),
  ("{\"balancer\": \"pcgrad\", \"gradients\": [[1, 2], [3]]}", "lengths"),
  ("{\"balancer\": \"gradnorm\", \"gradients\": [[1, 2], [3, 4]], \"losses\": [1]}", "losses"),
  ("{\"balancer\": \"pcgrad\", \"gradients\": [[1, 2], [3, 4]], \"order\": [[0], [1]]}", "order"),
  ("{\"balancer\": \"pcgrad\", \"gradients\": [[1, \"x\"]]}", "gradients[0][1]"),
  ("{\"balancer\": \"pcgrad\", \"gradient\": [[1]]}", "gradient"),
  ("[1, 2, 3]", "not an object"),
  ("{\"balancer\": \"pcgrad\", \"gradients\": [[1e39, 1]]}", "gradients[0][0]"),
])
func balanceCommandRejectsMalformedInput(json: String, named: String) throws {
  let directory = try makeTemporaryDirectory()
  let path = directory + "/case.json"
  try json.write(toFile: path, atomically: true, encoding: .utf8)
  let result = try run(concordBinary(), ["balance", "--input", path], timeout: 60)
  #expect(result.status == 2)
  let lines = result.standardError.split(separator: "\n")
  #expect(lines.count == 1, "\(result.standardError)")
  #expect(result.standardError.contains(named), "\(result.standardError)")
  #expect(result.standardOutput.isEmpty)
}

@Test func balanceCommandRejectsMissingFile() throws {
  let result = try run(concordBinary(), ["balance", "--input", "/nonexistent/case.json"])
  #expect(result.status == 2)
  #expect(result.standardError.contains("/nonexistent/case.json"))
}
