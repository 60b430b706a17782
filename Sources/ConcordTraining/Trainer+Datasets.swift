import ConcordData
import ConcordDistributed

extension Trainer {
  /// Reads the training and test sets that `c` names, limited by `--train-limit` and
  /// `--test-limit`.
  ///
  /// Every rank must call it. Reading may fail on some ranks only (a file missing on one
  /// host), so the ranks agree on the outcome before any later collective.
  ///
  /// - Throws: ``CollectiveFailure`` around the ``DataError`` of a rank that failed.
  public static func loadDatasets(_ c: TrainingConfiguration, communicator: Communicator) throws
    -> (train: Dataset, test: Dataset)
  {
    try collectively(communicator) {
      (
        try Dataset.load(
          directory: c.dataDirectory, split: .train, limit: c.trainLimit > 0 ? c.trainLimit : nil),
        try Dataset.load(
          directory: c.dataDirectory, split: .test, limit: c.testLimit > 0 ? c.testLimit : nil)
      )
    }
  }
}
