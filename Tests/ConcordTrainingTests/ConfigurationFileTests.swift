import ConcordTraining
import Foundation
import Testing

/// How a `--config` file's JSON values become flag values.
@Suite struct ConfigurationFileTests {
  let keys = ["steps", "tasks", "linear-probe"]
  let switches = ["linear-probe"]

  func settings(_ json: String) throws -> [(key: String, value: String)] {
    try ConfigurationFile.settings(
      json: Data(json.utf8), path: "run.json", keys: keys, switches: switches)
  }

  @Test func switchTrueHasNoValue() throws {
    let result = try settings(#"{"linear-probe": true, "steps": 5}"#)
    #expect(result.map(\.key) == ["linear-probe", "steps"])
    #expect(result.map(\.value) == ["", "5"])
  }

  @Test func switchFalseIsOmitted() throws {
    let result = try settings(#"{"linear-probe": false, "tasks": ["byol", "augpred"]}"#)
    #expect(result.map(\.key) == ["tasks"])
    #expect(result.map(\.value) == ["byol,augpred"])
  }

  @Test func switchWithTextRejected() {
    #expect {
      try settings(#"{"linear-probe": "yes"}"#)
    } throws: { error in
      "\(error)".contains(#"key "linear-probe" is a switch: write "linear-probe": true"#)
    }
  }

  @Test func booleanForValueFlagRejected() {
    #expect {
      try settings(#"{"steps": true}"#)
    } throws: { error in
      "\(error)".contains(#"key "steps" has a value that is not a string, a number"#)
    }
  }
}
