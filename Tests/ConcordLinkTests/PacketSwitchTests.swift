import ConcordLink
import Testing

/// The addresses of the test hosts: 198.18.1.1, 198.18.1.2 and 198.18.1.3.
private let hostAddresses: [UInt32] = [0xC612_0101, 0xC612_0102, 0xC612_0103]

/// A delivered packet: the receiving host, the time, and the packet's length.
private struct Delivery: Equatable {
  var host: Int
  var time: Int64
  var length: Int
}

/// Drives a ``PacketSwitch`` on a virtual clock and records every delivery with its time.
private final class SwitchDriver {
  let network: PacketSwitch
  var deliveries: [Delivery] = []

  init(profile: LinkProfile, slotCount: Int = 64, slotSize: Int = 9000) {
    network = PacketSwitch(
      profile: profile, addresses: hostAddresses, slotSize: slotSize, slotCount: slotCount)
  }

  /// Submits an IPv4 packet of `length` bytes from host `source` to `destination` at `time`.
  func send(from source: Int, to destination: UInt32, length: Int, at time: Int64) throws {
    let slot = try #require(network.takeSlot())
    let buffer = network.buffer(of: slot)
    buffer.initializeMemory(as: UInt8.self, repeating: 0)
    buffer[0] = 0x45  // version 4, header length 5 words
    for index in 0..<4 {
      buffer[16 + index] = UInt8(truncatingIfNeeded: destination >> (24 - 8 * index))
    }
    network.submit(slot: slot, length: length, from: source, at: time)
  }

  /// Runs the switch event by event until its queues are empty, as the event loop does with
  /// an exact clock.
  func runUntilIdle() {
    while let time = network.nextEventTime {
      network.advance(to: time) { host, packet in
        deliveries.append(Delivery(host: host, time: time, length: packet.count))
        return true
      }
    }
  }
}

private let start: Int64 = 1_000_000

@Suite struct LinkProfileTests {
  @Test func serialisationTimeAtOneGigabit() {
    let profile = LinkProfile(delay: 0, bitsPerSecond: 1_000_000_000, queueLimit: 1 << 20)
    #expect(profile.serialisationTime(bytes: 1500) == 12_000)
    #expect(profile.serialisationTime(bytes: 9000) == 72_000)
  }

  @Test func serialisationTimeRoundsUp() {
    let profile = LinkProfile(delay: 0, bitsPerSecond: 3, queueLimit: 1 << 20)
    // 8 bits at 3 bit/s take 2.67 s, rounded up to the next nanosecond.
    #expect(profile.serialisationTime(bytes: 1) == 2_666_666_667)
  }

  @Test func noRateLimitSerialisesInstantly() {
    let profile = LinkProfile(delay: 5, bitsPerSecond: 0, queueLimit: 1 << 20)
    #expect(!profile.hasRateLimit)
    #expect(profile.serialisationTime(bytes: 65535) == 0)
  }

  @Test func serialiseQueuesBehindBusyPort() {
    let profile = LinkProfile(delay: 0, bitsPerSecond: 1_000_000_000, queueLimit: 1 << 20)
    var busyUntil: Int64 = 0
    #expect(profile.serialise(bytes: 1500, arrivingAt: 1000, busyUntil: &busyUntil) == 13_000)
    #expect(busyUntil == 13_000)
    // Arriving while the port is busy, the packet starts when the previous one ends.
    #expect(profile.serialise(bytes: 1500, arrivingAt: 5000, busyUntil: &busyUntil) == 25_000)
    // Arriving at an idle port, it starts at once.
    #expect(profile.serialise(bytes: 100, arrivingAt: 90_000, busyUntil: &busyUntil) == 90_800)
  }

  @Test func serialiseDropsBeyondQueueLimit() {
    let profile = LinkProfile(delay: 0, bitsPerSecond: 1_000_000_000, queueLimit: 3000)
    var busyUntil: Int64 = 24_000
    // 24 us of backlog (3000 bytes) is full: another packet would need 36 us > 24 us.
    #expect(profile.serialise(bytes: 1500, arrivingAt: 0, busyUntil: &busyUntil) == nil)
    #expect(busyUntil == 24_000)
    // 12 us later, 1500 bytes wait and the packet fits exactly.
    #expect(profile.serialise(bytes: 1500, arrivingAt: 12_000, busyUntil: &busyUntil) == 36_000)
  }

  @Test func parsesDelays() throws {
    #expect(try LinkProfile.parseDelay("2") == 2_000_000)
    #expect(try LinkProfile.parseDelay("0.1") == 100_000)
    #expect(try LinkProfile.parseDelay("0") == 0)
    for invalid in ["", "-1", "1e3", "2ms", ".5", "1.", "3600001"] {
      #expect(throws: LinkValueError.self, "delay \(invalid)") {
        try LinkProfile.parseDelay(invalid)
      }
    }
  }

  @Test func parsesRates() throws {
    #expect(try LinkProfile.parseRate("1gbit") == 1_000_000_000)
    #expect(try LinkProfile.parseRate("10gbit") == 10_000_000_000)
    #expect(try LinkProfile.parseRate("2.5mbit") == 2_500_000)
    #expect(try LinkProfile.parseRate("800kbit") == 800_000)
    #expect(try LinkProfile.parseRate("64bit") == 64)
    for invalid in ["", "1", "gbit", "1gbps", "-1gbit", "1.5.2mbit", "0bit", "2000gbit"] {
      #expect(throws: LinkValueError.self, "rate \(invalid)") {
        try LinkProfile.parseRate(invalid)
      }
    }
  }
}

@Suite struct PacketSwitchTests {
  /// 2 ms delay and 1 Gbit/s: a 1500-byte packet takes 12 us per port.
  let profile = LinkProfile(delay: 2_000_000, bitsPerSecond: 1_000_000_000, queueLimit: 1 << 20)

  @Test func idlePathAddsDelayAndTwoSerialisations() throws {
    let driver = SwitchDriver(profile: profile)
    try driver.send(from: 0, to: hostAddresses[1], length: 1500, at: start)
    driver.runUntilIdle()
    #expect(
      driver.deliveries == [Delivery(host: 1, time: start + 2_000_000 + 24_000, length: 1500)])
    #expect(driver.network.counters[0].sentPackets == 1)
    #expect(driver.network.counters[1].receivedBytes == 1500)
    #expect(driver.network.slotsInUse == 0)
  }

  @Test func uplinkSpacesBackToBackPackets() throws {
    let driver = SwitchDriver(profile: profile)
    for _ in 0..<3 { try driver.send(from: 0, to: hostAddresses[1], length: 1500, at: start) }
    driver.runUntilIdle()
    let times = driver.deliveries.map(\.time)
    let first = start + 2_000_000 + 24_000
    #expect(times == [first, first + 12_000, first + 24_000])
  }

  @Test func downlinkSerialisesTwoSenders() throws {
    let driver = SwitchDriver(profile: profile)
    try driver.send(from: 0, to: hostAddresses[2], length: 1500, at: start)
    try driver.send(from: 1, to: hostAddresses[2], length: 1500, at: start)
    driver.runUntilIdle()
    // Both reach the switch at the same time, so the second waits for the first's 12 us.
    let first = start + 2_000_000 + 24_000
    #expect(driver.deliveries.map(\.time) == [first, first + 12_000])
    #expect(driver.deliveries.allSatisfy { $0.host == 2 })
  }

  @Test func downlinkServesPacketsInArrivalOrder() throws {
    let driver = SwitchDriver(profile: profile)
    // Host 0's 9000-byte packet leaves its uplink after 72 us, host 1's 100-byte packet after
    // 0.8 us, so host 1's reaches the switch first although it was sent second.
    try driver.send(from: 0, to: hostAddresses[2], length: 9000, at: start)
    try driver.send(from: 1, to: hostAddresses[2], length: 100, at: start + 10)
    driver.runUntilIdle()
    #expect(driver.deliveries.map(\.length) == [100, 9000])
    #expect(driver.deliveries.last?.time == start + 72_000 + 2_000_000 + 72_000)
  }

  @Test func noRateLimitDeliversAfterDelay() throws {
    let driver = SwitchDriver(
      profile: LinkProfile(delay: 100_000, bitsPerSecond: 0, queueLimit: 1 << 20))
    try driver.send(from: 0, to: hostAddresses[1], length: 9000, at: start)
    try driver.send(from: 0, to: hostAddresses[1], length: 9000, at: start + 1)
    driver.runUntilIdle()
    #expect(driver.deliveries.map(\.time) == [start + 100_000, start + 100_001])
  }

  @Test func advanceWaitsForEventTime() throws {
    let driver = SwitchDriver(profile: profile)
    try driver.send(from: 0, to: hostAddresses[1], length: 1500, at: start)
    let due = try #require(driver.network.nextEventTime)
    #expect(due == start + 12_000 + 2_000_000)
    var delivered = 0
    driver.network.advance(to: due - 1) { _, _ in
      delivered += 1
      return true
    }
    #expect(delivered == 0)
    #expect(driver.network.nextEventTime == due)
  }

  @Test func fullUplinkQueueDropsTail() throws {
    // 3000 bytes of queue: the third 1500-byte packet would wait 24 us plus its own 12 us.
    let driver = SwitchDriver(
      profile: LinkProfile(delay: 0, bitsPerSecond: 1_000_000_000, queueLimit: 3000))
    for _ in 0..<3 { try driver.send(from: 0, to: hostAddresses[1], length: 1500, at: start) }
    driver.runUntilIdle()
    #expect(driver.deliveries.count == 2)
    #expect(driver.network.counters[0].uplinkDrops == 1)
    #expect(driver.network.counters[0].sentPackets == 3)
    #expect(driver.network.slotsInUse == 0)
  }

  @Test func fullDownlinkQueueDropsTail() throws {
    // Each uplink queue accepts two packets, but the shared downlink takes only two of the four.
    let driver = SwitchDriver(
      profile: LinkProfile(delay: 0, bitsPerSecond: 1_000_000_000, queueLimit: 3000))
    for _ in 0..<2 {
      try driver.send(from: 0, to: hostAddresses[2], length: 1500, at: start)
      try driver.send(from: 1, to: hostAddresses[2], length: 1500, at: start)
    }
    driver.runUntilIdle()
    #expect(driver.network.counters[0].uplinkDrops == 0)
    #expect(driver.network.counters[1].uplinkDrops == 0)
    #expect(driver.network.counters[2].downlinkDrops == 1)
    #expect(driver.deliveries.count == 3)
  }

  @Test func unknownDestinationIsDropped() throws {
    let driver = SwitchDriver(profile: profile)
    try driver.send(from: 0, to: 0xC612_0109, length: 100, at: start)
    driver.runUntilIdle()
    #expect(driver.deliveries.isEmpty)
    #expect(driver.network.counters[0].unknownDestinationDrops == 1)
    #expect(driver.network.slotsInUse == 0)
  }

  @Test func nonIPv4PacketIsDropped() throws {
    let driver = SwitchDriver(profile: profile)
    let slot = try #require(driver.network.takeSlot())
    driver.network.buffer(of: slot).initializeMemory(as: UInt8.self, repeating: 0x60)  // IPv6
    driver.network.submit(slot: slot, length: 40, from: 0, at: start)
    #expect(driver.network.counters[0].unknownDestinationDrops == 1)
    #expect(driver.network.nextEventTime == nil)
  }

  @Test func exhaustedPoolReturnsNoSlot() throws {
    let driver = SwitchDriver(profile: profile, slotCount: 2)
    try driver.send(from: 0, to: hostAddresses[1], length: 100, at: start)
    try driver.send(from: 0, to: hostAddresses[1], length: 100, at: start)
    #expect(driver.network.takeSlot() == nil)
    driver.network.countNoBufferDrop(from: 0, length: 100)
    #expect(driver.network.counters[0].noBufferDrops == 1)
    driver.runUntilIdle()
    #expect(driver.network.takeSlot() != nil)
  }

  @Test func failedDeliveryIsCounted() throws {
    let driver = SwitchDriver(profile: profile)
    try driver.send(from: 0, to: hostAddresses[1], length: 100, at: start)
    driver.network.advance(to: start + 10_000_000) { _, _ in false }
    #expect(driver.network.counters[1].deliveryFailures == 1)
    #expect(driver.network.counters[1].receivedPackets == 0)
    #expect(driver.network.slotsInUse == 0)
  }
}

@Suite struct LinkOptionsTests {
  @Test func parsesHostsAndOptions() throws {
    let options = try LinkOptions.parse([
      "--delay", "0.1", "--rate", "10gbit", "--mtu", "1500", "--queue-limit", "100000",
      "--buffers", "50", "--ready-file", "/tmp/ready", "a-t1=198.18.1.1", "a-t2=198.18.1.2",
    ])
    #expect(options.delay == 100_000)
    #expect(options.bitsPerSecond == 10_000_000_000)
    #expect(options.mtu == 1500)
    #expect(options.queueLimit == 100_000)
    #expect(options.bufferCount == 50)
    #expect(options.readyFile == "/tmp/ready")
    #expect(options.hosts.map(\.device) == ["a-t1", "a-t2"])
    #expect(options.hosts.map(\.address) == [0xC612_0101, 0xC612_0102])
  }

  @Test func defaultBuffersCoverTwoQueuesPerHost() throws {
    let options = try LinkOptions.parse(["a=10.0.0.1", "b=10.0.0.2"])
    #expect(options.mtu == 9000)
    // 4 MiB / 9000 bytes is 466.03, so 467 packets per queue.
    #expect(options.defaultBufferCount == 2 * (2 * 467 + 1024))
  }

  @Test func rejectsInvalidCommandLines() {
    let cases: [[String]] = [
      [],
      ["--delay"],
      ["--bogus", "a=10.0.0.1"],
      ["a"],
      ["a=10.0.0.256"],
      ["a=10.0.0.1", "a=10.0.0.2"],
      ["a=10.0.0.1", "b=10.0.0.1"],
      ["this-name-is-too-long=10.0.0.1"],
      ["--mtu", "67", "a=10.0.0.1"],
      ["--mtu", "9000", "--queue-limit", "8999", "a=10.0.0.1"],
      ["--buffers", "0", "a=10.0.0.1"],
    ]
    for arguments in cases {
      #expect(throws: LinkValueError.self, "\(arguments)") { try LinkOptions.parse(arguments) }
    }
  }

  @Test func parsesAndFormatsAddresses() {
    #expect(IPv4.parse("198.18.1.2") == 0xC612_0102)
    #expect(IPv4.format(0xC612_0102) == "198.18.1.2")
    for invalid in ["198.18.1", "198.18.1.2.3", "1.2.3.256", "1.2.3.-1", "a.b.c.d", "1..2.3"] {
      #expect(IPv4.parse(invalid) == nil, "\(invalid)")
    }
  }
}
