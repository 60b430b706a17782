/// The packet and byte counts of one host's port.
public struct PortCounters: Sendable, Equatable {
  /// Packets the host sent into the switch, dropped or not.
  public var sentPackets: Int = 0
  /// Bytes of ``sentPackets``.
  public var sentBytes: Int = 0
  /// Packets delivered to the host.
  public var receivedPackets: Int = 0
  /// Bytes of ``receivedPackets``.
  public var receivedBytes: Int = 0
  /// Packets from the host dropped because its uplink queue was full.
  public var uplinkDrops: Int = 0
  /// Packets to the host dropped because its downlink queue was full.
  public var downlinkDrops: Int = 0
  /// Packets from the host to an address that no host owns, or that are not IPv4.
  public var unknownDestinationDrops: Int = 0
  /// Packets from the host dropped because every packet buffer was in use.
  public var noBufferDrops: Int = 0
  /// Packets to the host that the delivery function failed to write.
  public var deliveryFailures: Int = 0

  /// Creates zero counts.
  public init() {}
}

/// An emulated switch that connects hosts through links of one ``LinkProfile``.
///
/// A packet that host A sends to host B passes three stages, each computed in nanoseconds of
/// one monotonic clock:
///
/// 1. A's uplink: it departs at `max(now, uplinkBusyUntil[A]) + serialisationTime(bytes)`.
/// 2. propagation: it reaches the switch's output port at `departure + delay`.
/// 3. B's downlink: it is delivered at `max(arrival, downlinkBusyUntil[B]) + serialisationTime(bytes)`.
///
/// Packets reach the output ports in the order of their arrival times, across all uplinks, so
/// B's downlink serves them as a switch's output queue would. Each port drops a packet that
/// would wait longer than ``LinkProfile/maximumQueueingTime`` (drop-tail on a byte limit).
///
/// The packets live in a pool of slots allocated once, `slotCount` slots of `slotSize` bytes,
/// so receiving, queueing and delivering a packet allocate nothing. The switch is not
/// thread-safe: one event loop calls it.
public final class PacketSwitch {
  /// The link properties of every port.
  public let profile: LinkProfile
  /// The largest packet in bytes (the devices' MTU).
  public let slotSize: Int
  /// The number of packet slots.
  public let slotCount: Int
  /// The number of hosts.
  public let hostCount: Int
  /// Per host, the packets and bytes that passed and were dropped.
  public private(set) var counters: [PortCounters]

  private let addresses: [UInt32: Int]
  private let storage: UnsafeMutableRawPointer
  private let lengths: UnsafeMutablePointer<Int32>
  private let destinations: UnsafeMutablePointer<Int32>
  /// Per slot, the arrival time at the output port while in an uplink queue, then the
  /// delivery time while in a downlink queue.
  private let times: UnsafeMutablePointer<Int64>
  private let freeSlots: UnsafeMutablePointer<Int32>
  private var freeCount: Int
  private let uplinks: [SlotQueue]
  private let downlinks: [SlotQueue]
  /// Per host, when its uplink and downlink finish serialising the packets they have accepted.
  private var uplinkBusyUntil: [Int64]
  private var downlinkBusyUntil: [Int64]

  /// Creates a switch for hosts that own the IPv4 addresses `addresses` (host i owns
  /// `addresses[i]`, in host byte order).
  ///
  /// - Parameters:
  ///   - profile: the delay, rate and queue limit of every port.
  ///   - addresses: one distinct address per host.
  ///   - slotSize: the largest packet in bytes, at least 20 (an IPv4 header).
  ///   - slotCount: the packet slots, shared by all ports.
  public init(profile: LinkProfile, addresses: [UInt32], slotSize: Int, slotCount: Int) {
    precondition(!addresses.isEmpty, "a switch needs at least one host")
    precondition(Set(addresses).count == addresses.count, "host addresses repeat")
    precondition(slotSize >= 20, "slot size \(slotSize) cannot hold an IPv4 header")
    precondition(slotCount > 0 && slotCount <= Int(Int32.max), "slot count \(slotCount)")
    self.profile = profile
    self.slotSize = slotSize
    self.slotCount = slotCount
    hostCount = addresses.count
    counters = Array(repeating: PortCounters(), count: addresses.count)
    self.addresses = Dictionary(
      uniqueKeysWithValues: addresses.enumerated().map { ($0.element, $0.offset) })

    storage = .allocate(byteCount: slotSize * slotCount, alignment: 64)
    lengths = .allocate(capacity: slotCount)
    destinations = .allocate(capacity: slotCount)
    times = .allocate(capacity: slotCount)
    freeSlots = .allocate(capacity: slotCount)
    for slot in 0..<slotCount { freeSlots[slot] = Int32(slotCount - 1 - slot) }
    freeCount = slotCount
    uplinks = addresses.map { _ in SlotQueue(capacity: slotCount) }
    downlinks = addresses.map { _ in SlotQueue(capacity: slotCount) }
    uplinkBusyUntil = Array(repeating: 0, count: addresses.count)
    downlinkBusyUntil = Array(repeating: 0, count: addresses.count)
  }

  deinit {
    storage.deallocate()
    lengths.deallocate()
    destinations.deallocate()
    times.deallocate()
    freeSlots.deallocate()
  }

  /// The slots in use, in queues or taken and not yet submitted.
  public var slotsInUse: Int { slotCount - freeCount }

  /// Takes a free slot to read a packet into, or returns nil when all are in use.
  ///
  /// Pass the slot to ``submit(slot:length:from:at:)`` or ``release(slot:)``.
  public func takeSlot() -> Int32? {
    guard freeCount > 0 else { return nil }
    freeCount -= 1
    return freeSlots[freeCount]
  }

  /// Returns an unused slot to the pool.
  public func release(slot: Int32) {
    precondition(freeCount < slotCount, "slot \(slot) released twice")
    freeSlots[freeCount] = slot
    freeCount += 1
  }

  /// Returns the `slotSize` bytes of `slot`, to read a packet into.
  public func buffer(of slot: Int32) -> UnsafeMutableRawBufferPointer {
    UnsafeMutableRawBufferPointer(start: storage + Int(slot) * slotSize, count: slotSize)
  }

  /// Counts a packet from `host` that was read and dropped because no slot was free.
  public func countNoBufferDrop(from host: Int, length: Int) {
    counters[host].sentPackets += 1
    counters[host].sentBytes += length
    counters[host].noBufferDrops += 1
  }

  /// Queues the packet of `length` bytes in `slot`, which `host` sent at time `now`, on the
  /// host's uplink, or drops it and releases the slot when its destination is unknown or the
  /// uplink queue is full.
  public func submit(slot: Int32, length: Int, from host: Int, at now: Int64) {
    precondition(length > 0 && length <= slotSize, "packet length \(length)")
    counters[host].sentPackets += 1
    counters[host].sentBytes += length
    guard let destination = destinationHost(of: slot, length: length) else {
      counters[host].unknownDestinationDrops += 1
      release(slot: slot)
      return
    }

    guard
      let departure = profile.serialise(
        bytes: length, arrivingAt: now, busyUntil: &uplinkBusyUntil[host])
    else {
      counters[host].uplinkDrops += 1
      release(slot: slot)
      return
    }
    lengths[Int(slot)] = Int32(length)
    destinations[Int(slot)] = Int32(destination)
    times[Int(slot)] = departure + profile.delay
    uplinks[host].append(slot)
  }

  /// The earliest time at which ``advance(to:deliver:)`` has work, or nil when every queue is
  /// empty.
  public var nextEventTime: Int64? {
    var earliest = Int64.max
    for host in 0..<hostCount {
      if let slot = uplinks[host].first { earliest = min(earliest, times[Int(slot)]) }
      if let slot = downlinks[host].first { earliest = min(earliest, times[Int(slot)]) }
    }
    return earliest == Int64.max ? nil : earliest
  }

  /// Moves every packet whose propagation ended by `now` to its downlink queue, in arrival
  /// order, then delivers every packet whose downlink serialisation ended by `now`.
  ///
  /// - Parameters:
  ///   - now: the current time in nanoseconds, on the clock of ``submit(slot:length:from:at:)``.
  ///   - deliver: writes one packet to a host and returns false when the write failed, which
  ///     is counted. The packet's bytes are valid only during the call.
  public func advance(to now: Int64, deliver: (_ host: Int, UnsafeRawBufferPointer) -> Bool) {
    while let host = uplinkWithEarliestArrival(notAfter: now) {
      enqueueOnDownlink(uplinks[host].removeFirst())
    }
    for host in 0..<hostCount {
      let queue = downlinks[host]
      while let slot = queue.first, times[Int(slot)] <= now {
        _ = queue.removeFirst()
        let length = Int(lengths[Int(slot)])
        let packet = UnsafeRawBufferPointer(start: storage + Int(slot) * slotSize, count: length)
        if deliver(host, packet) {
          counters[host].receivedPackets += 1
          counters[host].receivedBytes += length
        } else {
          counters[host].deliveryFailures += 1
        }
        release(slot: slot)
      }
    }
  }

  /// Returns the host whose uplink's oldest packet reached the switch earliest, at or before
  /// `now`, or nil when no packet has arrived.
  private func uplinkWithEarliestArrival(notAfter now: Int64) -> Int? {
    var earliestHost: Int?
    var earliest = now
    for host in 0..<hostCount {
      guard let slot = uplinks[host].first else { continue }
      let arrival = times[Int(slot)]
      if arrival < earliest || (arrival == earliest && earliestHost == nil) {
        earliest = arrival
        earliestHost = host
      }
    }
    return earliestHost
  }

  /// Schedules the packet in `slot`, which reached the switch at `times[slot]`, on its
  /// destination's downlink, or drops it when that queue is full.
  private func enqueueOnDownlink(_ slot: Int32) {
    let destination = Int(destinations[Int(slot)])
    let length = Int(lengths[Int(slot)])
    guard
      let delivery = profile.serialise(
        bytes: length, arrivingAt: times[Int(slot)], busyUntil: &downlinkBusyUntil[destination])
    else {
      counters[destination].downlinkDrops += 1
      release(slot: slot)
      return
    }
    times[Int(slot)] = delivery
    downlinks[destination].append(slot)
  }

  /// Returns the host that owns the IPv4 destination of the packet in `slot`, or nil for a
  /// packet that is not IPv4 or goes to an address no host owns.
  private func destinationHost(of slot: Int32, length: Int) -> Int? {
    let packet = UnsafeRawBufferPointer(start: storage + Int(slot) * slotSize, count: length)
    guard let address = IPv4.destination(of: packet) else { return nil }
    return addresses[address]
  }
}
