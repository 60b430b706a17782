import ConcordBalancing
import ConcordModel
import ConcordTensors
import Foundation

/// A balancing step saved from a training run, to replay with `concord balance`.
///
/// The safetensors file contains `gradients` (`F32`, `[T, P]`: each task's reduced gradient on
/// the `P` shared parameters, in the order of the parameter layout), `losses`,
/// `initial_losses` and `weights` (`F64`, `[T]`, as the balancer read them before its
/// update), `order` (`I64`, `[T, T - 1]`, PCGrad's order) and `gradnorm_range` (`I64`, `[2]`,
/// the elements of each gradient that GradNorm's norm covers). `__metadata__` holds the
/// balancer, `alpha`, `weight_lr`, the step, the tasks and `format_version`.
public enum GradientDump {
  static let formatVersion = "1"

  /// Writes the balancer's view of the current step of `trainer` to `path`.
  static func write(
    model: MultiTaskModel, input: BalancingInput, weights: [Double], initialLosses: [Double],
    gradNormRange: Range<Int>, configuration: TrainingConfiguration, step: Int, to path: String
  ) throws {
    let t = model.taskCount

    // Each task's gradient as one vector, gathered from the per-layer blocks.
    var gradients = [Float]()
    gradients.reserveCapacity(t * model.encoderParameterCount)
    for task in 0..<t {
      for block in model.encoder.gradientBlocks { gradients += block.row(task) }
    }

    var file = SafeTensors()
    file.append(
      SafeTensors.Tensor(
        name: "gradients", shape: [t, model.encoderParameterCount], floats: gradients))
    file.append(SafeTensors.Tensor(name: "losses", shape: [t], doubles: input.losses))
    file.append(
      SafeTensors.Tensor(
        name: "initial_losses", shape: [initialLosses.count], doubles: initialLosses))
    file.append(SafeTensors.Tensor(name: "weights", shape: [t], doubles: weights))
    file.append(
      SafeTensors.Tensor(
        name: "order", shape: [t, t - 1], int64s: input.taskOrder.flatMap { $0.map(Int64.init) }))
    file.append(
      SafeTensors.Tensor(
        name: "gradnorm_range", shape: [2],
        int64s: [Int64(gradNormRange.lowerBound), Int64(gradNormRange.upperBound)]))
    file.metadata = [
      "format_version": formatVersion,
      "balancer": configuration.balancer,
      "alpha": String(configuration.gradNormAlpha),
      "weight_lr": String(configuration.gradNormLearningRate),
      "gradnorm_layer": configuration.gradNormLayer,
      "step": String(step),
      "tasks": configuration.tasks.map(\.rawValue).joined(separator: ","),
    ]
    try AtomicFile.write(file.serialized(), to: path)
  }

  /// Reads a dump written by ``write(model:input:weights:initialLosses:gradNormRange:configuration:step:to:)``
  /// as a balancing case.
  ///
  /// - Throws: ``BalancingCaseError`` or `SafeTensorsError` naming what is missing or invalid.
  public static func read(path: String) throws -> BalancingCase {
    let file = try SafeTensors.read(path: path)
    guard file.metadata["format_version"] == formatVersion else {
      throw BalancingCaseError(
        "\(path): gradient dump format version \(file.metadata["format_version"] ?? "missing"), "
          + "expected \(formatVersion): pass a file written by concord train --dump-gradients")
    }
    guard let gradients = file.tensor(named: "gradients"), gradients.shape.count == 2 else {
      throw BalancingCaseError("\(path): tensor gradients [T, P] is missing")
    }

    let t = gradients.shape[0]
    let length = gradients.shape[1]
    let values = try file.floats("gradients")
    let rows = (0..<t).map { Array(values[($0 * length)..<(($0 + 1) * length)]) }
    let order = try file.int64s("order", shape: [t, max(t - 1, 0)]).map(Int.init)
    let range = try file.int64s("gradnorm_range", shape: [2]).map(Int.init)
    guard range[0] >= 0, range[0] < range[1], range[1] <= length else {
      throw BalancingCaseError("\(path): gradnorm_range \(range) lies outside \(length) elements")
    }

    guard let name = file.metadata["balancer"], let kind = BalancerKind(rawValue: name) else {
      throw BalancingCaseError("\(path): __metadata__ has no valid balancer")
    }
    guard let alpha = file.metadata["alpha"].flatMap(Double.init),
      let learningRate = file.metadata["weight_lr"].flatMap(Double.init)
    else {
      throw BalancingCaseError("\(path): __metadata__ lacks alpha or weight_lr")
    }
    let initial = try file.doubles("initial_losses")
    return try BalancingCase(
      balancer: kind, gradients: rows, losses: try file.doubles("losses"),
      initialLosses: initial.isEmpty ? nil : initial,
      weights: try file.doubles("weights"), alpha: alpha,
      weightLearningRate: learningRate,
      order: (0..<t).map { Array(order[($0 * (t - 1))..<(($0 + 1) * (t - 1))]) },
      gradNormRange: range[0]..<range[1])
  }
}
