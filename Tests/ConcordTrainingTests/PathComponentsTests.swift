import Testing

@testable import ConcordTraining

/// The parent of a path, as the run folder checks and the checkpoint lookups take it.
@Suite struct PathComponentsTests {
  @Test(arguments: [
    ("a/b", "a"), ("r/run1", "r"), ("a", ""), ("q/", ""), ("/a", "/"), ("/", "/"),
    ("runs/x/", "runs"), ("a//b", "a"), ("./q/b", "./q"), ("/work/a/b.json", "/work/a"),
  ])
  func parentOfPath(path: String, parent: String) {
    #expect(deletingLastPathComponent(path) == parent)
  }
}
