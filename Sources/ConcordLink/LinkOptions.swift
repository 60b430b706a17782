/// One emulated host: the TUN device that carries its packets and the address it owns.
public struct LinkHost: Sendable, Equatable {
  /// The TUN device name, at most 15 bytes (IFNAMSIZ - 1).
  public var device: String
  /// The host's IPv4 address, in host byte order.
  public var address: UInt32
}

/// The command line of `concord-link`.
public struct LinkOptions: Sendable, Equatable {
  /// The hosts, in command-line order.
  public var hosts: [LinkHost] = []
  /// The one-way delay in nanoseconds (`--delay MS`, default 0).
  public var delay: Int64 = 0
  /// The port rate in bits per second (`--rate RATE`), or 0 for no limit (the default).
  public var bitsPerSecond: Int64 = 0
  /// The MTU of every TUN device in bytes (`--mtu BYTES`, default 9000, a jumbo frame).
  public var mtu = 9000
  /// The bytes each port queues before it drops (`--queue-limit BYTES`, default 4 MiB).
  public var queueLimit: Int64 = 4 << 20
  /// The packet buffers shared by all ports (`--buffers N`), or nil for ``defaultBufferCount``.
  public var bufferCount: Int?
  /// The file written once every device is open (`--ready-file PATH`), or nil.
  public var readyFile: String?
  /// Whether `--help` was given.
  public var showsHelp = false

  /// The usage text that `--help` prints.
  public static let usage = """
    usage: concord-link [OPTIONS] DEVICE=ADDRESS...

    Emulates a switch between hosts whose IP packets arrive on TUN devices. Each DEVICE=ADDRESS
    opens (or creates) the TUN device DEVICE for the host that owns the IPv4 address ADDRESS.
    A packet from one host to another waits for the sender's uplink, is serialised at the rate,
    travels for the delay, then waits for and is serialised on the receiver's downlink.
    SIGTERM or SIGINT stops it, and it prints its counters per host on stderr.

    options:
      --delay MS           one-way delay in milliseconds, such as 2 or 0.1 (default 0)
      --rate RATE          rate of every uplink and downlink: bit, kbit, mbit or gbit, such as
                           1gbit (default: no limit)
      --mtu BYTES          MTU set on every device, 68 to 65535 (default 9000)
      --queue-limit BYTES  bytes a port queues before it drops packets, drop-tail
                           (default 4194304)
      --buffers N          packet buffers of MTU bytes shared by all ports (default: room for
                           two full queues per host plus 1024 packets per host in flight)
      --ready-file PATH    file to write once every device is open
      --help               print this text
    """

  /// Creates the defaults, with no hosts.
  public init() {}

  /// The buffer count used without `--buffers`: per host, two full queues of MTU-sized
  /// packets plus 1024 packets in propagation.
  public var defaultBufferCount: Int {
    let queuePackets = Int((queueLimit + Int64(mtu) - 1) / Int64(mtu))
    return hosts.count * (2 * queuePackets + 1024)
  }

  /// The link properties that these options set.
  public var profile: LinkProfile {
    LinkProfile(delay: delay, bitsPerSecond: bitsPerSecond, queueLimit: queueLimit)
  }

  /// Parses the arguments that follow the program name.
  ///
  /// - Throws: ``LinkValueError`` naming the option and value at fault.
  public static func parse(_ arguments: [String]) throws -> LinkOptions {
    var options = LinkOptions()
    var index = 0
    func value(of flag: String) throws -> String {
      index += 1
      guard index < arguments.count else {
        throw LinkValueError(description: "\(flag) needs a value (concord-link --help)")
      }
      return arguments[index]
    }

    while index < arguments.count {
      let argument = arguments[index]
      switch argument {
      case "--help", "-h": options.showsHelp = true
      case "--delay": options.delay = try LinkProfile.parseDelay(value(of: argument))
      case "--rate": options.bitsPerSecond = try LinkProfile.parseRate(value(of: argument))
      case "--mtu":
        options.mtu = try parseInteger(value(of: argument), flag: argument, in: 68...65535)
      case "--queue-limit":
        options.queueLimit = Int64(
          try parseInteger(value(of: argument), flag: argument, in: 68...(1 << 30)))
      case "--buffers":
        options.bufferCount = try parseInteger(
          value(of: argument), flag: argument, in: 1...1_000_000)
      case "--ready-file": options.readyFile = try value(of: argument)
      default:
        if argument.hasPrefix("-") {
          throw LinkValueError(
            description: "unknown option \(argument) (concord-link --help lists the options)")
        }
        options.hosts.append(try parseHost(argument))
      }
      index += 1
    }
    try options.validate()
    return options
  }

  /// Checks the relations between options that parsing each alone cannot see.
  private func validate() throws {
    if showsHelp { return }
    guard !hosts.isEmpty else {
      throw LinkValueError(description: "no hosts given: pass DEVICE=ADDRESS for each host")
    }
    if let repeated = firstRepeat(hosts.map(\.device)) {
      throw LinkValueError(description: "device \(repeated) is given twice: name each once")
    }
    if let repeated = firstRepeat(hosts.map(\.address)) {
      throw LinkValueError(
        description: "address \(IPv4.format(repeated)) is given twice: give each host its own")
    }
    guard queueLimit >= Int64(mtu) else {
      throw LinkValueError(
        description:
          "--queue-limit \(queueLimit) is below --mtu \(mtu), so no full-size packet could pass: raise it"
      )
    }
    let bytes = (bufferCount ?? defaultBufferCount) * mtu
    guard bytes <= 4 << 30 else {
      throw LinkValueError(
        description:
          "the packet buffers would take \(bytes) bytes, above 4 GiB: lower --buffers, --mtu or --queue-limit"
      )
    }
  }

  /// Parses `DEVICE=ADDRESS`.
  private static func parseHost(_ argument: String) throws -> LinkHost {
    let parts = argument.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
    guard parts.count == 2 else {
      throw LinkValueError(
        description: "host \(argument) is invalid: give DEVICE=ADDRESS, such as tun1=198.18.1.1")
    }
    let device = String(parts[0])
    guard (1...15).contains(device.utf8.count),
      device.allSatisfy({ $0.isASCII && !$0.isWhitespace && $0 != "/" && $0 != ":" })
    else {
      throw LinkValueError(
        description:
          "device name \(device) is invalid: use 1 to 15 ASCII characters without spaces, / or :"
      )
    }
    guard let address = IPv4.parse(String(parts[1])) else {
      throw LinkValueError(
        description: "address \(parts[1]) of \(device) is invalid: give IPv4 such as 198.18.1.1")
    }
    return LinkHost(device: device, address: address)
  }

  private static func parseInteger(_ text: String, flag: String, in range: ClosedRange<Int>)
    throws -> Int
  {
    guard let number = Int(text), range.contains(number) else {
      throw LinkValueError(
        description:
          "\(flag) \(text) is invalid: give a whole number from \(range.lowerBound) to \(range.upperBound)"
      )
    }
    return number
  }

  private func firstRepeat<T: Hashable>(_ values: [T]) -> T? {
    var seen = Set<T>()
    return values.first { !seen.insert($0).inserted }
  }
}
