import DevIDCore
import DevIDStore
import Foundation
import GRDB
import Testing

/// What only the SQLite backend can show: tampering through a second connection, and a file that outlives
/// the process.
@Suite("SQLite backend")
struct SQLiteTests {
    /// A second, raw connection to the file, as an attacker with file access would have.
    static func tamper(_ path: String, _ sql: String) throws {
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in try db.execute(sql: sql) }
        try queue.close()
    }

    static func seedTrail(_ store: SQLiteStore) async throws {
        for index in 1...4 {
            try await store.appendAudit(Fixture.event("est.enroll", at: TimeInterval(index), reason: "entry \(index)"))
        }
        #expect(try await store.verifyAuditChain() == nil)
    }

    @Test func editedAuditRowIsDetected() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")
        let store = try SQLiteStore(path: path)
        try await Self.seedTrail(store)

        try Self.tamper(path, "UPDATE audit_events SET reason = 'x' WHERE sequence = 2")
        #expect(try await store.verifyAuditChain() == 2)
        try store.close()
    }

    @Test func rehashedAuditRowIsDetectedAtTheNextEntry() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")
        let store = try SQLiteStore(path: path)
        try await Self.seedTrail(store)

        // Edit entry 2 and fix up its own hash: the break shows where entry 3 points at the old hash.
        let events = try await store.auditEvents(AuditFilter())
        var edited = try #require(events.first { $0.sequence == 2 })
        edited.reason = "x"
        let hash = AuditChain.hash(previous: edited.previousHash, content: edited.canonicalContent)
        try Self.tamper(path, "UPDATE audit_events SET reason = 'x', hash = '\(hash)' WHERE sequence = 2")
        #expect(try await store.verifyAuditChain() == 3)
        try store.close()
    }

    @Test func deletedAuditRowIsDetected() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")
        let store = try SQLiteStore(path: path)
        try await Self.seedTrail(store)

        try Self.tamper(path, "DELETE FROM audit_events WHERE sequence = 2")
        #expect(try await store.verifyAuditChain() == 3)
        try store.close()
    }

    @Test func unreadableAuditRowIsReportedNotThrown() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")
        let store = try SQLiteStore(path: path)
        try await Self.seedTrail(store)

        try Self.tamper(path, "UPDATE audit_events SET outcome = 'maybe' WHERE sequence = 3")
        #expect(try await store.verifyAuditChain() == 3)
        try store.close()
    }

    @Test func dataSurvivesReopenAndMigrationsAreIdempotent() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")

        let credential = Fixture.credential(1, device: "dev-1")
        do {
            let store = try SQLiteStore(path: path)
            try await Fixture.seed(store)
            try await store.insertCredential(credential, audit: Fixture.event("est.enroll", serial: credential.serial))
            try await store.insertClaimToken(Fixture.claimToken("tok", uses: 2), audit: nil)
            try store.close()
        }
        for reopening in 0..<2 {
            let store = try SQLiteStore(path: path)
            #expect(try await store.tenants().map(\.id.rawValue) == ["acme", "other"])
            #expect(try await store.device(Fixture.deviceID("dev-1")) == Fixture.device("dev-1", lot: "lot-a"))
            #expect(try await store.credential(serial: credential.serial) == credential)
            #expect(try await store.claimToken(id: "tok")?.usesRemaining == 2)
            #expect(try await store.auditEvents(AuditFilter()).count == 1 + reopening)
            #expect(try await store.verifyAuditChain() == nil)
            // The chain continues where it left off.
            let next = try await store.appendAudit(Fixture.event("reopen"))
            #expect(next.sequence == Int64(2 + reopening))
            try store.close()
        }

        let queue = try DatabaseQueue(path: path)
        let migrations = try await queue.read { db in
            try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY identifier")
        }
        let journalMode = try await queue.read { db in try String.fetchOne(db, sql: "PRAGMA journal_mode") }
        try queue.close()
        #expect(migrations == ["v1", "v2", "v3"])
        #expect(journalMode == "wal")
    }

    @Test func v1DatabaseMigratesToTenantPolicies() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")
        do {
            let store = try SQLiteStore(path: path)
            try await Fixture.seed(store)
            try await store.updateTenantPolicy(
                Fixture.tenantID("acme"), policy: TenantPolicy(autoRegister: true, manualApproval: true), audit: nil)
            try store.close()
        }
        // Turn the file back into what a registry written before tenant policies looks like.
        try Self.tamper(
            path,
            """
            ALTER TABLE tenants DROP COLUMN auto_register;
            ALTER TABLE tenants DROP COLUMN manual_approval;
            DELETE FROM grdb_migrations WHERE identifier = 'v2';
            """)
        let inspector = try DatabaseQueue(path: path)
        let v1Columns = try await inspector.read { db in try db.columns(in: "tenants").map(\.name) }
        try inspector.close()
        #expect(v1Columns == ["id", "display_name", "created_at"])

        let store = try SQLiteStore(path: path)
        #expect(try await store.tenants() == [Fixture.tenant("acme"), Fixture.tenant("other")])
        #expect(try await store.device(Fixture.deviceID("dev-1")) == Fixture.device("dev-1", lot: "lot-a"))
        let open = TenantPolicy(autoRegister: true)
        try await store.updateTenantPolicy(Fixture.tenantID("other"), policy: open, audit: nil)
        try store.close()

        let reopened = try SQLiteStore(path: path)
        #expect(try await reopened.tenant(Fixture.tenantID("other"))?.policy == open)
        #expect(try await reopened.tenant(Fixture.tenantID("acme"))?.policy == TenantPolicy())
        try reopened.close()
        let queue = try DatabaseQueue(path: path)
        let migrations = try await queue.read { db in
            try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY identifier")
        }
        try queue.close()
        #expect(migrations == ["v1", "v2", "v3"])
    }

    @Test func policyColumnsOnlyHoldBooleans() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")
        let store = try SQLiteStore(path: path)
        try await Fixture.seed(store)
        #expect(throws: (any Error).self) {
            try Self.tamper(path, "UPDATE tenants SET auto_register = 2 WHERE id = 'acme'")
        }
        #expect(throws: (any Error).self) {
            try Self.tamper(path, "UPDATE tenants SET manual_approval = NULL WHERE id = 'acme'")
        }
        #expect(try await store.tenant(Fixture.tenantID("acme"))?.policy == TenantPolicy())
        try store.close()
    }

    @Test func closedStoreIsUnavailable() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let store = try SQLiteStore(path: directory.file("registry.sqlite"))
        try store.close()
        await expectStoreError(.unavailable) { () async throws(StoreError) in
            try await store.tenants()
        }
    }

    @Test func unopenablePathIsUnavailable() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        #expect(throws: StoreError(.unavailable, "")) {
            _ = try SQLiteStore(path: directory.file("missing-dir/registry.sqlite"))
        }
    }

    @Test func notADatabaseIsCorruptOrUnavailable() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")
        try Data(repeating: 0x41, count: 8192).write(to: URL(fileURLWithPath: path))
        do {
            _ = try SQLiteStore(path: path)
            Issue.record("opened a file that is not a database")
        } catch {
            #expect(error.code == .corrupt || error.code == .unavailable)
        }
    }
}
