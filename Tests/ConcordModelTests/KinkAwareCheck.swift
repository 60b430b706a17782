import ConcordTensors

/// Compares `analytic` with central differences at three steps, `h`, `h / 2` and `h / 4`,
/// over up to 200 coordinates, against the one at `h / 2`.
///
/// Near a kink of ReLU or max pooling finite differences are meaningless, so a coordinate is
/// left out when the estimates at `h` and `h / 2` disagree by more than 2%. It is also left
/// out when those at `h / 2` and `h / 4` disagree by more than 1%, because a kink between
/// `h / 4` and `h / 2` moves the estimates at both larger steps alike.
func kinkAwareCheck(
  _ values: UnsafeMutableBufferPointer<Float>, _ analytic: [Float], loss: () -> Float
) -> (worst: Float, checked: Int, skipped: Int) {
  func derivative(_ i: Int, _ h: Float) -> Float {
    let original = values[i]
    values[i] = original + h
    let up = loss()
    values[i] = original - h
    let down = loss()
    values[i] = original
    return (up - down) / (2 * h)
  }
  var stream = RandomStream(seed: 9, purpose: .test)
  let indices =
    values.count <= 200
    ? Array(0..<values.count) : (0..<200).map { _ in stream.integer(below: values.count) }
  var worst: Float = 0
  var checked = 0
  var skipped = 0
  for i in indices {
    let coarse = derivative(i, 2e-3)
    let fine = derivative(i, 1e-3)
    let finer = derivative(i, 5e-4)
    let scale = max(abs(coarse), abs(fine), 1e-2)
    if abs(coarse - fine) > 0.02 * scale || abs(finer - fine) > 0.01 * scale {
      skipped += 1
      continue
    }
    checked += 1
    worst = max(worst, abs(analytic[i] - fine) / max(abs(analytic[i]), abs(fine), 1e-2))
  }
  return (worst, checked, skipped)
}
