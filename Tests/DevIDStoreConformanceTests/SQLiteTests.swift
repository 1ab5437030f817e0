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

    /// Like ``tamper(_:_:)``, for a file turned back into an older schema: first removes the change stream and the
    /// settings (the stream's triggers name columns the older schemas lack; reopening adds both again, the newest
    /// migrations).
    static func tamperBeforeChangeStream(_ path: String, _ sql: String) throws {
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in
            for trigger in try String.fetchAll(
                db, sql: "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'registry_changes_%'")
            {
                try db.execute(sql: "DROP TRIGGER \(trigger)")
            }
            try db.execute(
                sql: """
                    DROP TABLE registry_changes; DROP TABLE settings;
                    DELETE FROM grdb_migrations WHERE identifier IN ('v14-registry-changes', 'v15-settings')
                    """)
            try db.execute(sql: sql)
        }
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
        #expect(migrations == allMigrations)
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
        try Self.tamperBeforeChangeStream(
            path,
            """
            ALTER TABLE tenants DROP COLUMN auto_register;
            ALTER TABLE tenants DROP COLUMN manual_approval;
            ALTER TABLE tenants DROP COLUMN topic_policy;
            DELETE FROM grdb_migrations WHERE identifier IN ('v2', 'v5');
            """)
        let inspector = try DatabaseQueue(path: path)
        let v1Columns = try await inspector.read { db in try db.columns(in: "tenants").map(\.name) }
        try inspector.close()
        // v7's token caps stay (the tamper removes what v2 and v5 added, and their migration records).
        #expect(v1Columns == ["id", "display_name", "created_at", "max_unbound_token_uses", "max_unbound_token_ttl"])

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
        #expect(migrations == allMigrations)
    }

    @Test func v3DatabaseMigratesToRotationColumns() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")
        let credential = Fixture.credential(1, device: "dev-1")
        do {
            let store = try SQLiteStore(path: path)
            try await Fixture.seed(store)
            try await store.insertCredential(credential, audit: Fixture.event("est.enroll"))
            try store.close()
        }
        // Turn the file back into what a registry written before staged rotation looks like.
        try Self.tamperBeforeChangeStream(
            path,
            """
            DROP INDEX credentials_status_overlap_deadline;
            DROP INDEX credentials_status_issuer_serial;
            DROP INDEX credentials_status_serial;
            DROP INDEX credentials_rotation_due;
            DROP INDEX devices_tenant_state;
            ALTER TABLE credentials DROP COLUMN overlap_deadline;
            ALTER TABLE credentials DROP COLUMN confirmed_at;
            ALTER TABLE credentials DROP COLUMN rotation_due;
            ALTER TABLE credentials DROP COLUMN replaced_by;
            DELETE FROM grdb_migrations WHERE identifier IN ('v4', 'v10-fleet-health');
            """)
        let inspector = try DatabaseQueue(path: path)
        let v3Columns = try await inspector.read { db in try db.columns(in: "credentials").map(\.name) }
        try inspector.close()
        #expect(!v3Columns.contains("rotation_due") && v3Columns.contains("revocation_reason"))

        let store = try SQLiteStore(path: path)
        #expect(try await store.credential(serial: credential.serial) == credential)
        try await store.recordIssuance(
            Issuance(
                credential: Fixture.credential(2, device: "dev-1"), supersede: [credential.serial],
                overlapDeadline: Fixture.time(5000), now: Fixture.time(100), audit: Fixture.event("est.reenroll")))
        try store.close()

        let reopened = try SQLiteStore(path: path)
        let superseded = try #require(try await reopened.credential(serial: credential.serial))
        #expect(superseded.status == .superseded && superseded.overlapDeadline == Fixture.time(5000))
        #expect(superseded.replacedBy == Fixture.serial(2) && superseded.rotationDue == false)
        try reopened.close()
        let queue = try DatabaseQueue(path: path)
        let (migrations, indexes) = try await queue.read { db in
            (
                try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations ORDER BY identifier"),
                try db.indexes(on: "credentials").map(\.name)
            )
        }
        try queue.close()
        #expect(migrations == allMigrations)
        #expect(
            Set(indexes).isSuperset(of: [
                "credentials_status_overlap_deadline", "credentials_status_issuer_serial", "credentials_status_serial",
                "credentials_rotation_due",
            ]))
    }

    @Test func v5DatabaseMigratesToIDevIDSerials() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")
        do {
            let store = try SQLiteStore(path: path)
            try await Fixture.seed(store)
            try store.close()
        }
        // What a registry written before IDevID serials were registered looks like.
        try Self.tamperBeforeChangeStream(
            path,
            """
            DROP INDEX devices_idevid_serial;
            ALTER TABLE devices DROP COLUMN idevid_serial;
            ALTER TABLE devices DROP COLUMN idevid_revoked_at;
            ALTER TABLE devices DROP COLUMN idevid_revocation_reason;
            DELETE FROM grdb_migrations WHERE identifier = 'v6';
            """)
        let store = try SQLiteStore(path: path)
        #expect(try await store.device(Fixture.deviceID("dev-1")) == Fixture.device("dev-1", lot: "lot-a"))
        var imported = Fixture.device("dev-2", lot: "lot-a")
        imported.idevidSerial = SerialNumber(rawValue: "0a02")!
        _ = try await store.importDevices([imported], audit: Fixture.event("device.import"))
        #expect(try await store.device(idevidSerial: SerialNumber(rawValue: "0a02")!) == imported)
        _ = try await store.revoke(
            .lot(Fixture.lotID("lot-a")), reason: .keyCompromise, at: Fixture.time(60), audit: Fixture.event("revoke"))
        #expect(try await store.revokedIDevIDs(afterSerial: nil, limit: 10).map(\.id) == [imported.id])
        // dev-1 was registered before v6: its lot's revocation could not reach its IDevID. Re-importing its
        // manifest registers the serial, revoked at once since the device is.
        var again = Fixture.device("dev-1", lot: "lot-a")
        again.idevidSerial = SerialNumber(rawValue: "0a01")!
        let result = try await store.importDevices([again, imported], audit: Fixture.event("device.import", at: 70))
        #expect(result == DeviceImportResult(created: 0, unchanged: 2, lotsCreated: 0, idevidsRegistered: 1))
        let revoked = try await store.revokedIDevIDs(afterSerial: nil, limit: 10)
        #expect(revoked.map(\.id) == [again.id, imported.id])
        #expect(revoked.first?.idevidRevokedAt == Fixture.time(70))
        try store.close()
        let queue = try DatabaseQueue(path: path)
        let indexes = try await queue.read { db in try db.indexes(on: "devices").map(\.name) }
        try queue.close()
        #expect(indexes.contains("devices_idevid_serial"))
    }

    @Test func rotationDueOnlyHoldsBooleans() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")
        let store = try SQLiteStore(path: path)
        try await Fixture.seed(store)
        try await store.insertCredential(Fixture.credential(1, device: "dev-1"), audit: Fixture.event("est.enroll"))
        #expect(throws: (any Error).self) {
            try Self.tamper(path, "UPDATE credentials SET rotation_due = 2")
        }
        #expect(throws: (any Error).self) {
            try Self.tamper(path, "UPDATE credentials SET rotation_due = NULL")
        }
        #expect(try await store.credential(serial: Fixture.serial(1))?.rotationDue == false)
        try store.close()
    }

    /// The CRL query shapes walk an index in serial order: no sort of every revoked row for the first page.
    @Test func crlPagesDoNotSort() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")
        try SQLiteStore(path: path).close()
        let queue = try DatabaseQueue(path: path)
        let base = "SELECT * FROM credentials WHERE status = ? AND +not_after > ?"
        let shapes = [
            ("\(base) ORDER BY serial LIMIT ?", "credentials_status_serial"),
            ("\(base) AND serial > ? ORDER BY serial LIMIT ?", "credentials_status_serial"),
            ("\(base) AND issuer = ? ORDER BY serial LIMIT ?", "credentials_status_issuer_serial"),
            ("\(base) AND issuer = ? AND serial > ? ORDER BY serial LIMIT ?", "credentials_status_issuer_serial"),
        ]
        for (sql, index) in shapes {
            let plan = try await queue.read { db in
                try Row.fetchAll(
                    db, sql: "EXPLAIN QUERY PLAN \(sql)",
                    arguments: StatementArguments(Array(repeating: "x", count: sql.count { $0 == "?" }))
                ).map { row -> String in row["detail"] }
            }
            #expect(plan.contains { $0.contains(index) }, "\(plan)")
            #expect(!plan.contains { $0.contains("TEMP B-TREE") }, "\(plan)")
        }
        try queue.close()
    }

    /// 20,000 revoked credentials of one issuer among 9,000 others: paging returns each exactly once, in order.
    @Test func crlPagingOverTwentyThousandRevokedCredentials() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")
        let store = try SQLiteStore(path: path)
        try await Fixture.seed(store)
        let issuer = "CN=DevID Issuing CA,O=acme"
        let now = Fixture.time(1000)

        // Bulk rows through a second connection in one transaction; serials of 8 to 16 random-looking bytes, so
        // text order differs from numeric order.
        let rows = (0..<29_000).map { index -> (serial: String, issuer: String, notAfter: Int64, status: String) in
            let serial = Hex.encode(Array(Fixture.der(index, variant: 99).dropFirst(2).prefix(8 + index % 9)))
            let valid: Int64 = 1_790_086_400_000
            return switch index {
            case ..<20_000: (serial, issuer, valid, "revoked")
            case ..<22_000: (serial, "CN=Older Issuing CA,O=acme", valid, "revoked")
            // Expired a second before the CRL's time.
            case ..<24_000: (serial, issuer, 1_790_000_999_000, "revoked")
            default: (serial, issuer, valid, "active")
            }
        }
        let writer = try DatabaseQueue(path: path)
        try await writer.write { db in
            let insert = try db.makeStatement(
                sql: """
                    INSERT INTO credentials (serial, device_id, kind, issuer, not_before, not_after, public_key_sha256,
                        certificate_sha256, der, status, revoked_at, revocation_reason, created_at)
                    VALUES (?, 'dev-1', 'ldevid', ?, 0, ?, ?, ?, X'3082', ?, 0, 'keyCompromise', 0)
                    """)
            for row in rows {
                try insert.execute(arguments: [
                    row.serial, row.issuer, row.notAfter, row.serial, row.serial, row.status,
                ])
            }
        }
        try writer.close()
        let expected = rows.prefix(20_000).map(\.serial)
        #expect(Set(expected).count == 20_000)

        func pageThrough(issuer: String?, limit: Int) async throws -> ([String], Duration) {
            var serials: [String] = []
            var after: SerialNumber?
            let clock = ContinuousClock()
            let elapsed = try await clock.measure {
                while true {
                    let page = try await store.revokedCredentials(
                        issuer: issuer, notExpiredAt: now, afterSerial: after, limit: limit)
                    guard let last = page.last else { break }
                    serials += page.map(\.serial.rawValue)
                    after = last.serial
                }
            }
            return (serials, elapsed)
        }

        let (serials, elapsed) = try await pageThrough(issuer: issuer, limit: 1000)
        #expect(serials.count == 20_000)
        #expect(Set(serials) == Set(expected))
        #expect(serials == serials.sorted { $0.utf8.lexicographicallyPrecedes($1.utf8) })
        #expect(zip(serials, serials.dropFirst()).allSatisfy { $0 != $1 })

        let (everyIssuer, everyIssuerElapsed) = try await pageThrough(issuer: nil, limit: 500)
        #expect(everyIssuer.count == 22_000)
        #expect(Set(everyIssuer).count == 22_000)

        let clock = ContinuousClock()
        let firstPage = try await clock.measure {
            _ = try await store.revokedCredentials(issuer: issuer, notExpiredAt: now, afterSerial: nil, limit: 1000)
        }
        print(
            "CRL paging: 20,000 of one issuer in 1,000-row pages \(elapsed); 22,000 of every issuer in 500-row pages"
                + " \(everyIssuerElapsed); first page alone \(firstPage)")
        #expect(elapsed < .seconds(30))
        try store.close()
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

/// Tampering with a keyed trail through a second connection (issue #12, finding 3): each kind is told apart.
@Suite("SQLite backend: keyed audit chain")
struct SQLiteKeyedAuditTests {
    static let key = AuditKey(secret: Array(repeating: 7, count: 32))

    /// A keyed trail of 6 entries; returns the store and the anchor (checkpoint) at its head.
    static func seeded(_ path: String) async throws -> (SQLiteStore, AuditAnchor) {
        let store = try SQLiteStore(path: path, auditKey: key)
        var head: AuditEvent?
        for index in 1...6 {
            head = try await store.appendAudit(
                Fixture.event("est.enroll", at: TimeInterval(index), reason: "entry \(index)"))
        }
        let anchor = AuditAnchor(sequence: 6, hash: try #require(head).hash, keyedFrom: 1)
        #expect(try await store.auditChainReport(anchor: anchor).isIntact)
        return (store, anchor)
    }

    /// Recomputes the chain with plain SHA-256 from `sequence` on, as someone without the key would.
    static func recomputePlain(_ path: String, from sequence: Int64) throws {
        let queue = try DatabaseQueue(path: path)
        try queue.write { db in
            var previous = try String.fetchOne(
                db, sql: "SELECT hash FROM audit_events WHERE sequence = ?", arguments: [sequence - 1])
                ?? AuditChain.genesis
            let rows = try Row.fetchAll(
                db, sql: "SELECT * FROM audit_events WHERE sequence >= ? ORDER BY sequence", arguments: [sequence])
            for row in rows {
                let fields: [String] = [
                    String(row["sequence"] as Int64), String(row["occurred_at"] as Int64), row["actor"], row["action"],
                    row["outcome"], row["reason"], row["tenant_id"] ?? "", row["device_id"] ?? "",
                    row["serial"] ?? "",
                ]
                let content = fields.map { "\($0.utf8.count):\($0)" }.joined(separator: "|")
                let hash = AuditChain.hash(previous: previous, content: content)
                try db.execute(
                    sql: "UPDATE audit_events SET previous_hash = ?, hash = ? WHERE sequence = ?",
                    arguments: [previous, hash, row["sequence"] as Int64])
                previous = hash
            }
        }
        try queue.close()
    }

    @Test func editedRow() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")
        let (store, anchor) = try await Self.seeded(path)
        try SQLiteTests.tamper(path, "UPDATE audit_events SET reason = 'nothing happened' WHERE sequence = 3")
        let report = try await store.auditChainReport(anchor: anchor)
        #expect(report.finding == .edited(sequence: 3))
        #expect(report.code == "edited")
        #expect(report.summary == "audit chain broken at sequence 3: entry 3 was edited (its hash does not match its content)")
        try store.close()
    }

    @Test func rowsDeletedInTheMiddle() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")
        let (store, anchor) = try await Self.seeded(path)
        try SQLiteTests.tamper(path, "DELETE FROM audit_events WHERE sequence IN (3, 4)")
        let report = try await store.auditChainReport(anchor: anchor)
        #expect(report.finding == .missing(from: 3, through: 4))
        #expect(report.brokenSequence == 5)
        #expect(
            report.summary
                == "audit chain broken at sequence 5: entries 3-4 are missing (deleted from the middle of the trail)")
        try store.close()
    }

    @Test func rowsDeletedAtTheTail() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")
        let (store, anchor) = try await Self.seeded(path)
        try SQLiteTests.tamper(path, "DELETE FROM audit_events WHERE sequence > 4")
        // Without the checkpoint nothing shows: the remaining chain is consistent.
        #expect(try await store.auditChainReport(anchor: nil).isIntact)
        let report = try await store.auditChainReport(anchor: anchor)
        #expect(report.finding == .truncated(last: 4, checkpoint: 6))
        #expect(report.code == "truncated")
        #expect(
            report.summary
                == "audit chain broken at sequence 5: entries after 4 are missing (deleted from the end: the signed checkpoint covers 6)")

        // The server goes on appending over the deleted numbers: entries newer than the checkpoint but within it
        // still tell a deletion at the end (not a recomputed chain) when the checkpoint's time is known.
        try await store.appendAudit(Fixture.event("later", at: 100))
        try await store.appendAudit(Fixture.event("later", at: 101))
        var timed = anchor
        timed.timeMillis = Int64((Fixture.time(6).timeIntervalSince1970 * 1000).rounded())
        #expect(try await store.auditChainReport(anchor: timed).finding == .truncated(last: 4, checkpoint: 6))
        #expect(try await store.auditChainReport(anchor: anchor).finding == .checkpointMismatch(sequence: 6))
        try store.close()
    }

    @Test func chainRecomputedWithoutTheKey() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")
        let (store, anchor) = try await Self.seeded(path)
        try SQLiteTests.tamper(path, "UPDATE audit_events SET reason = 'nothing happened' WHERE sequence = 4")
        try Self.recomputePlain(path, from: 4)
        for anchor in [anchor, nil] {
            let report = try await store.auditChainReport(anchor: anchor)
            #expect(report.finding == .recomputed(sequence: 4))
            #expect(report.code == "recomputed")
            #expect(
                report.summary
                    == "audit chain broken at sequence 4: the chain was recomputed from entry 4 on (consistent hashes, but not keyed with the audit key)")
        }
        try store.close()
    }

    @Test func wholeChainRecomputedIsCaughtByTheCheckpoint() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")
        let (store, anchor) = try await Self.seeded(path)
        try Self.recomputePlain(path, from: 1)
        #expect(try await store.auditChainReport(anchor: anchor).finding == .recomputed(sequence: 1))
        // A checkpoint taken before any entry was keyed still pins the head's hash.
        let legacyAnchor = AuditAnchor(sequence: anchor.sequence, hash: anchor.hash, keyedFrom: nil)
        let report = try await store.auditChainReport(anchor: legacyAnchor)
        #expect(report.finding == .checkpointMismatch(sequence: 6))
        #expect(report.code == "recomputed")
        #expect(
            report.summary
                == "audit chain broken at sequence 6: the chain was recomputed (entry 6 does not match the signed checkpoint)")
        try store.close()
    }

    /// An installation from before keyed chains: its plain entries verify as a prefix; once keyed entries begin, a
    /// plain one after them (e.g. written by a store opened without the key) is reported.
    @Test func legacyPrefixThenKeyed() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")
        let legacy = try SQLiteStore(path: path)
        for index in 1...3 { try await legacy.appendAudit(Fixture.event("old", at: TimeInterval(index))) }
        try legacy.close()

        let keyed = try SQLiteStore(path: path, auditKey: Self.key)
        for index in 4...5 { try await keyed.appendAudit(Fixture.event("new", at: TimeInterval(index))) }
        let report = try await keyed.auditChainReport(anchor: nil)
        #expect(report.isIntact)
        #expect(report.keyedFrom == 4)
        #expect(report.summary == "audit chain intact: 5 entries, keyed from sequence 4")
        try keyed.close()

        let unkeyed = try SQLiteStore(path: path)
        try await unkeyed.appendAudit(Fixture.event("late", at: 6))
        try unkeyed.close()
        let reopened = try SQLiteStore(path: path, auditKey: Self.key)
        #expect(try await reopened.auditChainReport(anchor: nil).finding == .recomputed(sequence: 6))
        try reopened.close()
    }

    /// Rows that an older version wrote and that no longer parse into the typed model (a 24-octet serial, an
    /// unknown outcome) are listed as stored and still verify: the chain hashes the stored strings.
    @Test func oddRowsAreListedAndVerified() async throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("registry.sqlite")
        let store = try SQLiteStore(path: path)
        try await store.appendAudit(Fixture.event("ca.init", at: 1))
        let first = try #require(try await store.auditEntries(AuditFilter()).first)
        var odd = AuditEntry(
            sequence: 2, timeMillis: 1_790_000_002_000, actor: "anonymous", action: "tls.client_auth",
            outcome: "denied", reason: "certificate does not chain to a trusted CA", tenant: nil, device: nil,
            serial: String(repeating: "ab", count: 24), previousHash: first.hash, hash: "")
        odd.hash = AuditChain.hash(previous: odd.previousHash, content: odd.canonicalContent)
        try SQLiteTests.tamper(
            path,
            """
            INSERT INTO audit_events (sequence, occurred_at, actor, action, outcome, reason, serial, previous_hash, hash)
            VALUES (2, \(odd.timeMillis), '\(odd.actor)', '\(odd.action)', '\(odd.outcome)', '\(odd.reason)',
                    '\(odd.serial!)', '\(odd.previousHash)', '\(odd.hash)')
            """)
        #expect(try await store.verifyAuditChain() == nil)
        #expect(try await store.auditEntries(AuditFilter()).first == odd)
        #expect(try await store.auditEvents(AuditFilter()).map(\.sequence) == [1], "typed listing skips, not throws")
        let next = try await store.appendAudit(Fixture.event("after", at: 3))
        #expect(next.previousHash == odd.hash)
        #expect(try await store.verifyAuditChain() == nil)
        try store.close()
    }
}

/// Every migration the schema registers, in the order `grdb_migrations` lists them by identifier (text order:
/// `v10-...` sorts after `v1`).
let allMigrations = [
    "v1", "v10-fleet-health", "v11-fleet-expiry", "v12-health-history", "v13-issuing-cas", "v14-registry-changes", "v15-settings",
    "v16-crl-number", "v17-stored-crls", "v18-claim-token-order", "v2",
    "v3", "v4", "v5", "v6",
    "v7-enrollment-bindings", "v8-admin-token-roles", "v9-service-certificates",
]
