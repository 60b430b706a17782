import Foundation

/// Describes an error of Foundation's file or JSON calls in Concord's words, for one-line
/// messages: the system's `strerror` text when an errno lies behind it, else a short phrase.
///
/// Foundation's own descriptions name its error domains ("NSCocoaErrorDomain") or speak in
/// whole sentences ("The file doesn't exist."), which does not fit a message that already
/// names the path. Errors of Concord's own types keep their descriptions.
public func systemErrorDescription(_ error: Error) -> String {
  let nsError = error as NSError
  if let underlying = nsError.userInfo[NSUnderlyingErrorKey] as? NSError,
    underlying.domain == NSPOSIXErrorDomain
  {
    return String(cString: strerror(Int32(underlying.code)))
  }
  switch nsError.domain {
  case NSPOSIXErrorDomain:
    return String(cString: strerror(Int32(nsError.code)))
  case NSCocoaErrorDomain:
    return cocoaErrorPhrase(CocoaError.Code(rawValue: nsError.code), nsError)
  default:
    return "\(error)"
  }
}

private func cocoaErrorPhrase(_ code: CocoaError.Code, _ error: NSError) -> String {
  switch code {
  case .fileNoSuchFile, .fileReadNoSuchFile: return String(cString: strerror(ENOENT))
  case .fileReadNoPermission, .fileWriteNoPermission: return String(cString: strerror(EACCES))
  case .fileWriteOutOfSpace: return String(cString: strerror(ENOSPC))
  case .fileWriteVolumeReadOnly: return String(cString: strerror(EROFS))
  case .fileWriteFileExists: return String(cString: strerror(EEXIST))
  case .fileReadTooLarge: return String(cString: strerror(EFBIG))
  case .propertyListReadCorrupt:
    // JSONSerialization's parse errors carry the position in their debug description.
    let detail = error.userInfo[NSDebugDescriptionErrorKey] as? String
    return "invalid JSON" + (detail.map { " (\($0))" } ?? "")
  default:
    return "file operation failed (Foundation error code \(code.rawValue))"
  }
}
