import Testing

@testable import ConcordBalancing
