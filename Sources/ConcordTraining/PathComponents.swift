/// Returns `path` without its last component, as `NSString.deletingLastPathComponent` does:
/// `a/b` gives `a`, `a` gives the empty string, and `/a` and `/` give `/`.
///
/// Foundation's version traps on a one-character component such as the `a` of `a/b` in
/// swift-corelibs-foundation on Linux, so Concord splits paths itself.
func deletingLastPathComponent(_ path: String) -> String {
  var trimmed = Substring(path)
  while trimmed.count > 1 && trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
  guard let slash = trimmed.lastIndex(of: "/") else { return "" }
  var parent = trimmed[..<slash]
  while parent.count > 1 && parent.hasSuffix("/") { parent = parent.dropLast() }
  return parent.isEmpty ? "/" : String(parent)
}
