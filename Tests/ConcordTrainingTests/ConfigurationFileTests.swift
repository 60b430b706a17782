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

  @Test func repeatedKeyRejected() {
    #expect {
      try settings(#"{"steps": 5, "tasks": ["byol"], "steps": 7}"#)
    } throws: { error in
      "\(error)".contains(#"run.json: key "steps" appears more than once"#)
    }
  }

  /// A key's name may appear again inside a list or as a string value without being a key.
  @Test func nestedNamesAreNotKeys() throws {
    let json = #"{"tasks": ["steps", "steps"], "steps": 5, "linear-probe": true}"#
    #expect(
      ConfigurationFile.topLevelKeys(in: Data(json.utf8)) == ["tasks", "steps", "linear-probe"])
    #expect(try settings(json).map(\.key) == ["linear-probe", "steps", "tasks"])
  }

  @Test func escapedKeyIsDecoded() {
    let json = #"{"st\u0065ps": 5, "a\"b": 1}"#
    #expect(ConfigurationFile.topLevelKeys(in: Data(json.utf8)) == ["steps", "a\"b"])
  }

  @Test func numberOutsideDoubleRejected() {
    #expect {
      try settings(#"{"steps": 1e400}"#)
    } throws: { error in
      "\(error)".contains(
        #"key "steps" has a value that is not a string, a number within Double's range"#)
    }
  }
}
