import DevIDCore
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Logging
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// The checkpoint writer on a full disk (issue #13 part 5): the data directory on a 64 KiB tmpfs that a filler file
/// fills up, so that an append is cut short part-way through its line. Needs root for `mount`; skipped otherwise (the
/// black-box `DiskFullTests` also runs the whole server on a full disk, in a user namespace when not root).
@Suite("Audit checkpoints on a full disk")
struct CheckpointDiskFullTests {
    static let canMount = geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/usr/bin/mount")
        || geteuid() == 0 && FileManager.default.isExecutableFile(atPath: "/bin/mount")

    @Test(
        "an append torn by ENOSPC is cut back: later checkpoints still verify, none reads as tampered",
        .enabled(if: canMount, "needs root to mount a tmpfs"))
    func tornAppendIsRolledBack() async throws {
        let directory = try TemporaryDirectory(prefix: "devid-checkpoint-full")
        defer { directory.remove() }
        let mount = directory.file("fs")
        try FileManager.default.createDirectory(atPath: mount, withIntermediateDirectories: true)
        try Self.run("/bin/sh", ["-c", "mount -t tmpfs -o size=64k tmpfs '\(mount)'"])
        defer { try? Self.run("/bin/sh", ["-c", "umount -l '\(mount)'"]) }

        let configuration = ServerConfiguration.testing(dataDirectory: mount + "/data")
        try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
        let (secret, _) = try AuditSecret.load(configuration, creating: true)
        let store = MemoryStore(auditKey: secret.chainKey)
        let clock = ManualWallClock()
        let file = AuditCheckpointFile(dataDirectory: configuration.dataDirectory)
        let checkpointer = AuditCheckpointer(
            store: store, secret: secret, file: file, wallClock: clock, clock: ContinuousClock(),
            logger: Logger(label: "test"))
        func advance() async throws {
            _ = try await store.appendAudit(
                AuditEvent(time: clock.now(), actor: "system", action: "tick", outcome: .success))
            clock.advance(by: 60)
        }
        try await advance()
        #expect(try await checkpointer.checkpoint(reason: "interval") != nil)

        // Fill every page; the checkpoint file's last page still has room for a few lines, then a line is cut short.
        let filler = mount + "/filler"
        let fd = open(filler, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        try #require(fd >= 0)
        let page = [UInt8](repeating: 0, count: 4_096)
        while page.withUnsafeBytes({ write(fd, $0.baseAddress, page.count) }) > 0 {}
        close(fd)
        var written = 1
        var failed = false
        for _ in 0..<40 {
            try await advance()
            do {
                if try await checkpointer.checkpoint(reason: "interval") != nil { written += 1 }
            } catch {
                failed = true
                break
            }
        }
        #expect(failed, "the disk filled up")
        let beforeRecovery = try file.read(publicKey: secret.publicKey)
        #expect(beforeRecovery.invalidLines == 0, "no torn line left behind")
        #expect(beforeRecovery.newest?.sequence == Int64(written))

        // Space returns: the next checkpoint is a whole line after the last whole one.
        try FileManager.default.removeItem(atPath: filler)
        try await advance()
        let next = try #require(try await checkpointer.checkpoint(reason: "interval"))
        let contents = try file.read(publicKey: secret.publicKey)
        #expect(contents.invalidLines == 0, "a torn line would make the next one unreadable (tamper alarm)")
        #expect(contents.newest?.sequence == next.sequence)
    }

    @discardableResult
    static func run(_ path: String, _ arguments: [String]) throws -> Int32 {
        // posix_spawn, not Foundation's `Process` (``SpawnedProcess``).
        let status = try SpawnedProcess.start(path, arguments).waitUntilExit()
        guard status == 0 else {
            throw CocoaError(.fileWriteUnknown, userInfo: [NSLocalizedDescriptionKey: "\(arguments) failed"])
        }
        return status
    }
}
