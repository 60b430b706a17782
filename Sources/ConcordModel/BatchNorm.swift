/// Batch normalisation of NHWC activations per channel, as PyTorch's `BatchNorm2d`, with the
/// statistics of the global batch (`SyncBatchNorm`).
///
/// Training normalises each channel with the mean and the biased variance of its values over
/// the global batch, `x̂ = (z - mean) / sqrt(var + eps)`, and outputs `gamma x̂ + beta`,
/// here followed by ReLU. Evaluation uses the running mean and variance instead, which every
/// training forward pass moves toward the batch's: `running = (1 - momentum) running +
/// momentum batch`, with the unbiased variance, as PyTorch does.
///
/// The backward pass of one channel, for a loss L whose gradient is `d` at the output, is
///
/// ```
/// dL/dgamma = sum d x̂        dL/dbeta = sum d
/// dL/dz_i  = gamma / sqrt(var + eps) * (d_i - mean(d) - x̂_i mean(d x̂))
/// ```
///
/// with the sums and means over the global batch. On a rank that computes a share of the
/// batch, `d` is the gradient of its own loss, a mean over its local rows. The means over the
/// global batch come from sums over all ranks divided by the global count. So every rank's
/// gradients are its share of the global batch's gradient times the rank count, and the
/// step's mean over ranks is exactly the global gradient.
enum BatchNorm {
  /// The `eps` added to the variance, PyTorch's default.
  static let epsilon = 1e-5
  /// The weight of the batch statistics in the running statistics, PyTorch's default.
  static let momentum: Float = 0.1
  /// Rows summed in Float before the partial sums move to Double.
  private static let chunk = 64

  /// Sums each channel's values and squares over `rows` dense rows of `channels` floats:
  /// `sums[c]` and `sums[channels + c]`, overwritten.
  ///
  /// - Parameter partial: work space of `2 * channels` floats.
  @inline(never)
  static func sums(
    of z: UnsafePointer<Float>, rows: Int, channels: Int, into sums: UnsafeMutablePointer<Double>,
    partial: UnsafeMutablePointer<Float>
  ) {
    sums.update(repeating: 0, count: 2 * channels)
    var start = 0
    while start < rows {
      let end = min(start + chunk, rows)
      partial.update(repeating: 0, count: 2 * channels)
      let squares = partial + channels
      for r in start..<end {
        let row = z + r * channels
        var c = 0
        while c + 8 <= channels {
          let x = row.lanes(c)
          partial.setLanes(c, partial.lanes(c) + x)
          squares.setLanes(c, squares.lanes(c) + x * x)
          c += 8
        }
        while c < channels {
          partial[c] += row[c]
          squares[c] += row[c] * row[c]
          c += 1
        }
      }
      for i in 0..<(2 * channels) { sums[i] += Double(partial[i]) }
      start = end
    }
  }

  /// Normalises `rows` dense rows of `channels` floats in place, `z = (z - mean) *
  /// inverseDeviation`, and writes `gamma z + beta` to `output`, through ReLU when
  /// `rectifies`.
  @inline(never)
  static func normalise(
    _ z: UnsafeMutablePointer<Float>, rows: Int, channels: Int, mean: UnsafePointer<Float>,
    inverseDeviation: UnsafePointer<Float>, gamma: UnsafePointer<Float>,
    beta: UnsafePointer<Float>, rectifies: Bool, output: UnsafeMutablePointer<Float>
  ) {
    let floor = rectifies ? Lanes(repeating: 0) : Lanes(repeating: -.infinity)
    for r in 0..<rows {
      let row = z + r * channels
      let out = output + r * channels
      var c = 0
      while c + 8 <= channels {
        let normalised = (row.lanes(c) - mean.lanes(c)) * inverseDeviation.lanes(c)
        row.setLanes(c, normalised)
        let y = gamma.lanes(c) * normalised + beta.lanes(c)
        out.setLanes(c, floor.replacing(with: y, where: y .> floor))
        c += 8
      }
      while c < channels {
        let normalised = (row[c] - mean[c]) * inverseDeviation[c]
        row[c] = normalised
        let y = gamma[c] * normalised + beta[c]
        out[c] = rectifies && !(y > 0) ? 0 : y
        c += 1
      }
    }
  }

  /// Masks the output gradients of `blocks` tasks by the ReLU (when `rectifies`) in place
  /// and sums, per task and channel, `d` and `d x̂` over the local rows.
  ///
  /// - Parameters:
  ///   - delta: `rows` rows of `blocks * channels` floats, task `t` at offset `t * channels`.
  ///   - normalized: the `x̂` of the forward pass, `rows` dense rows of `channels`.
  ///   - sums: `2 * blocks * channels` values, overwritten: task `t`'s `sum d` at
  ///     `2 t channels + c`, its `sum d x̂` at `(2 t + 1) channels + c`.
  ///   - partial: work space of `2 * blocks * channels` floats.
  @inline(never)
  static func backwardSums(
    delta: UnsafeMutablePointer<Float>, blocks: Int, normalized: UnsafePointer<Float>,
    rows: Int, channels: Int, gamma: UnsafePointer<Float>, beta: UnsafePointer<Float>,
    rectifies: Bool, into sums: UnsafeMutablePointer<Double>,
    partial: UnsafeMutablePointer<Float>
  ) {
    let width = blocks * channels
    sums.update(repeating: 0, count: 2 * width)
    var start = 0
    while start < rows {
      let end = min(start + chunk, rows)
      partial.update(repeating: 0, count: 2 * width)
      for r in start..<end {
        let x = normalized + r * channels
        let row = delta + r * width
        var c = 0
        while c + 8 <= channels {
          let xs = x.lanes(c)
          let y = gamma.lanes(c) * xs + beta.lanes(c)
          let keep = rectifies ? y .> 0 : SIMDMask(repeating: true)
          for b in 0..<blocks {
            let d = row + b * channels
            let sum = partial + 2 * b * channels
            let product = sum + channels
            let value = Lanes(repeating: 0).replacing(with: d.lanes(c), where: keep)
            d.setLanes(c, value)
            sum.setLanes(c, sum.lanes(c) + value)
            product.setLanes(c, product.lanes(c) + value * xs)
          }
          c += 8
        }
        while c < channels {
          let y = gamma[c] * x[c] + beta[c]
          for b in 0..<blocks {
            let d = row + b * channels
            let sum = partial + 2 * b * channels
            let value = rectifies && !(y > 0) ? 0 : d[c]
            d[c] = value
            sum[c] += value
            sum[channels + c] += value * x[c]
          }
          c += 1
        }
      }
      for i in 0..<(2 * width) { sums[i] += Double(partial[i]) }
      start = end
    }
  }

  /// Turns the masked output gradients into input gradients in place, `d = gamma *
  /// inverseDeviation * (d - S1 / count - x̂ S2 / count)`, with `sums` laid out as
  /// ``backwardSums(delta:blocks:normalized:rows:channels:gamma:beta:rectifies:into:partial:)``
  /// writes them, summed over the global batch of `count` values per channel.
  ///
  /// - Parameter coefficients: work space of `3 * blocks * channels` floats.
  @inline(never)
  static func backwardInput(
    delta: UnsafeMutablePointer<Float>, blocks: Int, normalized: UnsafePointer<Float>,
    rows: Int, channels: Int, gamma: UnsafePointer<Float>,
    inverseDeviation: UnsafePointer<Float>, sums: UnsafePointer<Double>, count: Double,
    coefficients: UnsafeMutablePointer<Float>
  ) {
    let width = blocks * channels
    let scale = coefficients
    let meanDelta = coefficients + width
    let meanProduct = coefficients + 2 * width
    for b in 0..<blocks {
      for c in 0..<channels {
        scale[b * channels + c] = gamma[c] * inverseDeviation[c]
        meanDelta[b * channels + c] = Float(sums[2 * b * channels + c] / count)
        meanProduct[b * channels + c] = Float(sums[(2 * b + 1) * channels + c] / count)
      }
    }
    for r in 0..<rows {
      let x = normalized + r * channels
      let row = delta + r * width
      for b in 0..<blocks {
        let d = row + b * channels
        let offset = b * channels
        var c = 0
        while c + 8 <= channels {
          let i = offset + c
          let value = d.lanes(c) - meanDelta.lanes(i) - x.lanes(c) * meanProduct.lanes(i)
          d.setLanes(c, scale.lanes(i) * value)
          c += 8
        }
        while c < channels {
          let i = offset + c
          d[c] = scale[i] * (d[c] - meanDelta[i] - x[c] * meanProduct[i])
          c += 1
        }
      }
    }
  }
}
