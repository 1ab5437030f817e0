import DevIDCore
import DevIDStore
import DevIDTesting
import Foundation
import NIOSSL
import PostgresNIO
import Synchronization
import Testing

/// What only the PostgreSQL registry does: two stores (two servers) on one database, where a commit of one reaches
/// the other by LISTEN/NOTIFY; the registry URL's refusals.
@Suite("PostgreSQL registry")
struct PostgresStoreTests {
    /// Two stores on one new database of the sandbox.
    static func withTwoStores(_ body: (PostgresStore, PostgresStore) async throws -> Void) async throws {
        let sandbox = try PostgresSandbox()
        await PostgresSandbox.limit.acquire()
        do {
            try await sandbox.withDatabase { database in
                var location = database.location
                location.maximumConnections = 2
                let first = try await PostgresStore.open(location)
                defer { first.close() }
                let second = try await PostgresStore.open(location)
                defer { second.close() }
                try await body(first, second)
            }
        } catch {
            await PostgresSandbox.limit.release()
            throw error
        }
        await PostgresSandbox.limit.release()
    }

    @Test("another store's commit wakes this store's feed at once: the poll interval is only the fallback")
    func notifyWakesTheFeed() async throws {
        try await Self.withTwoStores { first, second in
            let seen = Mutex<[String]>([])
            first.changeFeed.subscribe { changes in seen.withLock { $0 += changes.map(\.description) } }
            // What RegistryChangePoller does, with a fallback far longer than the test may take.
            let poller = Task {
                while !Task.isCancelled {
                    _ = try? await first.changeFeed.catchUp(from: first)
                    await first.changeFeed.sleep(upTo: .seconds(30))
                }
            }
            defer { poller.cancel() }
            try await Task.sleep(for: .milliseconds(300))  // the listener is connected
            for round in 1...3 {
                let started = ContinuousClock.now
                try await second.createTenant(Fixture.tenant("t\(round)"), audit: nil)
                while !seen.withLock({ $0.contains { $0.hasSuffix("tenant t\(round) created") } }) {
                    try #require(ContinuousClock.now - started < .seconds(5), "no notification for round \(round)")
                    try await Task.sleep(for: .milliseconds(5))
                }
                let elapsed = ContinuousClock.now - started
                #expect(elapsed < .seconds(1), "round \(round): \(elapsed)")
            }
        }
    }

    @Test("a row written below sequence 1 by someone with write access breaks the chain, as on SQLite")
    func forgedRowBelowTheFirstIsCaught() async throws {
        let sandbox = try PostgresSandbox()
        await PostgresSandbox.limit.acquire()
        do {
            try await Self.forgeBelowTheFirst(sandbox)
        } catch {
            await PostgresSandbox.limit.release()
            throw error
        }
        await PostgresSandbox.limit.release()
    }

    static func forgeBelowTheFirst(_ sandbox: PostgresSandbox) async throws {
        try await sandbox.withDatabase { database in
            let store = try await PostgresStore.open(database.location)
            defer { store.close() }
            try await Fixture.seed(store)
            _ = try await store.appendAudit(Fixture.event("admin.auth", at: 2, reason: "ok"))
            #expect(try await store.verifyAuditChain() == nil)
            // A copy of entry 1 at sequence 0 with another reason: the check started after 0 and never read it.
            let client = PostgresClient(configuration: database.configuration)
            try await withThrowingTaskGroup(of: Void.self) { group in
                group.addTask { await client.run() }
                defer { group.cancelAll() }
                try await client.query(
                    """
                    INSERT INTO audit_events SELECT (jsonb_populate_record(a, jsonb_build_object(
                        'sequence', 0, 'reason', 'nothing to see'))).* FROM audit_events a WHERE sequence = 1
                    """)
            }
            #expect(try await store.verifyAuditChain() != nil, "the forged row at sequence 0 is found")
        }
    }

    @Test("writes of two stores extend one audit chain and one gap-free change sequence")
    func twoWritersOneChain() async throws {
        try await Self.withTwoStores { first, second in
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, store) in [first, second].enumerated() {
                    group.addTask {
                        for round in 0..<25 {
                            try await store.createTenant(
                                Fixture.tenant("s\(index)-\(round)"), audit: Fixture.event("tenant.create"))
                        }
                    }
                }
                try await group.waitForAll()
            }
            #expect(try await first.verifyAuditChain() == nil)
            #expect(try await second.auditEvents(AuditFilter(limit: 100)).count == 50)
            let sequences = try await first.changes(after: 0, limit: 1000).map(\.sequence)
            #expect(sequences == Array(1...50), "\(sequences)")
        }
    }

    @Test(
        "a registry URL is refused with one line that never shows a password",
        arguments: [
            ("mysql://u@h/db", "not postgres://"),
            ("postgres://u:hunter2@h/db", "carries a password"),
            ("postgres://h/db", "names no user"),
            ("postgres://u@h", "names no database"),
            ("postgres://u@h/db?sslmode=allow", "sslmode must be"),
            ("postgres://u@h/db?password=hunter2", "unknown parameter"),
            ("postgres://u@h/db?sslmode=verify-full&sslrootcert=/nonexistent/ca.pem", "cannot be read"),
        ])
    func refusedURLs(url: String, reason: String) {
        do {
            _ = try PostgresStore.Location(url: url, password: "secret-password")
            Issue.record("\(url) was accepted")
        } catch {
            #expect(error.description.contains(reason), "\(error)")
            #expect(!error.description.contains("hunter2") && !error.description.contains("secret-password"))
            #expect(!error.description.contains("\n"))
        }
    }

    @Test("TLS by sslmode: loopback defaults to plain TCP, any other host to verified TLS; the password never shows")
    func tlsDefaults() throws {
        let local = try PostgresStore.Location(url: "postgres://devid@127.0.0.1:5433/registry", password: "pw-1")
        if case .disable = local.tls {} else { Issue.record("loopback should default to sslmode=disable") }
        #expect(local.description == "postgres://devid@127.0.0.1:5433/registry")
        let remote = try PostgresStore.Location(url: "postgres://devid@db.example.net/registry", password: "pw-2")
        guard case .require(let configuration) = remote.tls else {
            Issue.record("a remote host should default to verified TLS")
            return
        }
        #expect(configuration.certificateVerification == .fullVerification)
        #expect(remote.port == 5432)
        #expect(!"\(remote)".contains("pw-2"))
    }

    @Test("TLS to the registry: verify-full trusts the server's CA and refuses other roots; require encrypts unchecked")
    func tlsToTheRegistry() async throws {
        let sandbox = try PostgresSandbox()
        let environment = ProcessInfo.processInfo.environment
        let caFile = try #require(environment["DEVID_TEST_POSTGRES_CA_FILE"], "scripts/pg-sandbox sets it")
        let passwordFile = try #require(environment[PostgresSandbox.passwordFileVariable])
        let password = try String(contentsOfFile: passwordFile, encoding: .utf8)
            .split(separator: "\n").first.map(String.init)
        await PostgresSandbox.limit.acquire()
        do {
            try await sandbox.withDatabase { database in
                let url = "postgres://\(sandbox.username)@localhost:\(sandbox.port)/\(database.name)"
                let verified = try await PostgresStore.open(
                    try PostgresStore.Location(url: url + "?sslmode=verify-full&sslrootcert=\(caFile)", password: password))
                try await verified.createTenant(Fixture.tenant(), audit: nil)
                #expect(try await verified.tenants().map(\.id) == [Fixture.tenantID()])
                verified.close()

                // The system's roots do not include the sandbox's CA: the handshake fails, the store does not open.
                let refused = await expectStoreError(.unavailable) { () async throws(StoreError) -> PostgresStore in
                    try await PostgresStore.open(
                        try PostgresStore.Location(url: url + "?sslmode=verify-full", password: password))
                }
                #expect(refused.map { !$0.description.contains("\n") && !$0.description.contains(password ?? "?") } == true)

                let encrypted = try await PostgresStore.open(
                    try PostgresStore.Location(url: url + "?sslmode=require", password: password))
                #expect(try await encrypted.tenants().count == 1)
                encrypted.close()
            }
        } catch {
            await PostgresSandbox.limit.release()
            throw error
        }
        await PostgresSandbox.limit.release()
    }
}
