import ConcordTensors

/// Compares `analytic` with central differences at two steps, `h` and `h / 2`, over up to 200
/// coordinates.
///
/// A coordinate whose two estimates disagree lies within `h` of a ReLU kink, where finite
/// differences are meaningless, and is left out.
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
    let scale = max(abs(coarse), abs(fine), 1e-2)
    if abs(coarse - fine) > 0.02 * scale {
      skipped += 1
      continue
    }
    checked += 1
    worst = max(worst, abs(analytic[i] - fine) / max(abs(analytic[i]), abs(fine), 1e-2))
  }
  return (worst, checked, skipped)
}
