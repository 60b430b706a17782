import Foundation

/// A settings file for `concord train --config FILE`: one JSON object whose keys are the
/// names of the flags without their leading dashes and whose values are the flags' values.
///
/// ```json
/// {"batch-size": 256, "tasks": ["supervised", "simclr"], "hidden": [512, 256], "lr": 0.001}
/// ```
///
/// A value is a string, a number, or a list of them, which becomes the comma-separated list
/// that the flag takes. A switch, a flag that takes no value such as `--linear-probe`, takes
/// `true` (pass the switch) or `false` (leave it out). Any other `true` or `false`, `null` and
/// nested objects are rejected, as is a key that names no flag, with the closest key by edit
/// distance as a suggestion.
public enum ConfigurationFile {
  /// The flag that names the file, which a file cannot set.
  public static let flag = "--config"

  /// Reads the file at `path` and returns its settings, sorted by key.
  ///
  /// - Parameters:
  ///   - keys: the valid keys, each a flag name without its leading dashes.
  ///   - switches: the keys among `keys` whose flags take no value; a switch set to `true`
  ///     comes back with an empty value.
  /// - Throws: ``UsageError`` naming `path` and, when one is at fault, the key.
  public static func read(path: String, keys: [String], switches: [String] = []) throws
    -> [(key: String, value: String)]
  {
    var isDirectory: ObjCBool = false
    guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else {
      throw UsageError("\(flag) \(path): file not found: pass the path of a JSON settings file")
    }
    guard !isDirectory.boolValue else {
      throw UsageError("\(flag) \(path) is a folder: pass the path of a JSON settings file")
    }
    guard let data = FileManager.default.contents(atPath: path) else {
      throw UsageError(
        "\(flag) \(path): cannot read the file: check its permissions or pass another file")
    }
    return try settings(json: data, path: path, keys: keys, switches: switches)
  }

  /// Parses the JSON object in `data` and returns its settings, sorted by key.
  ///
  /// - Parameters:
  ///   - path: the file's path, named in the errors.
  ///   - keys: the valid keys, each a flag name without its leading dashes.
  ///   - switches: the keys among `keys` whose flags take no value; a switch set to `true`
  ///     comes back with an empty value.
  /// - Throws: ``UsageError`` naming `path` and, when one is at fault, the key.
  public static func settings(
    json data: Data, path: String, keys: [String], switches: [String] = []
  ) throws -> [(key: String, value: String)] {
    let object: [String: Setting]
    do {
      object = try JSONDecoder().decode([String: Setting].self, from: data)
    } catch let error as UsageError {
      throw UsageError("\(flag) \(path): \(error)")
    } catch DecodingError.typeMismatch(_, let context) where context.codingPath.isEmpty {
      throw UsageError(
        "\(flag) \(path): the file is not one JSON object: write {\"batch-size\": 256, ...}")
    } catch {
      throw UsageError(
        "\(flag) \(path): not valid JSON: write one object such as {\"batch-size\": 256}")
    }
    var seen: Set<String> = []
    for key in topLevelKeys(in: data) where !seen.insert(key).inserted {
      throw UsageError(
        "\(flag) \(path): key \"\(key)\" appears more than once: keep one of its values")
    }
    var settings: [(key: String, value: String)] = []
    for key in object.keys.sorted() {
      guard keys.contains(key) else {
        throw UsageError("\(flag) \(path): \(unknownKeyMessage(key, keys: keys))")
      }
      if switches.contains(key) {
        guard case .switch(let isOn) = object[key]! else {
          throw UsageError(
            "\(flag) \(path): key \"\(key)\" is a switch: write \"\(key)\": true or leave it out")
        }
        if isOn { settings.append((key, "")) }
        continue
      }
      guard case .value(let value) = object[key]! else {
        throw UsageError(
          "\(flag) \(path): key \"\(key)\" has a value that is not a string, a number within "
            + "Double's range or a list of them: write it as on the command line, such as "
            + "\"\(key)\": \"...\"")
      }
      settings.append((key, value))
    }
    return settings
  }

  /// Returns the keys of the top-level object of the JSON text `data` in the order they
  /// appear, repeats included, which a decoded dictionary no longer shows.
  public static func topLevelKeys(in data: Data) -> [String] {
    let bytes = [UInt8](data)
    var keys: [String] = []
    var depth = 0
    var i = 0
    while i < bytes.count {
      switch bytes[i] {
      case UInt8(ascii: "{"), UInt8(ascii: "["):
        depth += 1
      case UInt8(ascii: "}"), UInt8(ascii: "]"):
        depth -= 1
      case UInt8(ascii: "\""):
        let start = i
        i += 1
        while i < bytes.count && bytes[i] != UInt8(ascii: "\"") {
          i += bytes[i] == UInt8(ascii: "\\") ? 2 : 1
        }
        // A string inside the top-level object that a colon follows is a key.
        var next = i + 1
        while next < bytes.count && [0x20, 0x09, 0x0A, 0x0D].contains(bytes[next]) { next += 1 }
        guard depth == 1, i < bytes.count, next < bytes.count, bytes[next] == UInt8(ascii: ":")
        else { break }
        if let key = try? JSONDecoder().decode(String.self, from: Data(bytes[start...i])) {
          keys.append(key)
        }
      default:
        break
      }
      i += 1
    }
    return keys
  }

  private static func unknownKeyMessage(_ key: String, keys: [String]) -> String {
    let nearest = keys.min { editDistance($0, key) < editDistance($1, key) }
    if let nearest, editDistance(nearest, key) <= max(2, key.count / 3) {
      return "unknown key \"\(key)\": did you mean \"\(nearest)\"?"
    }
    if key == String(flag.dropFirst(2)) {
      return "a settings file cannot name another with \"\(key)\": merge the two files"
    }
    return "unknown key \"\(key)\": the keys are the flags of concord train --help without "
      + "their dashes"
  }

  /// One value of the file: the text of a flag's value, a switch's state, or a value that
  /// no flag takes.
  private enum Setting: Decodable {
    case value(String)
    case `switch`(Bool)
    case invalid

    init(from decoder: Decoder) throws {
      if var list = try? decoder.unkeyedContainer() {
        var items: [String] = []
        while !list.isAtEnd {
          guard let item = Self.scalar(try list.decode(Scalar.self)) else {
            self = .invalid
            return
          }
          items.append(item)
        }
        self = .value(items.joined(separator: ","))
      } else if let container = try? decoder.singleValueContainer(),
        let isOn = try? container.decode(Bool.self)
      {
        self = .switch(isOn)
      } else {
        self = Self.scalar(try Scalar(from: decoder)).map(Self.value) ?? .invalid
      }
    }

    private static func scalar(_ value: Scalar) -> String? {
      if case .text(let text) = value { return text }
      return nil
    }
  }

  /// A JSON scalar as the text a flag would take, or a kind that no flag takes.
  private enum Scalar: Decodable {
    case text(String)
    case other

    init(from decoder: Decoder) throws {
      guard let container = try? decoder.singleValueContainer() else {
        self = .other
        return
      }
      if container.decodeNil() || (try? container.decode(Bool.self)) != nil {
        self = .other
      } else if let integer = try? container.decode(Int64.self) {
        self = .text(String(integer))
      } else if let integer = try? container.decode(UInt64.self) {
        self = .text(String(integer))
      } else if let number = try? container.decode(Double.self) {
        self = .text(String(number))
      } else if let text = try? container.decode(String.self) {
        self = .text(text)
      } else {
        self = .other
      }
    }
  }
}

/// Returns the Levenshtein distance between two strings.
public func editDistance(_ a: String, _ b: String) -> Int {
  let a = Array(a)
  let b = Array(b)
  var previous = Array(0...b.count)
  for i in 1...max(a.count, 1) where !a.isEmpty {
    var current = [i] + Array(repeating: 0, count: b.count)
    for j in 1...max(b.count, 1) where !b.isEmpty {
      let cost = a[i - 1] == b[j - 1] ? 0 : 1
      current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
    }
    previous = current
  }
  return a.isEmpty ? b.count : previous[b.count]
}
