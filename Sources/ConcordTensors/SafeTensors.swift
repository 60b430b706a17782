#if canImport(Glibc)
  import Glibc
#elseif canImport(Darwin)
  import Darwin
#endif

/// A list of named tensors with a string metadata map, stored in the safetensors format.
///
/// A safetensors file (Hugging Face's format, also read and written by the `safetensors`
/// Python package) is laid out as:
///
/// 1. `N`, the header length, as an 8-byte little-endian `UInt64`;
/// 2. `N` bytes of UTF-8 JSON: an object mapping each tensor name to
///    `{"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}`, where the offsets
///    are byte positions relative to the start of the data section (`end` excluded), plus an
///    optional `"__metadata__"` object of string values;
/// 3. the data section: every tensor's elements, row-major and little-endian.
///
/// Writing is deterministic, so two serializations of equal values are byte-identical. The
/// header lists `"__metadata__"` first with its keys sorted, then the tensors in the order of
/// ``tensors``, whose bytes follow each other in the same order without gaps. The header is
/// padded with spaces to a multiple of 8 bytes, so the data section starts 8-byte aligned.
///
/// Reading checks the layout as the safetensors Python package (0.8.0) does: the tensors must
/// cover the data section exactly, without overlaps, gaps or trailing bytes, and each tensor's
/// byte range must match its shape and dtype. It also rejects duplicate names, and ignores
/// fields of a tensor entry other than those three, as the package does. Malformed input of
/// any kind raises a ``SafeTensorsError``, and the parser never traps on it.
public struct SafeTensors: Sendable, Equatable {
  /// The name of the header entry that contains the metadata map instead of a tensor.
  public static let metadataKey = "__metadata__"

  /// The largest header length, in bytes, that the reader accepts (as the safetensors package).
  public static let maximumHeaderLength = 100_000_000

  /// The tensors, in the order of their bytes in the data section.
  public private(set) var tensors: [Tensor]

  /// Free-form string metadata, stored in the header under `"__metadata__"`.
  public var metadata: [String: String]

  /// The file this value was read from, named in the errors of the typed accessors.
  ///
  /// `nil` for values built in memory or parsed from bytes. Equality ignores it.
  public var sourcePath: String?

  /// The position of each tensor in ``tensors``, by name.
  private var indexByName: [String: Int]

  /// Creates a value containing `tensors`, in that order, and `metadata`.
  ///
  /// - Precondition: tensor names are unique and none is `"__metadata__"`.
  public init(tensors: [Tensor] = [], metadata: [String: String] = [:]) {
    self.tensors = []
    self.metadata = metadata
    self.indexByName = [:]
    for tensor in tensors { append(tensor) }
  }

  /// Appends `tensor` after the existing tensors.
  ///
  /// - Precondition: no tensor of the same name exists, and the name is not `"__metadata__"`.
  public mutating func append(_ tensor: Tensor) {
    precondition(
      tensor.name != Self.metadataKey,
      "a tensor cannot be named \(Self.metadataKey): the header uses that key for metadata")
    precondition(
      indexByName[tensor.name] == nil,
      "a tensor named '\(tensor.name)' already exists; tensor names must be unique")
    indexByName[tensor.name] = tensors.count
    tensors.append(tensor)
  }

  /// Returns the tensor named `name`, or `nil` when there is none.
  public func tensor(named name: String) -> Tensor? {
    indexByName[name].map { tensors[$0] }
  }

  /// Returns the elements of the `F32` tensor named `name`, row-major.
  ///
  /// - Parameters:
  ///   - name: the tensor's name.
  ///   - shape: the shape the caller expects, or `nil` to accept any shape.
  /// - Throws: ``SafeTensorsError`` when the tensor is missing, is not `F32`, or has another
  ///   shape than `shape`.
  public func floats(_ name: String, shape: [Int]? = nil) throws -> [Float] {
    let tensor = try checkedTensor(name, dtype: .f32, shape: shape)
    return [Float](unsafeUninitializedCapacity: tensor.elementCount) { values, count in
      tensor.bytes.withUnsafeBytes { raw in
        for i in 0..<tensor.elementCount {
          let bits = raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)
          values[i] = Float(bitPattern: UInt32(littleEndian: bits))
        }
      }
      count = tensor.elementCount
    }
  }

  /// Copies the elements of the `F32` tensor named `name` into `destination`, row-major.
  ///
  /// Use it to load parameters into preallocated buffers without an intermediate array.
  ///
  /// - Parameters:
  ///   - name: the tensor's name.
  ///   - destination: exactly as many floats as the tensor has elements.
  ///   - shape: the shape the caller expects, or `nil` to check only the element count.
  /// - Throws: ``SafeTensorsError`` when the tensor is missing, is not `F32`, has another shape
  ///   than `shape`, or has another element count than `destination`.
  public func copyFloats(
    _ name: String, into destination: UnsafeMutableBufferPointer<Float>, shape: [Int]? = nil
  ) throws {
    let tensor = try checkedTensor(name, dtype: .f32, shape: shape)
    guard tensor.elementCount == destination.count else {
      throw SafeTensorsError(
        .shapeMismatch, path: sourcePath,
        "tensor '\(name)' has \(tensor.elementCount) elements (shape \(tensor.shape)) but the "
          + "destination holds \(destination.count); the file was written for another "
          + "configuration")
    }
    tensor.bytes.withUnsafeBytes { raw in
      for i in 0..<destination.count {
        let bits = raw.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)
        destination[i] = Float(bitPattern: UInt32(littleEndian: bits))
      }
    }
  }

  /// Returns the elements of the `I64` tensor named `name`, row-major.
  ///
  /// - Parameters:
  ///   - name: the tensor's name.
  ///   - shape: the shape the caller expects, or `nil` to accept any shape.
  /// - Throws: ``SafeTensorsError`` when the tensor is missing, is not `I64`, or has another
  ///   shape than `shape`.
  public func int64s(_ name: String, shape: [Int]? = nil) throws -> [Int64] {
    let tensor = try checkedTensor(name, dtype: .i64, shape: shape)
    return tensor.bytes.withUnsafeBytes { raw in
      (0..<tensor.elementCount).map { i in
        Int64(littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: Int64.self))
      }
    }
  }

  /// Returns the elements of the `F64` tensor named `name`, row-major.
  ///
  /// - Parameters:
  ///   - name: the tensor's name.
  ///   - shape: the shape the caller expects, or `nil` to accept any shape.
  /// - Throws: ``SafeTensorsError`` when the tensor is missing, is not `F64`, or has another
  ///   shape than `shape`.
  public func doubles(_ name: String, shape: [Int]? = nil) throws -> [Double] {
    let tensor = try checkedTensor(name, dtype: .f64, shape: shape)
    return tensor.bytes.withUnsafeBytes { raw in
      (0..<tensor.elementCount).map { i in
        Double(
          bitPattern: UInt64(
            littleEndian: raw.loadUnaligned(fromByteOffset: 8 * i, as: UInt64.self)))
      }
    }
  }

  /// Returns the tensor named `name` after checking its dtype and, when given, its shape.
  private func checkedTensor(_ name: String, dtype: DType, shape: [Int]?) throws -> Tensor {
    guard let tensor = tensor(named: name) else {
      let known = tensors.prefix(8).map { "'\($0.name)'" }.joined(separator: ", ")
      let more = tensors.count > 8 ? ", ..." : ""
      throw SafeTensorsError(
        .missingTensor, path: sourcePath,
        "no tensor named '\(name)' among the \(tensors.count) tensors [\(known)\(more)]; "
          + "the file was written by another version or for another configuration")
    }
    guard tensor.dtype == dtype else {
      throw SafeTensorsError(
        .dtypeMismatch, path: sourcePath,
        "tensor '\(name)' has dtype \(tensor.dtype.rawValue), expected \(dtype.rawValue); "
          + "read it with the accessor for \(tensor.dtype.rawValue) or convert the file")
    }
    if let shape, shape != tensor.shape {
      throw SafeTensorsError(
        .shapeMismatch, path: sourcePath,
        "tensor '\(name)' has shape \(tensor.shape), expected \(shape); "
          + "the file was written for another configuration")
    }
    return tensor
  }

  /// Compares the tensors, in order, and the metadata, ignoring ``sourcePath``.
  public static func == (lhs: SafeTensors, rhs: SafeTensors) -> Bool {
    lhs.tensors == rhs.tensors && lhs.metadata == rhs.metadata
  }
}

// MARK: - Tensors and dtypes

extension SafeTensors {
  /// An element type of the safetensors format, named by its header string.
  ///
  /// Concord reads and writes element values of ``f32`` (parameters and optimizer state) and
  /// ``i64`` (counters such as the step). A file may contain any dtype listed here. Its tensors
  /// keep their raw bytes, and the typed accessors report the dtype when it does not match.
  public enum DType: String, Sendable, CaseIterable {
    /// A boolean, one byte.
    case bool = "BOOL"
    /// An unsigned 8-bit integer.
    case u8 = "U8"
    /// A signed 8-bit integer.
    case i8 = "I8"
    /// An 8-bit float with 5 exponent and 2 mantissa bits.
    case f8E5M2 = "F8_E5M2"
    /// An 8-bit float with 4 exponent and 3 mantissa bits.
    case f8E4M3 = "F8_E4M3"
    /// A signed 16-bit integer.
    case i16 = "I16"
    /// An unsigned 16-bit integer.
    case u16 = "U16"
    /// An IEEE 754 half-precision float.
    case f16 = "F16"
    /// A bfloat16: the upper 16 bits of an IEEE 754 single-precision float.
    case bf16 = "BF16"
    /// A signed 32-bit integer.
    case i32 = "I32"
    /// An unsigned 32-bit integer.
    case u32 = "U32"
    /// An IEEE 754 single-precision float (Swift's `Float`).
    case f32 = "F32"
    /// An IEEE 754 double-precision float (Swift's `Double`).
    case f64 = "F64"
    /// A signed 64-bit integer (Swift's `Int64`).
    case i64 = "I64"
    /// An unsigned 64-bit integer.
    case u64 = "U64"

    /// The size of one element in bytes.
    public var elementSize: Int {
      switch self {
      case .bool, .u8, .i8, .f8E5M2, .f8E4M3: 1
      case .i16, .u16, .f16, .bf16: 2
      case .i32, .u32, .f32: 4
      case .f64, .i64, .u64: 8
      }
    }
  }

  /// One named tensor: its dtype, shape and little-endian bytes.
  public struct Tensor: Sendable, Equatable {
    /// The tensor's name, a key of the header.
    public let name: String
    /// The element type.
    public let dtype: DType
    /// The size of each dimension, outermost first.
    ///
    /// A scalar has the shape `[]`.
    public let shape: [Int]
    /// The elements, row-major, each in little-endian byte order.
    public let bytes: [UInt8]

    /// The number of elements: the product of ``shape``.
    public var elementCount: Int { bytes.count / dtype.elementSize }

    /// Creates a tensor from raw little-endian bytes of any dtype.
    ///
    /// - Precondition: `shape` has no negative dimension and `bytes.count` equals the element
    ///   count times `dtype.elementSize`.
    public init(name: String, dtype: DType, shape: [Int], bytes: [UInt8]) {
      let expected = SafeTensors.byteCount(shape: shape, dtype: dtype)
      precondition(
        expected == bytes.count,
        "tensor '\(name)' of shape \(shape) and dtype \(dtype.rawValue) needs "
          + "\(expected.map(String.init) ?? "an overflowing number of") bytes, got \(bytes.count)")
      self.name = name
      self.dtype = dtype
      self.shape = shape
      self.bytes = bytes
    }

    /// Creates an `F32` tensor containing `values`, row-major.
    ///
    /// - Precondition: `values.count` is the product of `shape`.
    public init(name: String, shape: [Int], floats values: UnsafeBufferPointer<Float>) {
      let bytes = [UInt8](unsafeUninitializedCapacity: 4 * values.count) { raw, count in
        let destination = UnsafeMutableRawBufferPointer(raw)
        for (i, value) in values.enumerated() {
          destination.storeBytes(
            of: value.bitPattern.littleEndian, toByteOffset: 4 * i, as: UInt32.self)
        }
        count = 4 * values.count
      }
      self.init(name: name, dtype: .f32, shape: shape, bytes: bytes)
    }

    /// Creates an `F32` tensor containing `values`, row-major.
    ///
    /// - Precondition: `values.count` is the product of `shape`.
    public init(name: String, shape: [Int], floats values: [Float]) {
      self = values.withUnsafeBufferPointer { Tensor(name: name, shape: shape, floats: $0) }
    }

    /// Creates an `I64` tensor containing `values`, row-major.
    ///
    /// - Precondition: `values.count` is the product of `shape`.
    public init(name: String, shape: [Int], int64s values: [Int64]) {
      let bytes = [UInt8](unsafeUninitializedCapacity: 8 * values.count) { raw, count in
        let destination = UnsafeMutableRawBufferPointer(raw)
        for (i, value) in values.enumerated() {
          destination.storeBytes(of: value.littleEndian, toByteOffset: 8 * i, as: Int64.self)
        }
        count = 8 * values.count
      }
      self.init(name: name, dtype: .i64, shape: shape, bytes: bytes)
    }

    /// Creates an `F64` tensor from `values`, row-major, stored little-endian.
    ///
    /// - Precondition: `values.count` equals the product of `shape`.
    public init(name: String, shape: [Int], doubles values: [Double]) {
      let bytes = [UInt8](unsafeUninitializedCapacity: 8 * values.count) { raw, count in
        let destination = UnsafeMutableRawBufferPointer(raw)
        for (i, value) in values.enumerated() {
          destination.storeBytes(
            of: value.bitPattern.littleEndian, toByteOffset: 8 * i, as: UInt64.self)
        }
        count = 8 * values.count
      }
      self.init(name: name, dtype: .f64, shape: shape, bytes: bytes)
    }
  }

  /// Returns the byte count of a tensor of `shape` and `dtype`, or `nil` when a dimension is
  /// negative or the product overflows `Int`.
  static func byteCount(shape: [Int], dtype: DType) -> Int? {
    var count = dtype.elementSize
    for dimension in shape {
      guard dimension >= 0 else { return nil }
      let (product, overflow) = count.multipliedReportingOverflow(by: dimension)
      guard !overflow else { return nil }
      count = product
    }
    return count
  }
}

// MARK: - Writing

extension SafeTensors {
  /// Returns the file contents: header length, padded JSON header, then the data section.
  public func serialized() -> [UInt8] {
    var header: [UInt8] = []
    header.append(ascii: "{")
    var needsComma = false
    if !metadata.isEmpty {
      header.appendJSONString(Self.metadataKey)
      header.append(ascii: ":{")
      for (i, key) in metadata.keys.sorted().enumerated() {
        if i > 0 { header.append(ascii: ",") }
        header.appendJSONString(key)
        header.append(ascii: ":")
        header.appendJSONString(metadata[key] ?? "")
      }
      header.append(ascii: "}")
      needsComma = true
    }
    var offset = 0
    for tensor in tensors {
      if needsComma { header.append(ascii: ",") }
      needsComma = true
      header.appendJSONString(tensor.name)
      header.append(ascii: ":{\"dtype\":")
      header.appendJSONString(tensor.dtype.rawValue)
      header.append(ascii: ",\"shape\":[")
      header.append(ascii: tensor.shape.map(String.init).joined(separator: ","))
      header.append(ascii: "],\"data_offsets\":[\(offset),\(offset + tensor.bytes.count)]}")
      offset += tensor.bytes.count
    }
    header.append(ascii: "}")
    // Spaces are JSON whitespace, so the padding keeps the header valid JSON while the data
    // section that follows starts at a multiple of 8 bytes from the start of the file.
    while header.count % 8 != 0 { header.append(0x20) }

    var file: [UInt8] = []
    file.reserveCapacity(8 + header.count + offset)
    withUnsafeBytes(of: UInt64(header.count).littleEndian) { file.append(contentsOf: $0) }
    file.append(contentsOf: header)
    for tensor in tensors { file.append(contentsOf: tensor.bytes) }
    return file
  }

  /// Writes the serialized tensors to `path` through ``AtomicFile``, so that a crash leaves
  /// either the previous file or the complete new one.
  ///
  /// - Throws: ``AtomicFileError`` when a file system call fails.
  public func write(to path: String) throws {
    try AtomicFile.write(serialized(), to: path)
  }
}

extension [UInt8] {
  fileprivate mutating func append(ascii text: String) {
    append(contentsOf: text.utf8)
  }

  /// Appends `text` as a JSON string literal, escaping quotes, backslashes and control
  /// characters as serde_json does, so the header is valid for every name.
  fileprivate mutating func appendJSONString(_ text: String) {
    let hexDigits = Array("0123456789abcdef".utf8)
    append(0x22)
    for byte in text.utf8 {
      switch byte {
      case 0x22: append(contentsOf: [0x5C, 0x22])  // \"
      case 0x5C: append(contentsOf: [0x5C, 0x5C])  // \\
      case 0x0A: append(contentsOf: [0x5C, 0x6E])  // \n
      case 0x0D: append(contentsOf: [0x5C, 0x72])  // \r
      case 0x09: append(contentsOf: [0x5C, 0x74])  // \t
      case 0x08: append(contentsOf: [0x5C, 0x62])  // \b
      case 0x0C: append(contentsOf: [0x5C, 0x66])  // \f
      case 0x00..<0x20:
        append(contentsOf: [0x5C, 0x75, 0x30, 0x30])  // \u00
        append(hexDigits[Int(byte >> 4)])
        append(hexDigits[Int(byte & 0xF)])
      default: append(byte)
      }
    }
    append(0x22)
  }
}

// MARK: - Reading

extension SafeTensors {
  /// Reads and parses the safetensors file at `path`.
  ///
  /// - Throws: ``SafeTensorsError`` naming `path` when the file cannot be read or is malformed.
  public static func read(path: String) throws -> SafeTensors {
    let bytes = try readFile(path)
    do {
      var value = try SafeTensors(bytes: bytes)
      value.sourcePath = path
      return value
    } catch var error as SafeTensorsError {
      error.path = path
      throw error
    }
  }

  /// Parses the contents of a safetensors file.
  ///
  /// - Throws: ``SafeTensorsError`` when the bytes are not a well-formed safetensors file.
  public init(bytes: [UInt8]) throws {
    self = try bytes.withUnsafeBytes { try SafeTensors(bytes: $0) }
  }

  /// Parses the contents of a safetensors file.
  ///
  /// - Throws: ``SafeTensorsError`` when the bytes are not a well-formed safetensors file.
  public init(bytes: UnsafeRawBufferPointer) throws {
    let fixLine = "the file is damaged or was not written as safetensors"
    guard bytes.count >= 8 else {
      throw SafeTensorsError(
        .truncated, path: nil,
        "the file is \(bytes.count) bytes long, shorter than the 8-byte header length; \(fixLine)"
      )
    }
    let declaredLength = UInt64(littleEndian: bytes.loadUnaligned(as: UInt64.self))
    let available = bytes.count - 8
    guard declaredLength <= UInt64(available) else {
      throw SafeTensorsError(
        .headerLengthOutOfRange, path: nil,
        "the header length field is \(declaredLength) but only \(available) bytes follow it; "
          + "the file is truncated or was not written as safetensors")
    }
    let headerLength = Int(declaredLength)
    guard headerLength <= Self.maximumHeaderLength else {
      throw SafeTensorsError(
        .headerLengthOutOfRange, path: nil,
        "the header length field is \(headerLength), above the limit of "
          + "\(Self.maximumHeaderLength) bytes; \(fixLine)")
    }
    let header = UnsafeRawBufferPointer(rebasing: bytes[8..<(8 + headerLength)])
    let data = UnsafeRawBufferPointer(rebasing: bytes[(8 + headerLength)...])
    let layout = try HeaderLayout(parsing: header, dataLength: data.count)

    tensors = []
    indexByName = [:]
    metadata = layout.metadata
    for entry in layout.entries {
      let tensorBytes = [UInt8](UnsafeRawBufferPointer(rebasing: data[entry.begin..<entry.end]))
      let tensor = Tensor(
        name: entry.name, dtype: entry.dtype, shape: entry.shape, bytes: tensorBytes)
      indexByName[tensor.name] = tensors.count
      tensors.append(tensor)
    }
  }
}

/// A malformed or unreadable safetensors file, or a tensor that does not match what the
/// caller expects.
public struct SafeTensorsError: Error, CustomStringConvertible, Equatable {
  /// The kind of problem, for callers that react to some of them.
  public enum Kind: Sendable, Equatable {
    /// The file could not be opened or read.
    case unreadableFile
    /// The input is shorter than the 8-byte header length.
    case truncated
    /// The header length points past the end of the input or above the header size limit.
    case headerLengthOutOfRange
    /// The header is not valid UTF-8 JSON.
    case invalidJSON
    /// The header is valid JSON but not an object of well-formed tensor entries.
    case invalidHeader
    /// A tensor's dtype is not one of ``SafeTensors/DType``.
    case unknownDType
    /// A tensor's byte range does not match its shape and dtype.
    case sizeMismatch
    /// A tensor's byte range is reversed, outside the data section, overlapping another
    /// tensor's range, or separated from the previous range by a gap.
    case invalidOffsets
    /// Two header entries have the same name.
    case duplicateName
    /// Bytes follow the last tensor's range in the data section.
    case trailingBytes
    /// A requested tensor does not exist.
    case missingTensor
    /// A requested tensor has another dtype than the accessor reads.
    case dtypeMismatch
    /// A requested tensor has another shape or size than expected.
    case shapeMismatch
  }

  /// The kind of problem.
  public let kind: Kind
  /// The file concerned, or `nil` for bytes parsed in memory.
  public var path: String?
  /// What is wrong and what to do, without the path.
  public let reason: String

  /// Creates an error of `kind` about `path` with `reason`.
  public init(_ kind: Kind, path: String?, _ reason: String) {
    self.kind = kind
    self.path = path
    self.reason = reason
  }

  /// One line: the file (when known), what is wrong and what to do.
  public var description: String {
    if let path { return "safetensors file '\(path)': \(reason)" }
    return "safetensors data: \(reason)"
  }
}

/// Returns the whole contents of the file at `path`.
private func readFile(_ path: String) throws -> [UInt8] {
  func failure(_ call: String, _ code: Int32) -> SafeTensorsError {
    let fix = code == ENOENT ? "check the path" : "check the file's permissions and the disk"
    return SafeTensorsError(
      .unreadableFile, path: path, "\(call) failed: \(systemErrorMessage(code)); \(fix)")
  }
  let descriptor = open(path, O_RDONLY | O_CLOEXEC)
  guard descriptor >= 0 else { throw failure("open", errno) }
  defer { close(descriptor) }

  var status = stat()
  guard fstat(descriptor, &status) == 0 else { throw failure("fstat", errno) }
  guard (status.st_mode & S_IFMT) == S_IFREG else {
    throw SafeTensorsError(
      .unreadableFile, path: path, "the path is not a regular file; name a safetensors file")
  }
  var contents: [UInt8] = []
  contents.reserveCapacity(Int(status.st_size))
  var chunk = [UInt8](repeating: 0, count: 1 << 20)
  while true {
    let count = chunk.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
    if count < 0 {
      if errno == EINTR { continue }
      throw failure("read", errno)
    }
    if count == 0 { return contents }
    contents.append(contentsOf: chunk[0..<count])
  }
}

// MARK: - Header validation

/// The validated contents of a header: metadata, and tensor entries in data-section order.
private struct HeaderLayout {
  struct Entry {
    let name: String
    let dtype: SafeTensors.DType
    let shape: [Int]
    let begin: Int
    let end: Int
  }

  var metadata: [String: String] = [:]
  var entries: [Entry] = []

  init(parsing header: UnsafeRawBufferPointer, dataLength: Int) throws {
    let fixLine = "the file is damaged or was not written as safetensors"
    func invalid(_ kind: SafeTensorsError.Kind, _ reason: String) -> SafeTensorsError {
      SafeTensorsError(kind, path: nil, "\(reason); \(fixLine)")
    }

    guard String(validating: header, as: UTF8.self) != nil else {
      throw invalid(.invalidJSON, "the header is not valid UTF-8")
    }
    var parser = JSONParser(bytes: header)
    let document: JSONValue
    do {
      document = try parser.parseDocument()
    } catch let error as JSONSyntaxError {
      throw invalid(
        .invalidJSON, "the header is not valid JSON: \(error.problem) at byte \(error.offset)")
    }
    guard case .object(let members) = document else {
      throw invalid(.invalidHeader, "the header is JSON \(document.typeName), not an object")
    }

    var seenNames: Set<String> = []
    var hasMetadata = false
    for (name, value) in members {
      if name == SafeTensors.metadataKey {
        guard !hasMetadata else {
          throw invalid(.duplicateName, "the header has two '\(name)' entries")
        }
        hasMetadata = true
        metadata = try Self.parseMetadata(value, invalid: invalid)
        continue
      }
      guard seenNames.insert(name).inserted else {
        throw invalid(.duplicateName, "the header has two entries for tensor '\(name)'")
      }
      let entry = try Self.parseEntry(name: name, value, dataLength: dataLength, invalid: invalid)
      entries.append(entry)
    }

    // The entries may come in any order in the header, so the layout is checked in data order.
    entries.sort { ($0.begin, $0.end) < ($1.begin, $1.end) }
    var expectedBegin = 0
    var previous: Entry?
    for entry in entries {
      if entry.begin < expectedBegin, let previous {
        throw invalid(
          .invalidOffsets,
          "tensor '\(entry.name)' (bytes \(entry.begin)..<\(entry.end)) overlaps tensor "
            + "'\(previous.name)' (bytes \(previous.begin)..<\(previous.end))")
      }
      if entry.begin > expectedBegin {
        throw invalid(
          .invalidOffsets,
          "the data section has a gap: bytes \(expectedBegin)..<\(entry.begin) before tensor "
            + "'\(entry.name)' belong to no tensor")
      }
      expectedBegin = entry.end
      previous = entry
    }
    if expectedBegin < dataLength {
      throw invalid(
        .trailingBytes,
        "\(dataLength - expectedBegin) bytes follow the last tensor's data (the tensors cover "
          + "\(expectedBegin) of \(dataLength) bytes)")
    }
  }

  private static func parseMetadata(
    _ value: JSONValue, invalid: (SafeTensorsError.Kind, String) -> SafeTensorsError
  ) throws -> [String: String] {
    guard case .object(let members) = value else {
      throw invalid(
        .invalidHeader,
        "'\(SafeTensors.metadataKey)' is JSON \(value.typeName), not an object of strings")
    }
    var metadata: [String: String] = [:]
    for (key, member) in members {
      guard case .string(let text) = member else {
        throw invalid(
          .invalidHeader, "metadata value '\(key)' is JSON \(member.typeName), not a string")
      }
      guard metadata.updateValue(text, forKey: key) == nil else {
        throw invalid(.duplicateName, "metadata key '\(key)' appears twice")
      }
    }
    return metadata
  }

  private static func parseEntry(
    name: String, _ value: JSONValue, dataLength: Int,
    invalid: (SafeTensorsError.Kind, String) -> SafeTensorsError
  ) throws -> Entry {
    guard case .object(let fields) = value else {
      throw invalid(
        .invalidHeader, "the entry for tensor '\(name)' is JSON \(value.typeName), not an object")
    }
    var dtypeName: String?
    var shape: [Int]?
    var offsets: [Int]?
    for (key, field) in fields {
      let isRepeated: Bool
      switch key {
      case "dtype":
        isRepeated = dtypeName != nil
        guard case .string(let text) = field else {
          throw invalid(
            .invalidHeader, "the dtype of tensor '\(name)' is JSON \(field.typeName), not a string")
        }
        dtypeName = text
      case "shape":
        isRepeated = shape != nil
        shape = try integers(field, field: "shape", tensor: name, invalid: invalid)
      case "data_offsets":
        isRepeated = offsets != nil
        offsets = try integers(field, field: "data_offsets", tensor: name, invalid: invalid)
      default:
        // Other fields are ignored, as the safetensors Python package (0.8.0) ignores them.
        isRepeated = false
      }
      if isRepeated {
        throw invalid(.invalidHeader, "tensor '\(name)' has two '\(key)' fields")
      }
    }
    guard let dtypeName, let shape, let offsets else {
      let missing = [
        ("dtype", dtypeName == nil), ("shape", shape == nil), ("data_offsets", offsets == nil),
      ]
      .filter { $0.1 }.map { $0.0 }.joined(separator: ", ")
      throw invalid(.invalidHeader, "tensor '\(name)' lacks the field(s) \(missing)")
    }
    guard let dtype = SafeTensors.DType(rawValue: dtypeName) else {
      let known = SafeTensors.DType.allCases.map(\.rawValue).joined(separator: ", ")
      throw invalid(
        .unknownDType, "tensor '\(name)' has dtype '\(dtypeName)', not one of \(known)")
    }
    guard offsets.count == 2 else {
      throw invalid(
        .invalidHeader,
        "data_offsets of tensor '\(name)' has \(offsets.count) numbers, expected [begin, end]")
    }
    let begin = offsets[0]
    let end = offsets[1]
    guard begin <= end else {
      throw invalid(
        .invalidOffsets, "tensor '\(name)' has data_offsets [\(begin), \(end)] with begin > end")
    }
    guard end <= dataLength else {
      throw invalid(
        .invalidOffsets,
        "tensor '\(name)' ends at byte \(end) but the data section has \(dataLength) bytes")
    }
    guard let byteCount = SafeTensors.byteCount(shape: shape, dtype: dtype) else {
      throw invalid(
        .sizeMismatch, "tensor '\(name)' has shape \(shape), too large to address in memory")
    }
    guard byteCount == end - begin else {
      throw invalid(
        .sizeMismatch,
        "tensor '\(name)' of shape \(shape) and dtype \(dtypeName) needs \(byteCount) bytes but "
          + "data_offsets [\(begin), \(end)] span \(end - begin)")
    }
    return Entry(name: name, dtype: dtype, shape: shape, begin: begin, end: end)
  }

  /// Returns the elements of a JSON array of non-negative integers that fit in `Int`.
  private static func integers(
    _ value: JSONValue, field: String, tensor: String,
    invalid: (SafeTensorsError.Kind, String) -> SafeTensorsError
  ) throws -> [Int] {
    guard case .array(let elements) = value else {
      throw invalid(
        .invalidHeader, "\(field) of tensor '\(tensor)' is JSON \(value.typeName), not an array")
    }
    return try elements.map { element in
      guard case .number(let literal) = element, let number = Int(literal), number >= 0 else {
        throw invalid(
          .invalidHeader,
          "\(field) of tensor '\(tensor)' contains \(element.summary), "
            + "not a non-negative integer")
      }
      return number
    }
  }
}

// MARK: - JSON

/// A parsed JSON value that keeps object members in their order, duplicates included.
private indirect enum JSONValue {
  case object([(key: String, value: JSONValue)])
  case array([JSONValue])
  case string(String)
  /// A number, kept as its literal text so integers convert exactly.
  case number(String)
  case bool(Bool)
  case null

  var typeName: String {
    switch self {
    case .object: "object"
    case .array: "array"
    case .string: "string"
    case .number: "number"
    case .bool: "boolean"
    case .null: "null"
    }
  }

  /// A short rendering for error messages.
  var summary: String {
    switch self {
    case .number(let literal): literal
    case .string(let text): "the string \"\(text.prefix(40))\""
    default: "a JSON \(typeName)"
    }
  }
}

/// A JSON syntax error at a byte offset of the header.
private struct JSONSyntaxError: Error {
  let problem: String
  let offset: Int
}

/// A recursive-descent JSON parser (RFC 8259) over raw bytes.
///
/// Nesting is limited to ``maximumDepth`` levels, so hostile input cannot overflow the stack.
private struct JSONParser {
  static let maximumDepth = 64

  let bytes: UnsafeRawBufferPointer
  var index = 0
  var depth = 0

  init(bytes: UnsafeRawBufferPointer) {
    self.bytes = bytes
  }

  /// Parses one value surrounded by optional whitespace and nothing else.
  mutating func parseDocument() throws -> JSONValue {
    let value = try parseValue()
    skipWhitespace()
    guard index == bytes.count else {
      throw JSONSyntaxError(problem: "unexpected text after the JSON value", offset: index)
    }
    return value
  }

  private var current: UInt8? { index < bytes.count ? bytes[index] : nil }

  private func failure(_ problem: String) -> JSONSyntaxError {
    JSONSyntaxError(
      problem: current == nil ? "\(problem), found the end of the header" : problem, offset: index)
  }

  private mutating func skipWhitespace() {
    while let byte = current, byte == 0x20 || byte == 0x0A || byte == 0x0D || byte == 0x09 {
      index += 1
    }
  }

  private mutating func expect(_ literal: String) throws {
    for byte in literal.utf8 {
      guard current == byte else { throw failure("expected '\(literal)'") }
      index += 1
    }
  }

  private mutating func parseValue() throws -> JSONValue {
    skipWhitespace()
    guard let byte = current else { throw failure("expected a JSON value") }
    switch byte {
    case UInt8(ascii: "{"): return try parseObject()
    case UInt8(ascii: "["): return try parseArray()
    case UInt8(ascii: "\""): return .string(try parseString())
    case UInt8(ascii: "t"):
      try expect("true")
      return .bool(true)
    case UInt8(ascii: "f"):
      try expect("false")
      return .bool(false)
    case UInt8(ascii: "n"):
      try expect("null")
      return .null
    case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return try parseNumber()
    default: throw failure("expected a JSON value")
    }
  }

  private mutating func enterContainer() throws {
    depth += 1
    guard depth <= Self.maximumDepth else {
      throw failure("nesting deeper than \(Self.maximumDepth) levels")
    }
  }

  private mutating func parseObject() throws -> JSONValue {
    try enterContainer()
    defer { depth -= 1 }
    index += 1  // {
    var members: [(key: String, value: JSONValue)] = []
    skipWhitespace()
    if current == UInt8(ascii: "}") {
      index += 1
      return .object(members)
    }
    while true {
      skipWhitespace()
      guard current == UInt8(ascii: "\"") else { throw failure("expected a string key") }
      let key = try parseString()
      skipWhitespace()
      guard current == UInt8(ascii: ":") else { throw failure("expected ':'") }
      index += 1
      members.append((key, try parseValue()))
      skipWhitespace()
      switch current {
      case UInt8(ascii: ","): index += 1
      case UInt8(ascii: "}"):
        index += 1
        return .object(members)
      default: throw failure("expected ',' or '}'")
      }
    }
  }

  private mutating func parseArray() throws -> JSONValue {
    try enterContainer()
    defer { depth -= 1 }
    index += 1  // [
    var elements: [JSONValue] = []
    skipWhitespace()
    if current == UInt8(ascii: "]") {
      index += 1
      return .array(elements)
    }
    while true {
      elements.append(try parseValue())
      skipWhitespace()
      switch current {
      case UInt8(ascii: ","): index += 1
      case UInt8(ascii: "]"):
        index += 1
        return .array(elements)
      default: throw failure("expected ',' or ']'")
      }
    }
  }

  private mutating func parseString() throws -> String {
    index += 1  // opening quote
    var utf8: [UInt8] = []
    while true {
      guard let byte = current else { throw failure("unterminated string") }
      switch byte {
      case UInt8(ascii: "\""):
        index += 1
        // The header was checked to be valid UTF-8 and escapes produce valid scalars only.
        return String(decoding: utf8, as: UTF8.self)
      case UInt8(ascii: "\\"):
        index += 1
        try parseEscape(into: &utf8)
      case 0x00..<0x20:
        throw failure("unescaped control character 0x\(String(byte, radix: 16)) in a string")
      default:
        utf8.append(byte)
        index += 1
      }
    }
  }

  private mutating func parseEscape(into utf8: inout [UInt8]) throws {
    guard let byte = current else { throw failure("unterminated escape") }
    index += 1
    switch byte {
    case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): utf8.append(byte)
    case UInt8(ascii: "b"): utf8.append(0x08)
    case UInt8(ascii: "f"): utf8.append(0x0C)
    case UInt8(ascii: "n"): utf8.append(0x0A)
    case UInt8(ascii: "r"): utf8.append(0x0D)
    case UInt8(ascii: "t"): utf8.append(0x09)
    case UInt8(ascii: "u"):
      var scalarValue = try parseHexQuad()
      if (0xD800..<0xDC00).contains(scalarValue) {
        // A high surrogate must be followed by an escaped low surrogate (RFC 8259, section 7).
        guard current == UInt8(ascii: "\\") else { throw failure("unpaired surrogate escape") }
        index += 1
        guard current == UInt8(ascii: "u") else { throw failure("unpaired surrogate escape") }
        index += 1
        let low = try parseHexQuad()
        guard (0xDC00..<0xE000).contains(low) else { throw failure("unpaired surrogate escape") }
        scalarValue = 0x10000 + ((scalarValue - 0xD800) << 10) + (low - 0xDC00)
      }
      guard let scalar = Unicode.Scalar(scalarValue) else {
        throw failure("unpaired surrogate escape")
      }
      utf8.append(contentsOf: String(Character(scalar)).utf8)
    default:
      index -= 1
      throw failure("invalid escape '\\\(Character(Unicode.Scalar(byte)))'")
    }
  }

  private mutating func parseHexQuad() throws -> UInt32 {
    var value: UInt32 = 0
    for _ in 0..<4 {
      guard let byte = current, let digit = hexValue(byte) else {
        throw failure("expected 4 hexadecimal digits after \\u")
      }
      value = value << 4 | digit
      index += 1
    }
    return value
  }

  private func hexValue(_ byte: UInt8) -> UInt32? {
    switch byte {
    case UInt8(ascii: "0")...UInt8(ascii: "9"): UInt32(byte - UInt8(ascii: "0"))
    case UInt8(ascii: "a")...UInt8(ascii: "f"): UInt32(byte - UInt8(ascii: "a") + 10)
    case UInt8(ascii: "A")...UInt8(ascii: "F"): UInt32(byte - UInt8(ascii: "A") + 10)
    default: nil
    }
  }

  private mutating func parseNumber() throws -> JSONValue {
    let start = index
    if current == UInt8(ascii: "-") { index += 1 }
    if current == UInt8(ascii: "0") {
      index += 1
    } else {
      guard skipDigits() else { throw failure("expected a digit") }
    }
    if current == UInt8(ascii: ".") {
      index += 1
      guard skipDigits() else { throw failure("expected a digit after '.'") }
    }
    if current == UInt8(ascii: "e") || current == UInt8(ascii: "E") {
      index += 1
      if current == UInt8(ascii: "+") || current == UInt8(ascii: "-") { index += 1 }
      guard skipDigits() else { throw failure("expected a digit in the exponent") }
    }
    let literal = UnsafeRawBufferPointer(rebasing: bytes[start..<index])
    return .number(String(decoding: literal, as: UTF8.self))
  }

  /// Skips decimal digits and returns whether there was at least one.
  private mutating func skipDigits() -> Bool {
    let start = index
    while let byte = current, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) {
      index += 1
    }
    return index > start
  }
}
