import CLinkShims
import ConcordLink

#if canImport(Glibc)
  import Glibc
#endif

/// Prints `message` on stderr with the program's prefix, in one write so that lines of
/// concurrent writers do not interleave.
func log(_ message: String) {
  var line = "concord-link: \(message)\n"
  line.withUTF8 { _ = write(STDERR_FILENO, $0.baseAddress, $0.count) }
}

/// Returns the text of the current errno.
func errnoText() -> String { String(cString: strerror(errno)) }

/// Returns the time on the monotonic clock in nanoseconds.
func monotonicNow() -> Int64 {
  var time = timespec()
  clock_gettime(CLOCK_MONOTONIC, &time)
  return Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
}

/// A failure of a system call, with the message to print.
struct SystemError: Error, CustomStringConvertible {
  let description: String
}

/// The event loop that moves packets between the hosts' TUN devices and a ``PacketSwitch``.
///
/// One thread waits in ppoll for packets, for SIGTERM or SIGINT, or for the switch's next event
/// time (nanosecond timeout, timer slack 1 ns), so delays of 0.1 ms keep their precision.
final class LinkEmulator {
  private let options: LinkOptions
  private let network: PacketSwitch
  private let devices: [Int32]
  private let signalDescriptor: Int32
  /// The buffer that receives packets when every slot is in use, to drop them.
  private let scratch: UnsafeMutableRawPointer
  private var pollDescriptors: [pollfd]
  private var openDevices: Int
  private var reportedWriteFailure: [Bool]

  /// Opens every host's TUN device and blocks SIGTERM and SIGINT for the event loop.
  ///
  /// - Throws: ``SystemError`` naming the device or call that failed.
  init(options: LinkOptions) throws {
    self.options = options
    var devices: [Int32] = []
    for host in options.hosts {
      let descriptor = concord_tun_open(host.device, Int32(options.mtu))
      guard descriptor >= 0 else {
        throw SystemError(
          description:
            "cannot open TUN device \(host.device) with MTU \(options.mtu): \(errnoText()) "
            + "(it needs root, /dev/net/tun and a device name that no other device uses)")
      }
      devices.append(descriptor)
    }
    self.devices = devices
    signalDescriptor = concord_termination_signalfd()
    guard signalDescriptor >= 0 else {
      throw SystemError(description: "signalfd for SIGTERM and SIGINT failed: \(errnoText())")
    }
    // The default slack of 50 microseconds would stretch 0.1 ms delays by up to a half.
    if concord_set_timer_slack(1) != 0 {
      log("warning: cannot set the timer slack to 1 ns: \(errnoText())")
    }

    network = PacketSwitch(
      profile: options.profile, addresses: options.hosts.map(\.address), slotSize: options.mtu,
      slotCount: options.bufferCount ?? options.defaultBufferCount)
    scratch = .allocate(byteCount: options.mtu, alignment: 64)
    pollDescriptors = devices.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
    pollDescriptors.append(pollfd(fd: signalDescriptor, events: Int16(POLLIN), revents: 0))
    openDevices = devices.count
    reportedWriteFailure = Array(repeating: false, count: devices.count)
  }

  deinit { scratch.deallocate() }

  /// The line that describes the emulated links.
  var summary: String {
    let rate = options.bitsPerSecond > 0 ? "\(options.bitsPerSecond) bit/s" : "no limit"
    return "\(options.hosts.count) hosts, delay \(Double(options.delay) / 1e6) ms, rate \(rate), "
      + "MTU \(options.mtu), queue limit \(options.queueLimit) bytes, "
      + "\(network.slotCount) buffers"
  }

  /// Forwards packets until SIGTERM or SIGINT arrives or every device has failed.
  ///
  /// - Throws: ``SystemError`` when ppoll fails or no device is left to read.
  func run() throws {
    let signalIndex = devices.count
    while true {
      network.advance(to: monotonicNow(), deliver: deliver)
      let timeout = network.nextEventTime.map { max(0, $0 - monotonicNow()) } ?? -1
      let ready = concord_ppoll(&pollDescriptors, nfds_t(pollDescriptors.count), timeout)
      if ready < 0 {
        if errno == EINTR { continue }
        throw SystemError(description: "ppoll failed: \(errnoText())")
      }
      if pollDescriptors[signalIndex].revents != 0 { return }

      for host in 0..<devices.count where pollDescriptors[host].fd >= 0 {
        let events = Int32(pollDescriptors[host].revents)
        if events & Int32(POLLIN) != 0 {
          receive(from: host)
        } else if events & Int32(POLLERR | POLLHUP | POLLNVAL) != 0 {
          stopReading(host, reason: "it reported an error or hang-up")
        }
      }
      guard openDevices > 0 else {
        throw SystemError(description: "every device failed, so nothing is left to forward")
      }
    }
  }

  /// Returns the counters of every host, one line each.
  func counterLines() -> [String] {
    zip(options.hosts, network.counters).map { host, count in
      "counters of \(host.device) (\(IPv4.format(host.address))): "
        + "sent \(count.sentPackets) packets \(count.sentBytes) bytes, "
        + "received \(count.receivedPackets) packets \(count.receivedBytes) bytes, dropped "
        + "\(count.uplinkDrops) at the uplink queue, \(count.downlinkDrops) at the downlink queue, "
        + "\(count.unknownDestinationDrops) to unknown destinations, "
        + "\(count.noBufferDrops) for lack of buffers, \(count.deliveryFailures) on failed writes"
    }
  }

  /// Writes `packet` to host `host`'s device, logging the first failure per host.
  private func deliver(_ host: Int, _ packet: UnsafeRawBufferPointer) -> Bool {
    let written = write(devices[host], packet.baseAddress, packet.count)
    if written == packet.count { return true }
    if !reportedWriteFailure[host] {
      reportedWriteFailure[host] = true
      log(
        "writing to \(options.hosts[host].device) failed: \(errnoText()). Further failures "
          + "on it are only counted")
    }
    return false
  }

  /// Reads the packets waiting on host `host`'s device into the switch, at most 256 so that
  /// due deliveries are not held up.
  private func receive(from host: Int) {
    for _ in 0..<256 {
      let slot = network.takeSlot()
      let buffer = slot.map { network.buffer(of: $0).baseAddress! } ?? scratch
      let length = read(devices[host], buffer, options.mtu)
      guard length > 0 else {
        if let slot { network.release(slot: slot) }
        if length < 0 && errno != EAGAIN && errno != EINTR {
          stopReading(host, reason: "read failed: \(errnoText())")
        }
        return
      }
      if let slot {
        network.submit(slot: slot, length: length, from: host, at: monotonicNow())
      } else {
        network.countNoBufferDrop(from: host, length: length)
      }
    }
  }

  /// Removes host `host`'s device from the poll set, such as after its namespace was deleted.
  private func stopReading(_ host: Int, reason: String) {
    log("device \(options.hosts[host].device): \(reason), so it is no longer read")
    pollDescriptors[host].fd = -1
    openDevices -= 1
  }
}
