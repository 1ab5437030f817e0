import DevIDFuzzTargets
import DevIDTesting
import Foundation
import Testing

/// Runs every committed seed and crash reproducer (`Fuzz/Corpus/<target>/`) through its fuzz target in the normal
/// debug build, so an input that once crashed or broke an invariant is a regression test in every CI run.
@Suite("Fuzz corpus")
struct FuzzCorpusTests {
    static let corpus = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Fuzz/Corpus")

    /// The private-key seeds of `pem-key` and `encrypted-pkcs8`, made fresh by `Fuzz/make-key-seeds.sh` once per
    /// test process (private keys are not committed, not even throwaway ones).
    static let generatedSeeds: Result<URL, any Error> = Result {
        let directory = FileManager.default.temporaryDirectory
            .appendingPathComponent("devid-fuzz-key-seeds-\(UUID().uuidString)")
        // posix_spawn, not Foundation's `Process` (``SpawnedProcess``).
        let process = try SpawnedProcess.start(
            "/bin/bash",
            [corpus.deletingLastPathComponent().appendingPathComponent("make-key-seeds.sh").path, directory.path])
        guard process.waitUntilExit() == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSDebugDescriptionErrorKey: "make-key-seeds.sh failed"])
        }
        return directory
    }

    /// The committed seeds of `target` and the generated ones, by name.
    static func files(_ target: String) throws -> [URL] {
        var files: [URL] = []
        for folder in [corpus, try generatedSeeds.get()] {
            let directory = folder.appendingPathComponent(target)
            guard FileManager.default.fileExists(atPath: directory.path) else { continue }
            files += try FileManager.default.contentsOfDirectory(at: directory, includingPropertiesForKeys: nil)
        }
        return files.sorted { $0.lastPathComponent < $1.lastPathComponent }
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
