/// The grouping of the reduce buffer into allreduce calls.
public enum AllreduceFusion: String, Sendable, Codable, CaseIterable {
  /// Every task's gradients and losses in one buffer: one allreduce per step, or one per
  /// region with ``AllreduceMode/overlap``.
  case all
  /// One allreduce per task after the backward pass, carrying that task's encoder gradients,
  /// its head's gradients and its loss, as a trainer that reduces each task's gradients on
  /// their own does.
  ///
  /// A task's values lie in several blocks of the reduce buffer (a row of every encoder
  /// gradient block, then its head's range, then its loss). They are copied into one
  /// contiguous staging buffer before the call and back after it. An MPI indexed datatype over
  /// the blocks would avoid the copies but not help, because the whole task is one element of
  /// it. Open MPI's ring allreduce (`ompi_coll_base_allreduce_intra_ring`) needs at least one
  /// element per rank to split the message, so it falls back to recursive doubling. That
  /// allocates and fills a temporary as long as the datatype's extent, most of the reduce
  /// buffer, on every call. The staging buffer keeps each call a contiguous array of a
  /// predefined type, and lets the bfloat16 path round straight into its 16-bit buffer.
  case perTask = "per-task"
}

/// The number format of the gradients on the wire.
public enum AllreducePrecision: String, Sendable, Codable, CaseIterable {
  /// The gradients as they are.
  case float32
  /// Gradients rounded to bfloat16 (to nearest, ties to even), summed with a custom MPI
  /// operation that adds in float32 and rounds back, then widened to float32; half the bytes
  /// of ``float32``.
  ///
  /// The losses stay float32, in an allreduce of their own, because GradNorm divides by them.
  case bfloat16
}
