import Testing

@testable import ConcordModel
