/// The data movement around a 3x3 convolution with padding 1, on images stored NHWC: pixel
/// after pixel, row after row, each pixel's channels contiguous.
///
/// In that layout a convolution is a ``Linear`` layer without bias on patches. The patch
/// matrix, `[n * height * width, 9 * channels]`, has one row per output pixel with its 3x3
/// neighbourhood tap after tap (`(dy, dx)` in row-major order), each tap's channels
/// contiguous, and zeros where the neighbourhood leaves the image. The weight is
/// `[outputs, 9 * channels]` in the same order, and one GEMM gives every output pixel.
enum Im2Col {
  /// Writes the patch matrix of `images` images.
  ///
  /// - Parameters:
  ///   - input: the first image; image `i` starts at `input + i * imageStride`, and its
  ///     pixels follow each other `channels` apart.
  ///   - patches: `images * height * width` rows of `9 * channels` floats, overwritten.
  @inline(never)
  static func patches(
    input: UnsafePointer<Float>, imageStride: Int, images: Int, height: Int, width: Int,
    channels: Int, into patches: UnsafeMutablePointer<Float>
  ) {
    let rowLength = 9 * channels
    var row = patches
    for image in 0..<images {
      let source = input + image * imageStride
      for y in 0..<height {
        for x in 0..<width {
          for tap in 0..<9 {
            let sourceY = y + tap / 3 - 1
            let sourceX = x + tap % 3 - 1
            let destination = row + tap * channels
            if sourceY < 0 || sourceY >= height || sourceX < 0 || sourceX >= width {
              destination.update(repeating: 0, count: channels)
            } else if channels == 1 {
              destination.pointee = source[sourceY * width + sourceX]
            } else {
              destination.update(
                from: source + (sourceY * width + sourceX) * channels, count: channels)
            }
          }
          row += rowLength
        }
      }
    }
  }

  /// Folds a gradient of the patch matrix back onto the image it was made from: each input
  /// pixel's gradient is the sum of the taps that read it.
  ///
  /// - Parameters:
  ///   - patchGradient: `images * height * width` dense rows of `9 * channels` floats.
  ///   - inputGradient: pixel `p` (counted over all images) gets its `channels` floats at
  ///     `inputGradient + p * pixelStride`, overwritten.
  @inline(never)
  static func fold(
    patchGradient: UnsafePointer<Float>, images: Int, height: Int, width: Int, channels: Int,
    into inputGradient: UnsafeMutablePointer<Float>, pixelStride: Int
  ) {
    let rowLength = 9 * channels
    for image in 0..<images {
      for y in 0..<height {
        for x in 0..<width {
          let pixel = (image * height + y) * width + x
          let destination = inputGradient + pixel * pixelStride
          destination.update(repeating: 0, count: channels)
          // The output pixel (y - dy + 1, x - dx + 1) read this pixel through tap (dy, dx).
          for tap in 0..<9 {
            let outputY = y - tap / 3 + 1
            let outputX = x - tap % 3 + 1
            guard outputY >= 0, outputY < height, outputX >= 0, outputX < width else { continue }
            let source =
              patchGradient + ((image * height + outputY) * width + outputX) * rowLength + tap
              * channels
            var c = 0
            while c + 8 <= channels {
              destination.setLanes(c, destination.lanes(c) + source.lanes(c))
              c += 8
            }
            while c < channels {
              destination[c] += source[c]
              c += 1
            }
          }
        }
      }
    }
  }
}

/// 2x2 max pooling with stride 2 on NHWC images, as PyTorch's `MaxPool2d(2)`: an odd last
/// row or column is dropped.
enum MaxPool {
  /// Pools `images` images of `height` x `width` pixels of `channels` floats (dense) into
  /// `output` (dense, `(height / 2) * (width / 2)` pixels per image), and records in
  /// `choices` which of the four inputs won, `2 * dy + dx`, per output value.
  @inline(never)
  static func forward(
    _ input: UnsafePointer<Float>, images: Int, height: Int, width: Int, channels: Int,
    into output: UnsafeMutablePointer<Float>, choices: UnsafeMutablePointer<Float>
  ) {
    let outputHeight = height / 2
    let outputWidth = width / 2
    var out = output
    var choice = choices
    for image in 0..<images {
      for y in 0..<outputHeight {
        for x in 0..<outputWidth {
          let topLeft = input + ((image * height + 2 * y) * width + 2 * x) * channels
          let topRight = topLeft + channels
          let bottomLeft = topLeft + width * channels
          let bottomRight = bottomLeft + channels
          // Ties go to the first of the four in scan order.
          var c = 0
          while c + 8 <= channels {
            var best = topLeft.lanes(c)
            var index = Lanes(repeating: 0)
            let right = topRight.lanes(c)
            let rightWins = right .> best
            index.replace(with: 1, where: rightWins)
            best.replace(with: right, where: rightWins)
            let below = bottomLeft.lanes(c)
            let belowWins = below .> best
            index.replace(with: 2, where: belowWins)
            best.replace(with: below, where: belowWins)
            let diagonal = bottomRight.lanes(c)
            let diagonalWins = diagonal .> best
            index.replace(with: 3, where: diagonalWins)
            best.replace(with: diagonal, where: diagonalWins)
            out.setLanes(c, best)
            choice.setLanes(c, index)
            c += 8
          }
          while c < channels {
            var best = topLeft[c]
            var index: Float = 0
            if topRight[c] > best {
              best = topRight[c]
              index = 1
            }
            if bottomLeft[c] > best {
              best = bottomLeft[c]
              index = 2
            }
            if bottomRight[c] > best {
              best = bottomRight[c]
              index = 3
            }
            out[c] = best
            choice[c] = index
            c += 1
          }
          out += channels
          choice += channels
        }
      }
    }
  }

  /// Routes the gradients of the pooled outputs of `blocks` tasks to the inputs that won.
  ///
  /// The input gradient, which is overwritten, has the tasks side by side: pixel `p` is
  /// `blocks * channels` floats at `inputGradient + p * blocks * channels`, task `t` at
  /// offset `t * channels`. The output gradient has the same layout when `tasksPerImage` is
  /// false. When it is true, each image's gradients come task after task, each task's pooled
  /// pixels contiguous, as fully connected layers on the flattened output give them.
  @inline(never)
  static func backward(
    outputGradient: UnsafePointer<Float>, choices: UnsafePointer<Float>, images: Int,
    height: Int, width: Int, channels: Int, blocks: Int, tasksPerImage: Bool = false,
    into inputGradient: UnsafeMutablePointer<Float>
  ) {
    let outputHeight = height / 2
    let outputWidth = width / 2
    let pixelLength = blocks * channels
    let pooledPixels = outputHeight * outputWidth
    let pixelStride = tasksPerImage ? channels : pixelLength
    let taskStride = tasksPerImage ? pooledPixels * channels : channels
    if height % 2 != 0 || width % 2 != 0 {
      // The dropped row or column gets no gradient.
      inputGradient.update(repeating: 0, count: images * height * width * pixelLength)
    }
    var choice = choices
    for image in 0..<images {
      for y in 0..<outputHeight {
        for x in 0..<outputWidth {
          let source =
            outputGradient + image * pooledPixels * pixelLength + (y * outputWidth + x)
            * pixelStride
          for position in 0..<4 {
            let inputY = 2 * y + position / 2
            let inputX = 2 * x + position % 2
            let destination =
              inputGradient + ((image * height + inputY) * width + inputX) * pixelLength
            let selected = Float(position)
            var c = 0
            while c + 8 <= channels {
              let keep = choice.lanes(c) .== Lanes(repeating: selected)
              for b in 0..<blocks {
                let from = source + b * taskStride
                (destination + b * channels).setLanes(
                  c, Lanes(repeating: 0).replacing(with: from.lanes(c), where: keep))
              }
              c += 8
            }
            while c < channels {
              for b in 0..<blocks {
                destination[b * channels + c] =
                  choice[c] == selected ? source[b * taskStride + c] : 0
              }
              c += 1
            }
          }
          choice += channels
        }
      }
    }
  }
}

/// The mean of every channel over an image's pixels, NHWC.
enum GlobalAveragePool {
  /// Averages `pixels` pixels of `channels` floats per image (dense) into `output`, one
  /// row of `channels` per image, `outputStride` apart.
  @inline(never)
  static func forward(
    _ input: UnsafePointer<Float>, images: Int, pixels: Int, channels: Int,
    into output: UnsafeMutablePointer<Float>, outputStride: Int
  ) {
    let scale = 1 / Float(pixels)
    for image in 0..<images {
      let row = output + image * outputStride
      row.update(repeating: 0, count: channels)
      var pixel = input + image * pixels * channels
      for _ in 0..<pixels {
        for c in 0..<channels { row[c] += pixel[c] }
        pixel += channels
      }
      for c in 0..<channels { row[c] *= scale }
    }
  }

  /// Spreads each image's gradient row of `width` floats (all tasks side by side, `rowStride`
  /// apart) evenly over its `pixels` pixels: `inputGradient` gets `images * pixels` dense
  /// rows of `width`, overwritten.
  @inline(never)
  static func backward(
    outputGradient: UnsafePointer<Float>, rowStride: Int, images: Int, pixels: Int, width: Int,
    into inputGradient: UnsafeMutablePointer<Float>
  ) {
    let scale = 1 / Float(pixels)
    var destination = inputGradient
    for image in 0..<images {
      let row = outputGradient + image * rowStride
      for _ in 0..<pixels {
        for c in 0..<width { destination[c] = scale * row[c] }
        destination += width
      }
    }
  }
}
