import DevIDFuzzTargets
import Foundation
import Testing

/// Runs every committed seed and crash reproducer (`Fuzz/Corpus/<target>/`) through its fuzz target in the normal
/// debug build, so an input that once crashed or broke an invariant is a regression test in every CI run.
@Suite("Fuzz corpus")
struct FuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/Corpus")

    static func files(_ target: String) throws -> [URL] {
        try FileManager.default.contentsOfDirectory(
            at: corpus.appendingPathComponent(target), includingPropertiesForKeys: nil
        ).sorted { $0.lastPathComponent < $1.lastPathComponent }
    }

    @Test("every seed and crash reproducer runs through its target clean", arguments: FuzzTargets.all.map(\.name))
    func corpusRunsClean(_ name: String) throws {
        let target = try #require(FuzzTargets.named(name))
        let files = try Self.files(name)
        #expect(files.count >= 3, "\(name) has \(files.count) seeds")
        for file in files {
            let bytes = Array(try Data(contentsOf: file))
            #expect(bytes.count <= target.maximumLength, "\(file.lastPathComponent) is over -max_len")
            do {
                try target.run(bytes)
            } catch {
                Issue.record("\(file.lastPathComponent): \(error)")
            }
        }
    }

    @Test("every corpus folder is a target, and target names are unique")
    func foldersAreTargets() throws {
        let folders = try FileManager.default.contentsOfDirectory(atPath: Self.corpus.path).sorted()
        let names = FuzzTargets.all.map(\.name)
        #expect(Set(names).count == names.count)
        #expect(folders == names.sorted())
    }
}
