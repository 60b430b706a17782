import ConcordData
import ConcordDistributed
import ConcordModel
import ConcordTensors
import Foundation

/// The end-of-training evaluation of a saved checkpoint, as `concord eval` runs it.
///
/// The model is built from the shape stored in the checkpoint's metadata and takes the
/// checkpoint's parameters, then ``Evaluation`` runs exactly as at the end of training: the
/// supervised head's test accuracy and the kNN accuracy with the training set (limited by the
/// run's `--train-limit`) as memory bank, and on request a linear probe trained on the same
/// training set. Under `mpirun` the ranks split the test set.
public enum CheckpointEvaluation {
  /// What to evaluate and where to write the result.
  public struct Options: Sendable {
    /// The checkpoint file.
    public var checkpointPath = ""
    /// The data folder; nil means the one the checkpoint was trained on.
    public var dataDirectory: String?
    /// The folder of `eval.json`; nil means the run folder that contains the checkpoint.
    public var outputDirectory: String?
    /// Evaluate on the first N test images; nil means the run's `--test-limit`.
    public var testLimit: Int?
    /// The kNN neighbour count; nil means the run's `--knn`.
    public var neighbours: Int?
    /// The temperature of the kNN vote weights, or nil for the run's `--knn-temperature`.
    public var knnTemperature: Float?
    /// Whether to train a linear probe; false leaves it to the run's `--linear-probe`.
    public var linearProbe = false
    /// The probe's passes over the training features, or nil for the run's `--probe-epochs`.
    public var probeEpochs: Int?
    /// The encoder the checkpoint must hold, or nil to take whichever it holds.
    public var encoder: EncoderKind?

    /// Creates options that evaluate nothing until ``checkpointPath`` is set.
    public init() {}
  }

  /// Loads the checkpoint, evaluates it and writes `eval.json` (rank 0).
  ///
  /// Every rank must call it.
  ///
  /// Failures are agreed on by every rank before they are thrown, as ``CollectiveFailure``.
  /// Its underlying error is ``CheckpointError``, `SafeTensorsError` or ``UsageError`` when
  /// the checkpoint file is at fault.
  ///
  /// - Returns: the accuracies, the checkpoint's step, and the seconds the evaluation took.
  public static func run(_ options: Options, communicator: Communicator) throws -> RunSummary {
    let start = Date()
    let path = options.checkpointPath
    // Reject a bad --out before the evaluation's work, as concord train does.
    try collectively(communicator) {
      guard communicator.isRoot, let directory = options.outputDirectory else { return }
      try Trainer.checkOutputDirectory(directory)
    }
    let bytes = try collectively(communicator) {
      try Checkpoint.readOnRoot(path, communicator: communicator)
    }

    // Every rank validates the same bytes, so every rank reaches the same verdict.
    let (configuration, contents, model) = try collectively(communicator) {
      let file = try Checkpoint.parse(bytes, path: path)
      try CheckpointContents.checkVersionAndChecksum(file, path: path)
      let configuration = try CheckpointContents.storedConfiguration(file, path: path)
      let localBatch = max(configuration.batchSize / communicator.size, 1)
      if let encoder = options.encoder, encoder != configuration.encoder {
        throw UsageError(
          "--encoder \(encoder.rawValue): \(path) contains the encoder "
            + "\(configuration.encoderDescription); pass --encoder "
            + "\(configuration.encoder.rawValue) or leave --encoder out")
      }
      let (contents, model) = try CheckpointInspection.validatedCheckpoint(
        file, path: path, capacity: 2 * localBatch)
      return (configuration, contents, model)
    }
    for slot in model.layout.slots {
      contents.load(
        slot.name,
        into: UnsafeMutableBufferPointer(
          start: model.parameters.baseAddress + slot.offset, count: slot.count))
    }
    if let statistics = model.runningStatistics {
      for slot in model.statisticsLayout.slots {
        contents.load(
          slot.name,
          into: UnsafeMutableBufferPointer(
            start: statistics.baseAddress + slot.offset, count: slot.count))
      }
    }

    let dataDirectory = options.dataDirectory ?? configuration.dataDirectory
    let testLimit = options.testLimit ?? configuration.testLimit
    let (trainSet, testSet) = try collectively(communicator) {
      let sets = try loadData(
        directory: dataDirectory, trainLimit: configuration.trainLimit, testLimit: testLimit,
        model: model.configuration, path: path)
      if let neighbours = options.neighbours, neighbours > sets.0.count {
        throw UsageError(
          "--knn \(neighbours) exceeds the \(sets.0.count) training images that the kNN "
            + "evaluation searches: pass --knn \(sets.0.count) or less")
      }
      return sets
    }
    var settings = configuration
    settings.knnNeighbours = options.neighbours ?? configuration.knnNeighbours
    settings.knnTemperature = options.knnTemperature ?? configuration.knnTemperature
    settings.linearProbe = options.linearProbe || configuration.linearProbe
    settings.probeEpochs = options.probeEpochs ?? configuration.probeEpochs
    let evaluation = try Evaluation.run(
      model: model, trainSet: trainSet, testSet: testSet, communicator: communicator,
      settings: settings.evaluationSettings)
    let summary = RunSummary(
      evaluation: evaluation, knnTemperature: settings.knnTemperature, steps: contents.step,
      seconds: Date().timeIntervalSince(start))

    let directory = options.outputDirectory ?? Checkpoint.runDirectory(containing: path)
    try collectively(communicator) {
      guard communicator.isRoot else { return }
      print(summary.consoleLine)
      if let line = summary.perKindConsoleLine { print(line) }
      try Trainer.makeDirectory(directory)
      do {
        try summary.write(toDirectory: directory)
      } catch let error as AtomicFileError {
        throw TrainingError("\(error)")
      }
      print("concord: wrote \(directory)/eval.json")
    }
    return summary
  }

  /// Loads the training and test sets and checks that their images fit the model.
  private static func loadData(
    directory: String, trainLimit: Int, testLimit: Int, model: ModelConfiguration, path: String
  ) throws -> (Dataset, Dataset) {
    let trainSet = try Dataset.load(
      directory: directory, split: .train, limit: trainLimit > 0 ? trainLimit : nil,
      classCount: model.classCount)
    let testSet = try Dataset.load(
      directory: directory, split: .test, limit: testLimit > 0 ? testLimit : nil,
      classCount: model.classCount)
    guard trainSet.pixelCount == model.inputSize else {
      throw UsageError(
        "\(directory) has images of \(trainSet.pixelCount) pixels but \(path) was trained on "
          + "\(model.inputSize): pass the --data the checkpoint was trained on")
    }
    guard testSet.height == trainSet.height && testSet.width == trainSet.width else {
      throw TrainingError(
        "--data \(directory): the test images are \(testSet.height)x\(testSet.width) but the "
          + "training images are \(trainSet.height)x\(trainSet.width); pass a folder whose two "
          + "splits have the same image size")
    }
    return (trainSet, testSet)
  }
}
