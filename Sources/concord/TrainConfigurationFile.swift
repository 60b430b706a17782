import ConcordTraining

/// Applies the settings of the `--config FILE` among `arguments`, if there is one, so that
/// the flags on the command line, applied after it, win.
///
/// - Parameter commandKeys: keys of the command's own flags, such as `seeds` for
///   `concord study`, which the file may contain and which are left to the command.
/// - Throws: ``UsageError`` naming the file and the key at fault.
func applyConfigurationFile(
  in arguments: [String], to configuration: inout TrainingConfiguration,
  commandKeys: [String] = []
) throws {
  guard let path = try configurationFilePath(in: arguments) else { return }
  let flag = ConfigurationFile.flag
  for (key, value) in try readConfigurationFile(path, commandKeys: commandKeys) {
    guard let option = trainOptions.first(where: { $0.name == "--" + key }) else { continue }
    do {
      try option.apply(&configuration, value)
    } catch let error as UsageError {
      throw UsageError("\(flag) \(path): key \"\(key)\": \(error)")
    }
  }
}

/// Reads the settings file at `path`, whose keys are those of `concord train`'s flags and
/// `commandKeys`.
///
/// - Throws: ``UsageError`` naming the file and the key at fault.
func readConfigurationFile(_ path: String, commandKeys: [String] = []) throws
  -> [(key: String, value: String)]
{
  let keys = trainOptions.map { String($0.name.dropFirst(2)) }.filter {
    "--" + $0 != ConfigurationFile.flag
  }
  let switches = trainOptions.filter { $0.value.isEmpty }.map { String($0.name.dropFirst(2)) }
  return try ConfigurationFile.read(path: path, keys: keys + commandKeys, switches: switches)
}

/// Returns the clause that ends an error from a check across several settings when the
/// settings file at `path` may have set any of them.
func settingsFileClause(_ path: String) -> String {
  " (some settings came from \(ConfigurationFile.flag) \(path))"
}

/// Returns the value of `--config` in `arguments`, or nil when it is absent.
///
/// The arguments are flag and value pairs, single `--flag=value` words, and switches such
/// as `--linear-probe` that take no value.
func configurationFilePath(in arguments: [String]) throws -> String? {
  let flag = ConfigurationFile.flag
  let switches = Set(trainOptions.filter { $0.value.isEmpty }.map(\.name))
  var path: String?
  var index = 0
  while index < arguments.count {
    let argument = arguments[index]
    var value: String?
    if argument.hasPrefix(flag + "=") {
      value = String(argument.dropFirst(flag.count + 1))
      index += 1
    } else {
      if argument == flag, index + 1 < arguments.count { value = arguments[index + 1] }
      index += argument.contains("=") || switches.contains(argument) ? 1 : 2
    }
    guard let value else { continue }
    guard path == nil else {
      throw UsageError("\(flag) appears twice: pass one settings file")
    }
    guard !value.isEmpty else { throw UsageError("\(flag) needs a non-empty value") }
    path = value
  }
  return path
}
