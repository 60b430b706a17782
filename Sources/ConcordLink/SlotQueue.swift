/// A first-in, first-out ring of packet slot indices with a fixed capacity, allocated once.
///
/// The queue owns its storage, so it is a class: copies of a struct would share the pointer.
final class SlotQueue {
  private let storage: UnsafeMutablePointer<Int32>
  private let capacity: Int
  private var head = 0
  /// The number of slots in the queue.
  private(set) var count = 0

  /// Creates an empty queue that holds up to `capacity` slots.
  init(capacity: Int) {
    precondition(capacity > 0, "queue capacity \(capacity) is not positive")
    self.capacity = capacity
    storage = .allocate(capacity: capacity)
  }

  deinit { storage.deallocate() }

  /// The oldest slot, or nil when the queue is empty.
  var first: Int32? { count > 0 ? storage[head] : nil }

  /// Appends `slot`.
  ///
  /// The caller guarantees room, because the queues together never hold more
  /// slots than the pool has.
  func append(_ slot: Int32) {
    precondition(count < capacity, "slot queue of \(capacity) overflowed")
    var tail = head + count
    if tail >= capacity { tail -= capacity }
    storage[tail] = slot
    count += 1
  }

  /// Removes and returns the oldest slot.
  ///
  /// The queue must not be empty.
  func removeFirst() -> Int32 {
    precondition(count > 0, "removeFirst on an empty slot queue")
    let slot = storage[head]
    head += 1
    if head == capacity { head = 0 }
    count -= 1
    return slot
  }
}
