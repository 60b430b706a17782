import Testing

@testable import ConcordData
