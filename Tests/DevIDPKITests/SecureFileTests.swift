import DevIDPKI
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

@Suite struct SecureFileTests {
    @Test func writeCreatesOwnerOnlyFileAndReadsBack() throws {
        let directory = try Directory()
        defer { directory.remove() }
        let file = directory.path("key.pem")
        let content = Array(("-----BEGIN " + "ENCRYPTED PRIVATE KEY-----\n").utf8)

        try SecureFile.write(content, to: file)
        #expect(try permissions(of: file) == 0o600)
        #expect(try SecureFile.read(file) == content)
    }

    @Test func modeIsExactEvenWhenTheUmaskWouldNarrowIt() throws {
        let directory = try Directory()
        defer { directory.remove() }
        let file = directory.path("ca.pem")

        // A umask of 022 would turn 0660 into 0640.
        try SecureFile.write(Array("public".utf8), to: file, mode: 0o660)
        #expect(try permissions(of: file) == 0o660)
    }

    @Test func overwriteIsAtomicAndLeavesNoTemporaryFiles() throws {
        let directory = try Directory()
        defer { directory.remove() }
        let file = directory.path("state")

        try SecureFile.write(Array(repeating: UInt8(ascii: "a"), count: 100_000), to: file, mode: 0o644)
        try SecureFile.write(Array("new".utf8), to: file)

        #expect(try SecureFile.read(file) == Array("new".utf8))
        // A new inode: the old file's looser mode does not carry over.
        #expect(try permissions(of: file) == 0o600)
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory.url.path) == ["state"])
    }

    @Test func emptyContentIsWrittenAndRead() throws {
        let directory = try Directory()
        defer { directory.remove() }
        let file = directory.path("empty")

        try SecureFile.write([], to: file)
        #expect(try SecureFile.read(file) == [])
    }

    @Test func writeIntoMissingDirectoryIsIOAndDoesNotLeakContent() throws {
        let directory = try Directory()
        defer { directory.remove() }
        let file = directory.path("missing/key.pem")

        do {
            try SecureFile.write(Array("TOP-SECRET-KEY-BYTES".utf8), to: file)
            Issue.record("write into a missing directory succeeded")
        } catch {
            #expect(error.code == .io)
            #expect(error.reason.contains(file))
            #expect(!error.description.contains("TOP-SECRET"))
        }
    }

    @Test(arguments: ["", "/", "dir/", "dir/.", "dir/.."])
    func writeRefusesPathsThatAreNotFiles(_ path: String) {
        #expect(thrownCode { try SecureFile.write([1], to: path) } == .io)
    }

    @Test func readMissingFileIsNotFound() throws {
        let directory = try Directory()
        defer { directory.remove() }
        #expect(thrownCode { try SecureFile.read(directory.path("nothing")) } == .notFound)
    }

    @Test func readDirectoryIsIO() throws {
        let directory = try Directory()
        defer { directory.remove() }
        #expect(thrownCode { try SecureFile.read(directory.url.path) } == .io)
    }

    @Test func createDirectorySetsModeAndIsIdempotent() throws {
        let directory = try Directory()
        defer { directory.remove() }
        let keys = directory.path("keys")

        try SecureFile.createDirectory(keys)
        #expect(try permissions(of: keys) == 0o700)
        try SecureFile.createDirectory(keys)
        try SecureFile.createDirectory(keys + "/")

        let shared = directory.path("shared")
        try SecureFile.createDirectory(shared, mode: 0o750)
        #expect(try permissions(of: shared) == 0o750)
    }

    @Test func createDirectoryOverFileOrUnderMissingParentFails() throws {
        let directory = try Directory()
        defer { directory.remove() }
        let file = directory.path("file")
        try SecureFile.write([1], to: file)

        #expect(thrownCode { try SecureFile.createDirectory(file) } == .alreadyExists)
        #expect(thrownCode { try SecureFile.createDirectory(directory.path("a/b")) } == .io)
    }
}

// MARK: - Helpers
// Nested in the suite so they cannot collide with helpers in other files of this test target.

extension SecureFileTests {
    /// The code of the `DevIDPKIError` that `body` throws, or nil if it returns. Any other error is a test failure.
    func thrownCode<T>(_ body: () throws -> T) -> DevIDPKIError.Code? {
        do {
            _ = try body()
            return nil
        } catch let error as DevIDPKIError {
            return error.code
        } catch {
            Issue.record("threw \(type(of: error)), not DevIDPKIError: \(error)")
            return nil
        }
    }

    /// The permission bits of `path`, from `stat(2)`.
    func permissions(of path: String) throws -> mode_t {
        let attributes = try FileManager.default.attributesOfItem(atPath: path)
        guard let mode = attributes[.posixPermissions] as? Int else { throw CocoaError(.fileReadNoSuchFile) }
        return mode_t(mode) & 0o7777
    }

    /// A fresh directory under the system temporary directory, removed by `remove()`.
    struct Directory {
        let url: URL

        init() throws {
            url = FileManager.default.temporaryDirectory.appendingPathComponent("devid-test-\(UUID().uuidString)")
            try SecureFile.createDirectory(url.path)
        }

        func path(_ name: String) -> String { url.appendingPathComponent(name).path }

        func remove() { try? FileManager.default.removeItem(at: url) }
    }
}
