import Testing

@testable import ConcordTraining
