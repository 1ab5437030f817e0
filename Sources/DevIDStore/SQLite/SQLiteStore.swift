public import DevIDCore
public import Foundation
import GRDB

/// The embedded registry: SQLite through GRDB.
///
/// A file opens as a `DatabasePool` in WAL mode (one writer, concurrent readers); ``inMemory()`` gives a
/// private in-memory database for tests. Every call is async and runs on GRDB's own queues, so callers on
/// event loops never block. Write transactions are `IMMEDIATE`, so a read-then-write inside one (the audit
/// chain, token consumption) cannot interleave with another writer.
public final class SQLiteStore: Store {
    private let writer: any DatabaseWriter
    /// The change stream: what each write transaction changed is delivered before the write returns.
    public let changeFeed: ChangeFeed
    /// Every write goes through it: concurrent writes share a transaction and its WAL sync.
    let groupCommit: GroupCommit
    /// Keys the audit chain (see ``AuditChain``); nil writes plain SHA-256 entries, as before keyed chains.
    let auditKey: AuditKey?

    /// Opens (creating if needed) the database file at `path` and brings its schema up to date.
    ///
    /// Runs the migrations synchronously: call it at startup, not on an event loop. With `auditKey`, new audit
    /// entries are keyed (HMAC-SHA256) and verification expects every entry after the first keyed one to be keyed.
    public convenience init(path: String, auditKey: AuditKey? = nil, migrate: Bool = true) throws(StoreError) {
        let pool: DatabasePool
        do {
            pool = try DatabasePool(path: path, configuration: Self.configuration(auditKey: auditKey))
            // DatabasePool sets its writer to synchronous = NORMAL after `prepareDatabase` runs; the writer is the
            // connection that commits, so set FULL on it again here.
            try pool.writeWithoutTransaction { db in try db.execute(sql: "PRAGMA synchronous = FULL") }
        } catch {
            throw .sqlite(error, "open database")
        }
        try self.init(writer: pool, auditKey: auditKey, migrate: migrate)
    }

    /// A private in-memory database with the full schema; gone when the store is released.
    public static func inMemory(auditKey: AuditKey? = nil) throws(StoreError) -> SQLiteStore {
        let queue: DatabaseQueue
        do {
            queue = try DatabaseQueue(configuration: configuration(auditKey: auditKey))
        } catch {
            throw .sqlite(error, "open in-memory database")
        }
        return try SQLiteStore(writer: queue, auditKey: auditKey)
    }

    private init(writer: any DatabaseWriter, auditKey: AuditKey?, migrate: Bool = true) throws(StoreError) {
        let latest: Int64
        let status = try Self.migrationStatus(writer)
        // A registry a newer DevID migrated holds what this one cannot read or would break: never open it.
        guard status.unknown.isEmpty else {
            throw StoreError(
                .corrupt,
                "the registry was migrated by a newer DevID (\(status.unknown.joined(separator: ", "))); "
                    + "run that version or restore a backup")
        }
        if !migrate, !status.pending.isEmpty {
            throw StoreError(
                .unavailable,
                "the registry needs \(status.pending.count) migration(s) (\(status.pending.joined(separator: ", "))): "
                    + "run devid registry migrate, or start without --no-registry-migrate")
        }
        do {
            try SQLiteSchema.migrator.migrate(writer)
            latest = try writer.read { db in try Self.latestChange(db) }
        } catch {
            throw .sqlite(error, "migrate database")
        }
        self.writer = writer
        self.changeFeed = ChangeFeed(after: latest)
        self.groupCommit = GroupCommit(writer: writer, feed: changeFeed)
        self.auditKey = auditKey
    }

    /// The schema's migrations: applied, pending (this DevID knows and would run) and unknown (applied by a newer
    /// DevID), each in order.
    public struct MigrationStatus: Sendable, Equatable {
        public var applied: [String]
        public var pending: [String]
        public var unknown: [String]
    }

    /// The migration status of the database file at `path`, without changing it.
    public static func migrationStatus(path: String) throws(StoreError) -> MigrationStatus {
        let pool: DatabasePool
        do {
            pool = try DatabasePool(path: path, configuration: configuration(auditKey: nil))
        } catch {
            throw .sqlite(error, "open database")
        }
        defer { try? pool.close() }
        return try migrationStatus(pool)
    }

    private static func migrationStatus(_ writer: any DatabaseWriter) throws(StoreError) -> MigrationStatus {
        do {
            return try writer.read { db in
                let migrator = SQLiteSchema.migrator
                let applied = try migrator.appliedIdentifiers(db)
                let known = migrator.migrations
                let unknown = try db.tableExists("grdb_migrations")
                    ? try String.fetchAll(db, sql: "SELECT identifier FROM grdb_migrations").filter { !known.contains($0) }
                    : []
                return MigrationStatus(
                    applied: known.filter { applied.contains($0) }, pending: known.filter { !applied.contains($0) },
                    unknown: unknown.sorted())
            }
        } catch {
            throw .sqlite(error, "read the schema's migrations")
        }
    }

    /// Closes the database. Later calls fail with `.unavailable`. Optional: releasing the store closes it too.
    public func close() throws(StoreError) {
        do {
            try writer.close()
        } catch {
            throw .sqlite(error, "close database")
        }
    }

    static func configuration(auditKey: AuditKey?) -> Configuration {
        var configuration = Configuration()
        configuration.label = "DevIDStore"
        configuration.foreignKeysEnabled = true
        // Never let SQL arguments (token hashes, certificate bytes) into error descriptions.
        configuration.publicStatementArguments = false
        configuration.busyMode = .timeout(5)
        // Reads are CPU-bound page-cache work: more concurrent readers than cores only add connections, each two
        // descriptors (database and WAL). GRDB's default is 5.
        configuration.maximumReaderCount = max(2, ProcessInfo.processInfo.activeProcessorCount)
        // A certificate is recorded before its bytes leave the server, so a commit must survive power loss:
        // WAL's default (NORMAL) may lose the last commits; FULL syncs the WAL on every commit (~0.3 ms here).
        // Every connection gets the audit chain's keyed hash as an SQL function, so `append(_:_:)` (called inside
        // any write transaction) keys its entry; the key itself never reaches the database.
        let mac = AuditChain.macFunction(auditKey)
        configuration.prepareDatabase { db in
            try db.execute(sql: "PRAGMA synchronous = FULL")
            // Statement journals (an INSERT whose triggers record the change) in memory, not in a temporary file that
            // is created, unlinked and closed again for every issuance: five system calls and a directory probe each.
            try db.execute(sql: "PRAGMA temp_store = MEMORY")
            db.add(function: mac)
        }
        return configuration
    }

    // MARK: Plumbing

    func write<T: Sendable>(
        _ operation: String, _ updates: @Sendable (Database) throws -> T
    ) async throws(StoreError) -> T {
        let (value, committed): (T, GroupCommit.Committed)
        do {
            // The changes the triggers recorded, read in the same transaction (and any another writer committed
            // since the cursor: the feed drops what it already delivered). With nobody listening, only where they
            // end: a 10,000-device import then does not read 10,000 changes back. Concurrent writes share one
            // transaction and its sync (``GroupCommit``), each atomic on its own.
            (value, committed) = try await groupCommit.write(updates)
        } catch {
            throw .sqlite(error, operation)
        }
        if !committed.changes.isEmpty { await changeFeed.deliver(committed.changes) }
        return value
    }

    func read<T: Sendable>(
        _ operation: String, _ value: @Sendable (Database) throws -> T
    ) async throws(StoreError) -> T {
        do {
            return try await writer.read(value)
        } catch {
            throw .sqlite(error, operation)
        }
    }

    /// Appends `event` to the chain inside the caller's transaction.
    static func append(_ event: AuditEvent, _ db: Database) throws -> AuditEvent {
        // Cached statements: every grant and denial passes here, so they are prepared once per connection.
        let last = try Row.fetchOne(
            db.cachedStatement(sql: "SELECT * FROM audit_events ORDER BY sequence DESC LIMIT 1")
        ).map(AuditEventRecord.entry)
        let chained = try AuditChain.chained(
            event, afterSequence: last?.sequence, hash: last?.hash,
            mac: { input in
                try String.fetchOne(db.cachedStatement(sql: "SELECT devid_audit_mac(?)"), arguments: [input])
            })
        try AuditEventRecord(chained).insert(db)
        return chained
    }

    static func append(_ event: AuditEvent?, _ db: Database) throws {
        if let event { _ = try append(event, db) }
    }
}

// MARK: - Store

extension SQLiteStore {
    // MARK: Tenants and lots

    public func createTenant(_ tenant: Tenant, audit: AuditEvent?) async throws(StoreError) {
        try await write("create tenant") { db in
            try TenantRecord(tenant).insert(db)
            try Self.append(audit, db)
        }
    }

    public func tenant(_ id: TenantID) async throws(StoreError) -> Tenant? {
        try await read("read tenant") { db in
            try TenantRecord.fetchOne(
                db.cachedStatement(sql: "SELECT * FROM tenants WHERE id = ?"), arguments: [id.rawValue]
            )?.model()
        }
    }

    public func tenants() async throws(StoreError) -> [Tenant] {
        try await read("list tenants") { db in
            try TenantRecord.all().order { $0.id }.fetchAll(db).map { record throws(StoreError) in try record.model() }
        }
    }

    public func updateTenantPolicy(_ id: TenantID, policy: TenantPolicy, audit: AuditEvent?) async throws(StoreError) {
        try await write("update tenant policy") { db in
            let changed = try TenantRecord.all()
                .filter { $0.id == id.rawValue }
                .updateAll(
                    db,
                    [
                        TenantRecord.Columns.autoRegister.set(to: policy.autoRegister),
                        TenantRecord.Columns.manualApproval.set(to: policy.manualApproval),
                        TenantRecord.Columns.topicPolicy.set(to: TenantRecord.encode(policy.topics)),
                        TenantRecord.Columns.maxUnboundTokenUses.set(to: policy.maxUnboundTokenUses),
                        TenantRecord.Columns.maxUnboundTokenTTL.set(to: Int64(policy.maxUnboundTokenTTL)),
                    ])
            guard changed > 0 else { throw StoreError(.notFound, "update tenant policy: no such tenant") }
            try Self.append(audit, db)
        }
    }

    public func createLot(_ lot: Lot) async throws(StoreError) {
        try await write("create lot") { db in
            try LotRecord(lot).insert(db)
        }
    }

    public func lot(_ id: LotID) async throws(StoreError) -> Lot? {
        try await read("read lot") { db in
            try LotRecord.fetchOne(db, key: id.rawValue)?.model()
        }
    }

    // MARK: Devices

    public func insertDevice(_ device: Device, audit: AuditEvent?) async throws(StoreError) {
        try await write("insert device") { db in
            try DeviceRecord(device).insert(db)
            try Self.append(audit, db)
        }
    }

    public func device(_ id: DeviceID) async throws(StoreError) -> Device? {
        try await read("read device") { db in
            try DeviceRecord.fetchOne(
                db.cachedStatement(sql: "SELECT * FROM devices WHERE id = ?"), arguments: [id.rawValue]
            )?.model()
        }
    }

    public func device(hardwareSerial: String) async throws(StoreError) -> Device? {
        try await read("read device") { db in try Self.device(hardwareSerial: hardwareSerial, db) }
    }

    public func deviceWithCredentials(hardwareSerial: String) async throws(StoreError) -> (Device, [Credential])? {
        // One read transaction, one trip to a reader's queue: an IDevID enrollment's first look at the registry.
        try await read("read device") { db in
            guard let device = try Self.device(hardwareSerial: hardwareSerial, db) else { return nil }
            return (device, try Self.credentials(device: device.id, db))
        }
    }

    private static func device(hardwareSerial: String, _ db: Database) throws -> Device? {
        // Cached statements on the enrollment path: building and preparing a query-interface request (SQL
        // generation, the statement authorizer) cost more than the lookup itself.
        try DeviceRecord.fetchOne(
            db.cachedStatement(sql: "SELECT * FROM devices WHERE hardware_serial = ? LIMIT 1"),
            arguments: [hardwareSerial]
        )?.model()
    }

    public func device(idevidSerial: SerialNumber) async throws(StoreError) -> Device? {
        try await read("read device") { db in
            try DeviceRecord.all().filter { $0.idevidSerial == idevidSerial.rawValue }.fetchOne(db)?.model()
        }
    }

    public func devices(_ filter: DeviceFilter) async throws(StoreError) -> [Device] {
        try await read("list devices") { db in
            var request = DeviceRecord.all()
            if let tenant = filter.tenant { request = request.filter { $0.tenantID == tenant.rawValue } }
            if let lot = filter.lot { request = request.filter { $0.lotID == lot.rawValue } }
            if let state = filter.state { request = request.filter { $0.state == state.rawValue } }
            if let token = filter.enrolledWithToken { request = request.filter { $0.enrolledWithToken == token } }
            if let after = filter.after { request = request.filter { $0.id > after.rawValue } }
            return try request.order { $0.id }.limit(max(0, filter.limit)).fetchAll(db)
                .map { record throws(StoreError) in try record.model() }
        }
    }

    public func updateDeviceState(
        _ id: DeviceID, from expected: DeviceState, to next: DeviceState, audit: AuditEvent?
    ) async throws(StoreError) {
        try await write("update device state") { db in
            let changed = try DeviceRecord.all()
                .filter { $0.id == id.rawValue && $0.state == expected.rawValue }
                .updateAll(db, DeviceRecord.Columns.state.set(to: next.rawValue))
            if changed == 0 {
                guard try DeviceRecord.exists(db, key: id.rawValue) else {
                    throw StoreError(.notFound, "update device state: no such device")
                }
                throw StoreError(.conflict, "update device state: device is no longer \(expected.rawValue)")
            }
            try Self.append(audit, db)
        }
    }

    public func recordSeen(_ id: DeviceID, at time: Date) async throws(StoreError) {
        try await write("record device seen") { db in
            let changed = try DeviceRecord.all()
                .filter { $0.id == id.rawValue }
                .updateAll(db, DeviceRecord.Columns.lastSeen.set(to: StoreTime.milliseconds(time)))
            guard changed > 0 else { throw StoreError(.notFound, "record device seen: no such device") }
        }
    }

    // MARK: Credentials

    public func insertCredential(_ credential: Credential, audit: AuditEvent) async throws(StoreError) {
        try await write("insert credential") { db in
            try CredentialRecord(credential).insert(db)
            _ = try Self.append(audit, db)
        }
    }

    public func credential(serial: SerialNumber) async throws(StoreError) -> Credential? {
        try await read("read credential") { db in
            try CredentialRecord.fetchOne(
                db.cachedStatement(sql: "SELECT * FROM credentials WHERE serial = ?"), arguments: [serial.rawValue]
            )?.model()
        }
    }

    public func credential(certificateSHA256: String) async throws(StoreError) -> Credential? {
        let fingerprint = certificateSHA256.lowercased()
        return try await read("read credential") { db in
            try CredentialRecord.all().filter { $0.certificateSHA256 == fingerprint }.fetchOne(db)?.model()
        }
    }

    public func credentials(device: DeviceID) async throws(StoreError) -> [Credential] {
        try await read("list credentials") { db in try Self.credentials(device: device, db) }
    }

    private static func credentials(device: DeviceID, _ db: Database) throws -> [Credential] {
        try CredentialRecord.fetchAll(
            db.cachedStatement(sql: "SELECT * FROM credentials WHERE device_id = ? ORDER BY created_at, serial"),
            arguments: [device.rawValue]
        ).map { record throws(StoreError) in try record.model() }
    }

    public func activeCredentials(device: DeviceID) async throws(StoreError) -> [Credential] {
        let statuses = [CredentialStatus.active.rawValue, CredentialStatus.superseded.rawValue]
        return try await read("list active credentials") { db in
            try CredentialRecord.all()
                .filter { $0.deviceID == device.rawValue && statuses.contains($0.status) }
                .order { [$0.notBefore.desc, $0.createdAt.desc, $0.serial.desc] }
                .fetchAll(db)
                .map { record throws(StoreError) in try record.model() }
        }
    }

    public func updateCredentialStatus(
        serial: SerialNumber, status: CredentialStatus, revokedAt: Date?, reason: RevocationReason?,
        audit: AuditEvent?
    ) async throws(StoreError) {
        try await write("update credential status") { db in
            let changed = try CredentialRecord.all()
                .filter { $0.serial == serial.rawValue }
                .updateAll(
                    db,
                    [
                        CredentialRecord.Columns.status.set(to: status.rawValue),
                        CredentialRecord.Columns.revokedAt.set(to: revokedAt.map(StoreTime.milliseconds)),
                        CredentialRecord.Columns.revocationReason.set(to: reason?.rawValue),
                    ])
            guard changed > 0 else { throw StoreError(.notFound, "update credential status: no such credential") }
            try Self.append(audit, db)
        }
    }

    public func credentialCount() async throws(StoreError) -> Int {
        try await read("count credentials") { db in
            try CredentialRecord.fetchCount(db)
        }
    }

    // MARK: Claim tokens

    public func insertClaimToken(_ token: ClaimToken, audit: AuditEvent?) async throws(StoreError) {
        try await write("insert claim token") { db in
            try ClaimTokenRecord(token).insert(db)
            try Self.append(audit, db)
        }
    }

    public func claimToken(id: String) async throws(StoreError) -> ClaimToken? {
        try await read("read claim token") { db in
            try ClaimTokenRecord.fetchOne(db, key: id)?.model()
        }
    }

    public func claimToken(secretHash: String) async throws(StoreError) -> ClaimToken? {
        try await read("read claim token") { db in
            try ClaimTokenRecord.all().filter { $0.secretHash == secretHash }.fetchOne(db)?.model()
        }
    }

    public func claimTokens(_ filter: ClaimTokenFilter) async throws(StoreError) -> [ClaimToken] {
        try await read("list claim tokens") { db in
            var request = ClaimTokenRecord.all()
            if let tenant = filter.tenant { request = request.filter { $0.tenantID == tenant.rawValue } }
            if let after = filter.after {
                guard let cursor = try ClaimTokenRecord.fetchOne(db, key: after) else {
                    throw StoreError(.notFound, "list claim tokens: no claim token \(after) to continue after")
                }
                // A row value, which the listing-order index answers (the OR of two comparisons scans it).
                request = request.filter(sql: "(created_at, id) < (?, ?)", arguments: [cursor.createdAt, cursor.id])
            }
            return try request.order { [$0.createdAt.desc, $0.id.desc] }.limit(filter.limit).fetchAll(db)
                .map { record throws(StoreError) in try record.model() }
        }
    }

    public func consumeClaimToken(id: String, now: Date) async throws(StoreError) -> ClaimToken {
        let nowMilliseconds = StoreTime.milliseconds(now)
        return try await write("consume claim token") { db in
            // One conditional UPDATE: the usability check and the decrement cannot be split by another writer.
            let changed = try ClaimTokenRecord.all()
                .filter { $0.id == id }
                .filter { $0.usesRemaining > 0 }
                .filter { $0.revoked == false }
                .filter { $0.expiresAt > nowMilliseconds }
                .updateAll(
                    db, ClaimTokenRecord.Columns.usesRemaining.set(to: ClaimTokenRecord.Columns.usesRemaining - 1))
            guard let record = try ClaimTokenRecord.fetchOne(db, key: id) else {
                throw StoreError(.notFound, "consume claim token: no such token")
            }
            guard changed > 0 else { throw ClaimTokenRules.unusable(try record.model(), now: now) }
            var before = try record.model()
            before.usesRemaining += 1
            return before
        }
    }

    public func revokeClaimToken(id: String, audit: AuditEvent?) async throws(StoreError) {
        try await write("revoke claim token") { db in
            let changed = try ClaimTokenRecord.all()
                .filter { $0.id == id }
                .updateAll(db, ClaimTokenRecord.Columns.revoked.set(to: true))
            guard changed > 0 else { throw StoreError(.notFound, "revoke claim token: no such token") }
            try Self.append(audit, db)
        }
    }

    // MARK: Admin tokens

    public func insertAdminToken(_ token: AdminToken, audit: AuditEvent?) async throws(StoreError) {
        try await write("insert admin token") { db in
            try AdminTokenRecord(token).insert(db)
            try Self.append(audit, db)
        }
    }

    public func adminTokens() async throws(StoreError) -> [AdminToken] {
        try await read("list admin tokens") { db in
            try AdminTokenRecord.all().order { $0.id }.fetchAll(db).map { record throws(StoreError) in
                try record.model()
            }
        }
    }

    public func revokeAdminToken(id: String, now: Date, audit: AuditEvent?) async throws(StoreError) -> AdminToken {
        try await write("revoke admin token") { db in
            guard let record = try AdminTokenRecord.fetchOne(db, key: id) else {
                throw StoreError(.notFound, "revoke admin token: no such token")
            }
            let token = try record.model()
            guard !token.revoked else { throw StoreError(.conflict, "admin token \(token.id) is already revoked") }
            if token.role == .admin {
                let others = try AdminTokenRecord.all().filter { $0.id != id }.fetchAll(db)
                    .compactMap { try? $0.model() }
                    .filter { $0.role == .admin && $0.isUsable(at: now) }
                guard !others.isEmpty else {
                    throw StoreError(
                        .conflict,
                        "admin token \(token.id) (\(token.name)) is the last usable admin token; create another first")
                }
            }
            try AdminTokenRecord.all().filter { $0.id == id }.updateAll(db, AdminTokenRecord.Columns.revoked.set(to: true))
            try Self.append(audit, db)
            var revoked = token
            revoked.revoked = true
            return revoked
        }
    }

    public func recordAdminTokenUse(_ lastUsed: [String: Date]) async throws(StoreError) {
        guard !lastUsed.isEmpty else { return }
        try await write("record admin token use") { db in
            for (id, time) in lastUsed.sorted(by: { $0.key < $1.key }) {
                let millis = StoreTime.milliseconds(time)
                try db.execute(
                    sql: """
                        UPDATE admin_tokens SET last_used_at = ?
                        WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)
                        """,
                    arguments: [millis, id, millis])
            }
        }
    }
}
