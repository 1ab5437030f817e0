public import DevIDCore
public import Foundation
import PostgresNIO

/// Staged rotation, bulk revocation, rotation campaigns, CRL pages and status counts on PostgreSQL: the SQL of
/// ``SQLiteStore`` (see `SQLiteStore+Rotation.swift`), with these differences:
/// - `SUM(boolean)` becomes `COUNT(*) FILTER (WHERE ...)`, and `SUM` over a BIGINT (NUMERIC here) is cast back
///   to BIGINT;
/// - serial order and serial ranges are `COLLATE "C"`, the byte order of SQLite's binary collation;
/// - SQLite's `+column` planner hints are dropped: PostgreSQL's planner costs plans from its statistics;
/// - reads of several statements that must agree (a scope's existence, then its counts) run in one
///   ``PostgresStore/snapshot(_:_:)``, as a GRDB read is one transaction;
/// - ``revokeCredentials(_:reason:at:audit:)`` revokes in batches of serials, not one statement per serial (each
///   statement is a round trip to the server).
///
/// Every refusal is checked before the first change of its transaction, and every write is one transaction (holding
/// the write lock) with its audit event.
extension PostgresStore {
    public func credentialCounts(now: Date) async throws(StoreError) -> [CredentialStatus: Int] {
        try await read("count credentials") { session in
            var counts = Dictionary(uniqueKeysWithValues: CredentialStatus.allCases.map { ($0, 0) })
            let rows = try await session.rows(
                "SELECT status, COUNT(*), COUNT(*) FILTER (WHERE not_after <= ?) FROM credentials GROUP BY status",
                [.integer(StoreTime.milliseconds(now))])
            for row in rows {
                let (raw, count, pastNotAfter) = try row.decode((String, Int64, Int64).self)
                let status = try SQLiteColumn.decode(CredentialStatus.init(rawValue:), raw, "credentials.status")
                switch status {
                case .revoked, .expired:
                    counts[status, default: 0] += Int(count)
                case .active, .superseded:
                    counts[status, default: 0] += Int(count - pastNotAfter)
                    counts[.expired, default: 0] += Int(pastNotAfter)
                }
            }
            return counts
        }
    }

    // MARK: Staged rotation

    public func confirmCredential(serial: SerialNumber, at: Date, audit: AuditEvent?) async throws(StoreError) -> Bool {
        try await write("confirm credential") { session in
            let changed = try await session.changes(
                "UPDATE credentials SET confirmed_at = ? WHERE serial = ? AND status = ? AND confirmed_at IS NULL",
                [
                    .integer(StoreTime.milliseconds(at)), .text(serial.rawValue),
                    .text(CredentialStatus.active.rawValue),
                ])
            guard changed > 0 else {
                guard try await session.exists("SELECT 1 FROM credentials WHERE serial = ?", [.text(serial.rawValue)])
                else {
                    throw StoreError(.notFound, "confirm credential: no such credential")
                }
                return false
            }
            try await self.append(audit, session)
            return true
        }
    }

    public func supersededDue(
        now: Date, confidence: TimeInterval, limit: Int
    ) async throws(StoreError) -> [Credential] {
        try await read("list superseded credentials due") { session in
            try await session.fetch(
                CredentialRecord.self,
                """
                SELECT c.* FROM credentials c LEFT JOIN credentials successor ON successor.serial = c.replaced_by
                WHERE c.status = ?
                    AND (c.overlap_deadline <= ? OR successor.confirmed_at <= ?)
                ORDER BY c.serial COLLATE "C" LIMIT ?
                """,
                [
                    .text(CredentialStatus.superseded.rawValue), .integer(StoreTime.milliseconds(now)),
                    .integer(RotationRules.milliseconds(now, minus: confidence)), .int(max(0, limit)),
                ]
            ).map { record throws(StoreError) in try record.model() }
        }
    }

    /// Serials per statement of ``revokeCredentials(_:reason:at:audit:)`` (far below the protocol's 65,535
    /// parameters).
    static let revokeBatch = 1000

    public func revokeCredentials(
        _ serials: [SerialNumber], reason: RevocationReason, at: Date, audit: AuditEvent?
    ) async throws(StoreError) -> Int {
        let operation = "revoke credentials"
        let distinct = Set(serials.map(\.rawValue)).sorted()
        return try await write(operation) { session in
            var changed = 0
            var start = 0
            while start < distinct.count {
                let batch = Array(distinct[start..<min(start + Self.revokeBatch, distinct.count)])
                start += batch.count
                let list = Array(repeating: "?", count: batch.count).joined(separator: ", ")
                let keys = batch.map(PostgresValue.text)
                let revoked = try await session.changes(
                    """
                    UPDATE credentials SET status = ?, revoked_at = ?, revocation_reason = ?
                    WHERE serial IN (\(list)) AND status <> ?
                    """,
                    [
                        .text(CredentialStatus.revoked.rawValue), .integer(StoreTime.milliseconds(at)),
                        .text(reason.rawValue),
                    ] + keys + [.text(CredentialStatus.revoked.rawValue)])
                changed += revoked
                // Fewer changed than listed: either already revoked, or unknown (which refuses the whole call).
                if revoked < batch.count {
                    let found = try await session.scalar(
                        Int64.self, "SELECT COUNT(*) FROM credentials WHERE serial IN (\(list))", keys) ?? 0
                    guard found == Int64(batch.count) else {
                        throw StoreError(.notFound, "\(operation): no such credential")
                    }
                }
            }
            if changed > 0 { try await self.append(audit, session) }
            return changed
        }
    }

    // MARK: Bulk revocation and rotation campaigns

    public func blastRadius(_ scope: CredentialScope, now: Date) async throws(StoreError) -> BlastRadius {
        let operation = "preview revocation"
        return try await snapshot(operation) { session in
            try await PostgresScope.requireExists(scope, session, operation)
            return try await PostgresScope.blastRadius(scope, now: now, session)
        }
    }

    public func revoke(
        _ scope: CredentialScope, reason: RevocationReason, at: Date, audit: AuditEvent
    ) async throws(StoreError) -> BlastRadius {
        let operation = "revoke scope"
        return try await write(operation) { session in
            try await PostgresScope.requireExists(scope, session, operation)
            let radius = try await PostgresScope.blastRadius(scope, now: at, session)
            let condition = PostgresScope.credentials(scope)
            let revocable = PostgresScope.revocable(scope, now: at)
            let atMillis = PostgresValue.integer(StoreTime.milliseconds(at))
            try await session.execute(
                """
                UPDATE credentials SET status = ?, revoked_at = ?, revocation_reason = ?
                WHERE \(condition.sql) AND \(revocable.sql)
                """,
                [.text(CredentialStatus.revoked.rawValue), atMillis, .text(reason.rawValue)]
                    + condition.arguments + revocable.arguments)
            if let devices = PostgresScope.devices(scope) {
                try await session.execute(
                    "UPDATE devices SET state = ? WHERE \(devices.sql) AND state NOT IN (?, ?)",
                    [.text(DeviceState.revoked.rawValue)] + devices.arguments
                        + [.text(DeviceState.revoked.rawValue), .text(DeviceState.decommissioned.rawValue)])
                try await session.execute(
                    """
                    UPDATE devices SET idevid_revoked_at = ?, idevid_revocation_reason = ?
                    WHERE \(devices.sql) AND idevid_serial IS NOT NULL AND idevid_revoked_at IS NULL
                    """,
                    [atMillis, .text(reason.rawValue)] + devices.arguments)
            }
            _ = try await self.append(audit, session)
            return radius
        }
    }

    public func markRotationDue(
        _ scope: CredentialScope, at: Date, audit: AuditEvent
    ) async throws(StoreError) -> Int {
        let operation = "mark rotation due"
        return try await write(operation) { session in
            try await PostgresScope.requireExists(scope, session, operation)
            let condition = PostgresScope.credentials(scope)
            let changed = try await session.changes(
                """
                UPDATE credentials SET rotation_due = 1
                WHERE \(condition.sql) AND kind = ? AND status = ? AND not_after > ? AND rotation_due = 0
                """,
                condition.arguments + [
                    .text(CredentialKind.ldevid.rawValue), .text(CredentialStatus.active.rawValue),
                    .integer(StoreTime.milliseconds(at)),
                ])
            _ = try await self.append(audit, session)
            return changed
        }
    }

    public func rotationCandidates(_ scope: CredentialScope, now: Date) async throws(StoreError) -> Int {
        let operation = "preview rotation"
        return try await snapshot(operation) { session in
            try await PostgresScope.requireExists(scope, session, operation)
            let condition = PostgresScope.credentials(scope)
            guard
                let row = try await session.rows(
                    """
                    SELECT COUNT(*) FROM credentials
                    WHERE \(condition.sql) AND kind = ? AND status = ? AND not_after > ? AND rotation_due = 0
                    """,
                    condition.arguments + [
                        .text(CredentialKind.ldevid.rawValue), .text(CredentialStatus.active.rawValue),
                        .integer(StoreTime.milliseconds(now)),
                    ]
                ).first
            else { return 0 }
            return Int(try row.decode(Int64.self))
        }
    }

    public func rotationProgress(
        _ scope: CredentialScope?, now: Date, unreachableAfter: TimeInterval
    ) async throws(StoreError) -> RotationProgress {
        let operation = "rotation progress"
        return try await snapshot(operation) { session in
            var condition = PostgresScope.Condition(sql: "1 = 1", arguments: [])
            if let scope {
                try await PostgresScope.requireExists(scope, session, operation)
                condition = PostgresScope.credentials(scope)
            }
            let seenSince = PostgresValue.integer(RotationRules.milliseconds(now, minus: unreachableAfter))
            let active = PostgresValue.text(CredentialStatus.active.rawValue)
            guard
                let row = try await session.rows(
                    """
                    SELECT COUNT(*),
                        COUNT(*) FILTER (WHERE status IN (?, ?) AND replaced_by IS NOT NULL),
                        COUNT(*) FILTER (WHERE status = ? AND d.last_seen >= ?),
                        COUNT(*) FILTER (WHERE status = ? AND (d.last_seen IS NULL OR d.last_seen < ?))
                    FROM credentials JOIN devices d ON d.id = credentials.device_id
                    WHERE rotation_due = 1 AND \(condition.sql)
                    """,
                    [
                        .text(CredentialStatus.superseded.rawValue), .text(CredentialStatus.revoked.rawValue),
                        active, seenSince, active, seenSince,
                    ] + condition.arguments
                ).first
            else { return RotationProgress() }
            let (due, rotated, pending, unreachable) = try row.decode((Int64, Int64, Int64, Int64).self)
            return RotationProgress(
                due: Int(due), rotated: Int(rotated), pending: Int(pending), unreachable: Int(unreachable))
        }
    }

    // MARK: CRL

    public func revokedCredentials(
        issuer: String?, notExpiredAt: Date, afterSerial: SerialNumber?, limit: Int
    ) async throws(StoreError) -> [Credential] {
        var sql = "SELECT * FROM credentials WHERE status = ? AND not_after > ?"
        var arguments: [PostgresValue] = [
            .text(CredentialStatus.revoked.rawValue), .integer(StoreTime.milliseconds(notExpiredAt)),
        ]
        if let issuer {
            sql += " AND issuer = ?"
            arguments.append(.text(issuer))
        }
        if let afterSerial {
            sql += " AND serial COLLATE \"C\" > ?"
            arguments.append(.text(afterSerial.rawValue))
        }
        sql += " ORDER BY serial COLLATE \"C\" LIMIT ?"
        arguments.append(.int(max(0, limit)))
        return try await read("list revoked credentials") { [sql, arguments] session in
            try await session.fetch(CredentialRecord.self, sql, arguments)
                .map { record throws(StoreError) in try record.model() }
        }
    }

    public func revokedIDevIDs(afterSerial: SerialNumber?, limit: Int) async throws(StoreError) -> [Device] {
        var sql = "SELECT * FROM devices WHERE idevid_serial IS NOT NULL AND idevid_revoked_at IS NOT NULL"
        var arguments: [PostgresValue] = []
        if let afterSerial {
            sql += " AND idevid_serial COLLATE \"C\" > ?"
            arguments.append(.text(afterSerial.rawValue))
        }
        sql += " ORDER BY idevid_serial COLLATE \"C\" LIMIT ?"
        arguments.append(.int(max(0, limit)))
        return try await read("list revoked IDevIDs") { [sql, arguments] session in
            try await session.fetch(DeviceRecord.self, sql, arguments)
                .map { record throws(StoreError) in try record.model() }
        }
    }
}

/// A ``CredentialScope`` as PostgreSQL SQL: the conditions of ``SQLiteScope``, with ``PostgresValue`` arguments.
enum PostgresScope {
    /// A `WHERE` fragment and its arguments.
    struct Condition {
        var sql: String
        var arguments: [PostgresValue]
    }

    /// `.notFound` if the device, lot, tenant, claim token or credential the scope names does not exist.
    static func requireExists(_ scope: CredentialScope, _ session: PostgresSession, _ operation: String) async throws {
        let exists: Bool
        switch scope {
        case .device(let id):
            exists = try await session.exists("SELECT 1 FROM devices WHERE id = ?", [.text(id.rawValue)])
        case .lot(let id):
            exists = try await session.exists("SELECT 1 FROM lots WHERE id = ?", [.text(id.rawValue)])
        case .tenant(let id):
            exists = try await session.exists("SELECT 1 FROM tenants WHERE id = ?", [.text(id.rawValue)])
        case .token(let id):
            exists = try await session.exists("SELECT 1 FROM claim_tokens WHERE id = ?", [.text(id)])
        case .serial(let serial):
            exists = try await session.exists("SELECT 1 FROM credentials WHERE serial = ?", [.text(serial.rawValue)])
        case .expiringBefore, .issuer:
            exists = true
        }
        guard exists else { throw RotationRules.missing(scope, operation) }
    }

    /// The scope's credentials, over the unaliased `credentials` table (valid in `UPDATE credentials` too).
    static func credentials(_ scope: CredentialScope) -> Condition {
        switch scope {
        case .device(let id):
            Condition(sql: "credentials.device_id = ?", arguments: [.text(id.rawValue)])
        case .lot(let id):
            Condition(
                sql: "credentials.device_id IN (SELECT id FROM devices WHERE lot_id = ?)",
                arguments: [.text(id.rawValue)])
        case .tenant(let id):
            Condition(
                sql: "credentials.device_id IN (SELECT id FROM devices WHERE tenant_id = ?)",
                arguments: [.text(id.rawValue)])
        case .token(let id):
            Condition(
                sql: "credentials.device_id IN (SELECT id FROM devices WHERE enrolled_with_token = ?)",
                arguments: [.text(id)])
        case .serial(let serial):
            Condition(sql: "credentials.serial = ?", arguments: [.text(serial.rawValue)])
        case .expiringBefore(let date):
            Condition(
                sql: "credentials.kind = ? AND credentials.not_after < ?",
                arguments: [.text(CredentialKind.ldevid.rawValue), .integer(StoreTime.milliseconds(date))])
        case .issuer(let subject):
            Condition(
                sql: "credentials.issuer = ? AND credentials.kind = ?",
                arguments: [.text(subject), .text(CredentialKind.ldevid.rawValue)])
        }
    }

    /// The scope's devices over the unaliased `devices` table, for device, lot, tenant and token scopes.
    static func devices(_ scope: CredentialScope) -> Condition? {
        switch scope {
        case .device(let id): Condition(sql: "devices.id = ?", arguments: [.text(id.rawValue)])
        case .lot(let id): Condition(sql: "devices.lot_id = ?", arguments: [.text(id.rawValue)])
        case .tenant(let id): Condition(sql: "devices.tenant_id = ?", arguments: [.text(id.rawValue)])
        case .token(let id): Condition(sql: "devices.enrolled_with_token = ?", arguments: [.text(id)])
        case .serial, .expiringBefore, .issuer: nil
        }
    }

    /// Which of the scope's credentials revoking it at `now` revokes (``RotationRules/isRevocable(_:in:now:)``).
    static func revocable(_ scope: CredentialScope, now: Date) -> Condition {
        if case .expiringBefore = scope {
            return Condition(
                sql: "credentials.status = ? AND credentials.not_after > ?",
                arguments: [.text(CredentialStatus.active.rawValue), .integer(StoreTime.milliseconds(now))])
        }
        return Condition(
            sql: "credentials.status <> ? AND credentials.not_after > ?",
            arguments: [.text(CredentialStatus.revoked.rawValue), .integer(StoreTime.milliseconds(now))])
    }

    /// What revoking `scope` at `now` changes, counted per tenant and lot in SQL, as ``SQLiteScope`` does
    /// (`SUM` of the per-device counts is NUMERIC here, hence the cast).
    static func blastRadius(_ scope: CredentialScope, now: Date, _ session: PostgresSession) async throws -> BlastRadius {
        let revocable = revocable(scope, now: now)
        let sql: String
        let arguments: [PostgresValue]
        if let devices = devices(scope) {
            sql = """
                SELECT tenant_id, lot_id, COUNT(*) FILTER (WHERE moves = 1 OR revoked > 0), SUM(revoked)::BIGINT
                FROM (
                    SELECT devices.tenant_id, devices.lot_id,
                        CASE WHEN devices.state IN (?, ?) THEN 0 ELSE 1 END AS moves,
                        (SELECT COUNT(*) FROM credentials
                            WHERE credentials.device_id = devices.id AND \(revocable.sql)) AS revoked
                    FROM devices WHERE \(devices.sql)
                ) AS per_device
                GROUP BY tenant_id, lot_id
                """
            arguments =
                [.text(DeviceState.revoked.rawValue), .text(DeviceState.decommissioned.rawValue)]
                + revocable.arguments + devices.arguments
        } else {
            let credentials = credentials(scope)
            sql = """
                SELECT d.tenant_id, d.lot_id, COUNT(DISTINCT d.id), COUNT(*)
                FROM credentials JOIN devices d ON d.id = credentials.device_id
                WHERE \(credentials.sql) AND \(revocable.sql)
                GROUP BY d.tenant_id, d.lot_id
                """
            arguments = credentials.arguments + revocable.arguments
        }
        var radius = BlastRadius()
        for row in try await session.rows(sql, arguments) {
            let (tenantRaw, lotRaw, devices, credentials) = try row.decode((String, String?, Int64, Int64).self)
            let tenant = try SQLiteColumn.decode(TenantID.init(rawValue:), tenantRaw, "devices.tenant_id")
            let lot = try lotRaw.map { value throws(StoreError) in
                try SQLiteColumn.decode(LotID.init(rawValue:), value, "devices.lot_id")
            }
            radius.add(tenant: tenant, lot: lot, devices: Int(devices), credentials: Int(credentials))
        }
        return radius
    }
}
