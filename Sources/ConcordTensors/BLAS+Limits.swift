import COpenBLAS

extension BLAS {
  /// The largest thread count that this OpenBLAS build runs, its `MAX_THREADS` (64 in Debian
  /// 12's OpenBLAS 0.3.21); `openblas_set_num_threads` lowers larger requests to it silently.
  ///
  /// Read from `openblas_get_config()`, or 64 when the text lacks `MAX_THREADS=`.
  public static var maximumThreadCount: Int {
    guard let text = openblas_get_config().map({ String(cString: $0) }) else { return 64 }
    for word in text.split(separator: " ") where word.hasPrefix("MAX_THREADS=") {
      if let value = Int(word.dropFirst("MAX_THREADS=".count)), value > 0 { return value }
    }
    return 64
  }
}
