import Crypto
import DevIDCore
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Logging
import ServiceLifecycle
import Testing

/// The checkpoint service on its own: a keyed in-memory trail, a temporary data directory, the injected wall clock.
@Suite("Audit checkpoints")
struct AuditCheckpointerTests {
    struct Fixture {
        let directory: TemporaryDirectory
        let configuration: ServerConfiguration
        let secret: AuditSecret
        let store: MemoryStore
        let clock = ManualWallClock()
        let file: AuditCheckpointFile

        init() throws {
            directory = try TemporaryDirectory(prefix: "devid-checkpoints")
            configuration = ServerConfiguration.testing(dataDirectory: directory.file("data"))
            try FileManager.default.createDirectory(atPath: configuration.dataDirectory, withIntermediateDirectories: true)
            let (secret, created) = try AuditSecret.load(configuration, creating: true)
            #expect(created)
            self.secret = secret
            store = MemoryStore(auditKey: secret.chainKey)
            file = AuditCheckpointFile(dataDirectory: configuration.dataDirectory)
        }

        func checkpointer(interval: Duration = .seconds(3600)) -> AuditCheckpointer<ContinuousClock> {
            AuditCheckpointer(
                store: store, secret: secret, file: file, wallClock: clock, clock: ContinuousClock(),
                interval: interval, logger: Logger(label: "test"))
        }

        func append(_ action: String) async throws -> AuditEvent {
            try await store.appendAudit(AuditEvent(time: clock.now(), actor: "system", action: action, outcome: .success))
        }
    }

    @Test func writesWhenTheHeadMovesAndSignsIt() async throws {
        let f = try Fixture()
        defer { f.directory.remove() }
        let checkpointer = f.checkpointer()
        #expect(try await checkpointer.checkpoint(reason: "interval") == nil, "an empty trail has no checkpoint")

        _ = try await f.append("one")
        let head = try await f.append("two")
        f.clock.advance(by: 60)
        let first = try #require(try await checkpointer.checkpoint(reason: "interval"))
        #expect(first.sequence == 2)
        #expect(first.hash == head.hash)
        #expect(first.keyedFrom == 1)
        #expect(first.time == "2026-09-21T14:14:20.000Z")
        #expect(first.isValid(publicKey: f.secret.publicKey))
        #expect(!first.isValid(publicKey: Curve25519.Signing.PrivateKey().publicKey))
        #expect(try await checkpointer.checkpoint(reason: "interval") == nil, "nothing new, nothing written")

        _ = try await f.append("three")
        let second = try #require(try await checkpointer.checkpoint(reason: "interval"))
        #expect(second.sequence == 3)
        let contents = try f.file.read(publicKey: f.secret.publicKey)
        #expect(contents.newest == second)
        #expect(contents.invalidLines == 0)
        let attributes = try FileManager.default.attributesOfItem(atPath: f.file.path)
        #expect((attributes[.posixPermissions] as? NSNumber)?.intValue == 0o600)
        #expect(try await f.store.auditChainReport(anchor: second.anchor).isIntact)

        // A line altered by hand no longer verifies and is counted, not used.
        var text = try String(contentsOfFile: f.file.path, encoding: .utf8)
        text = text.replacingOccurrences(of: "\"sequence\":3", with: "\"sequence\":9")
        try text.write(toFile: f.file.path, atomically: true, encoding: .utf8)
        let tampered = try f.file.read(publicKey: f.secret.publicKey)
        #expect(tampered.invalidLines == 1)
        #expect(tampered.newest == first)
    }

    @Test func gracefulShutdownWritesACheckpoint() async throws {
        let f = try Fixture()
        defer { f.directory.remove() }
        let head = try await f.append("one")
        let group = ServiceGroup(
            configuration: .init(services: [f.checkpointer()], logger: Logger(label: "test")))
        let running = Task { try await group.run() }
        try await Task.sleep(for: .milliseconds(100))
        await group.triggerGracefulShutdown()
        try await running.value
        let checkpoint = try #require(try f.file.read(publicKey: f.secret.publicKey).newest)
        #expect(checkpoint.sequence == head.sequence)
        #expect(checkpoint.hash == head.hash)
        #expect(checkpoint.reason == "shutdown")
    }

    @Test func neverSignsAHeadThatDoesNotExtendTheLastCheckpoint() async throws {
        let f = try Fixture()
        defer { f.directory.remove() }
        _ = try await f.append("one")
        _ = try await f.append("two")
        let checkpointer = f.checkpointer()
        try #require(try await checkpointer.checkpoint(reason: "interval") != nil)

        // Another trail (as after the registry was replaced or cut and refilled) under the same checkpoint file.
        let otherStore = MemoryStore(auditKey: f.secret.chainKey)
        for action in ["a", "b", "c"] {
            try await otherStore.appendAudit(
                AuditEvent(time: f.clock.now(), actor: "x", action: action, outcome: .success))
        }
        let other = AuditCheckpointer(
            store: otherStore, secret: f.secret, file: f.file, wallClock: f.clock, clock: ContinuousClock(),
            logger: Logger(label: "test"))
        await #expect(throws: AuditCheckpointError.self) { try await other.checkpoint(reason: "interval") }
        #expect(try f.file.read(publicKey: f.secret.publicKey).newest?.sequence == 2)
    }
}
