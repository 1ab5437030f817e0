public import DevIDCore
public import Foundation
import GRDB

/// Staged rotation, bulk revocation, rotation campaigns, CRL pages and status counts, in portable SQL.
///
/// A scope becomes a condition on the unaliased `credentials` table (see ``SQLiteScope``), so one text serves
/// the `SELECT`s that join `devices d` and the `UPDATE`s. Every refusal is checked before the first change of
/// its transaction, and every write is one `IMMEDIATE` transaction with its audit event.
extension SQLiteStore {
    public func credentialCounts(now: Date) async throws(StoreError) -> [CredentialStatus: Int] {
        // Grouped by the stored status, in order of the (status, not_after) index, with the expired ones of each
        // status summed alongside: half the time of grouping by a CASE over every row (scraped by GET /metrics).
        try await read("count credentials") { db in
            var counts = Dictionary(uniqueKeysWithValues: CredentialStatus.allCases.map { ($0, 0) })
            let rows = try Row.fetchCursor(
                db, sql: "SELECT status, COUNT(*), SUM(not_after <= ?) FROM credentials GROUP BY status",
                arguments: [StoreTime.milliseconds(now)])
            while let row = try rows.next() {
                let status = try SQLiteColumn.decode(
                    CredentialStatus.init(rawValue:), try row.decode(atIndex: 0), "credentials.status")
                let count: Int = try row.decode(atIndex: 1)
                let pastNotAfter: Int = try row.decode(atIndex: 2)
                switch status {
                case .revoked, .expired:
                    counts[status, default: 0] += count
                case .active, .superseded:
                    counts[status, default: 0] += count - pastNotAfter
                    counts[.expired, default: 0] += pastNotAfter
                }
            }
            return counts
        }
    }

    // MARK: Staged rotation

    public func confirmCredential(serial: SerialNumber, at: Date, audit: AuditEvent?) async throws(StoreError) -> Bool {
        try await write("confirm credential") { db in
            let changed = try CredentialRecord.all()
                .filter { $0.serial == serial.rawValue }
                .filter { $0.status == CredentialStatus.active.rawValue }
                .filter { $0.confirmedAt == nil }
                .updateAll(db, CredentialRecord.Columns.confirmedAt.set(to: StoreTime.milliseconds(at)))
            guard changed > 0 else {
                guard try CredentialRecord.exists(db, key: serial.rawValue) else {
                    throw StoreError(.notFound, "confirm credential: no such credential")
                }
                return false
            }
            try Self.append(audit, db)
            return true
        }
    }

    public func supersededDue(
        now: Date, confidence: TimeInterval, limit: Int
    ) async throws(StoreError) -> [Credential] {
        try await read("list superseded credentials due") { db in
            try CredentialRecord.fetchAll(
                db,
                sql: """
                    SELECT c.* FROM credentials c LEFT JOIN credentials successor ON successor.serial = c.replaced_by
                    WHERE c.status = ?
                        AND (c.overlap_deadline <= ? OR successor.confirmed_at <= ?)
                    ORDER BY c.serial LIMIT ?
                    """,
                arguments: [
                    CredentialStatus.superseded.rawValue, StoreTime.milliseconds(now),
                    RotationRules.milliseconds(now, minus: confidence), max(0, limit),
                ]
            ).map { record throws(StoreError) in try record.model() }
        }
    }

    public func revokeCredentials(
        _ serials: [SerialNumber], reason: RevocationReason, at: Date, audit: AuditEvent?
    ) async throws(StoreError) -> Int {
        let operation = "revoke credentials"
        return try await write(operation) { db in
            let revoke = try db.cachedStatement(
                sql: """
                    UPDATE credentials SET status = ?, revoked_at = ?, revocation_reason = ?
                    WHERE serial = ? AND status <> ?
                    """)
            let exists = try db.cachedStatement(sql: "SELECT 1 FROM credentials WHERE serial = ?")
            var changed = 0
            for serial in Set(serials) {
                try revoke.execute(arguments: [
                    CredentialStatus.revoked.rawValue, StoreTime.milliseconds(at), reason.rawValue, serial.rawValue,
                    CredentialStatus.revoked.rawValue,
                ])
                if db.changesCount > 0 {
                    changed += 1
                } else if try Row.fetchOne(exists, arguments: [serial.rawValue]) == nil {
                    throw StoreError(.notFound, "\(operation): no such credential")
                }
            }
            if changed > 0 { try Self.append(audit, db) }
            return changed
        }
    }

    // MARK: Bulk revocation and rotation campaigns

    public func blastRadius(_ scope: CredentialScope, now: Date) async throws(StoreError) -> BlastRadius {
        let operation = "preview revocation"
        return try await read(operation) { db in
            try SQLiteScope.requireExists(scope, db, operation)
            return try SQLiteScope.blastRadius(scope, now: now, db)
        }
    }

    public func revoke(
        _ scope: CredentialScope, reason: RevocationReason, at: Date, audit: AuditEvent
    ) async throws(StoreError) -> BlastRadius {
        let operation = "revoke scope"
        return try await write(operation) { db in
            try SQLiteScope.requireExists(scope, db, operation)
            let radius = try SQLiteScope.blastRadius(scope, now: at, db)
            let condition = SQLiteScope.credentials(scope)
            let revocable = SQLiteScope.revocable(scope, now: at)
            try db.execute(
                sql: """
                    UPDATE credentials SET status = ?, revoked_at = ?, revocation_reason = ?
                    WHERE \(condition.sql) AND \(revocable.sql)
                    """,
                arguments: [CredentialStatus.revoked.rawValue, StoreTime.milliseconds(at), reason.rawValue]
                    + condition.arguments + revocable.arguments)
            if let devices = SQLiteScope.devices(scope) {
                try db.execute(
                    sql: "UPDATE devices SET state = ? WHERE \(devices.sql) AND state NOT IN (?, ?)",
                    arguments: [DeviceState.revoked.rawValue] + devices.arguments
                        + [DeviceState.revoked.rawValue, DeviceState.decommissioned.rawValue])
                try db.execute(
                    sql: """
                        UPDATE devices SET idevid_revoked_at = ?, idevid_revocation_reason = ?
                        WHERE \(devices.sql) AND idevid_serial IS NOT NULL AND idevid_revoked_at IS NULL
                        """,
                    arguments: [StoreTime.milliseconds(at), reason.rawValue] + devices.arguments)
            }
            _ = try Self.append(audit, db)
            return radius
        }
    }

    public func markRotationDue(
        _ scope: CredentialScope, at: Date, audit: AuditEvent
    ) async throws(StoreError) -> Int {
        let operation = "mark rotation due"
        return try await write(operation) { db in
            try SQLiteScope.requireExists(scope, db, operation)
            let condition = SQLiteScope.credentials(scope)
            try db.execute(
                sql: """
                    UPDATE credentials SET rotation_due = 1
                    WHERE \(condition.sql) AND kind = ? AND status = ? AND not_after > ? AND rotation_due = 0
                    """,
                arguments: condition.arguments
                    + [CredentialKind.ldevid.rawValue, CredentialStatus.active.rawValue, StoreTime.milliseconds(at)])
            let changed = db.changesCount
            _ = try Self.append(audit, db)
            return changed
        }
    }

    public func rotationCandidates(_ scope: CredentialScope, now: Date) async throws(StoreError) -> Int {
        let operation = "preview rotation"
        return try await read(operation) { db in
            try SQLiteScope.requireExists(scope, db, operation)
            let condition = SQLiteScope.credentials(scope)
            return try Int.fetchOne(
                db,
                sql: """
                    SELECT COUNT(*) FROM credentials
                    WHERE \(condition.sql) AND kind = ? AND status = ? AND not_after > ? AND rotation_due = 0
                    """,
                arguments: condition.arguments
                    + [CredentialKind.ldevid.rawValue, CredentialStatus.active.rawValue, StoreTime.milliseconds(now)]
            ) ?? 0
        }
    }

    public func rotationProgress(
        _ scope: CredentialScope?, now: Date, unreachableAfter: TimeInterval
    ) async throws(StoreError) -> RotationProgress {
        let operation = "rotation progress"
        return try await read(operation) { db in
            var condition = SQLiteScope.Condition(sql: "1 = 1", arguments: [])
            if let scope {
                try SQLiteScope.requireExists(scope, db, operation)
                condition = SQLiteScope.credentials(scope)
            }
            let seenSince = RotationRules.milliseconds(now, minus: unreachableAfter)
            let active = CredentialStatus.active.rawValue
            guard
                let row = try Row.fetchOne(
                    db,
                    sql: """
                        SELECT COUNT(*),
                            COUNT(CASE WHEN status IN (?, ?) AND replaced_by IS NOT NULL THEN 1 END),
                            COUNT(CASE WHEN status = ? AND d.last_seen >= ? THEN 1 END),
                            COUNT(CASE WHEN status = ? AND (d.last_seen IS NULL OR d.last_seen < ?) THEN 1 END)
                        FROM credentials JOIN devices d ON d.id = credentials.device_id
                        WHERE rotation_due = 1 AND \(condition.sql)
                        """,
                    arguments: [
                        CredentialStatus.superseded.rawValue, CredentialStatus.revoked.rawValue, active, seenSince,
                        active, seenSince,
                    ] + condition.arguments)
            else { return RotationProgress() }
            return RotationProgress(
                due: try row.decode(atIndex: 0), rotated: try row.decode(atIndex: 1),
                pending: try row.decode(atIndex: 2), unreachable: try row.decode(atIndex: 3))
        }
    }

    // MARK: CRL

    public func revokedCredentials(
        issuer: String?, notExpiredAt: Date, afterSerial: SerialNumber?, limit: Int
    ) async throws(StoreError) -> [Credential] {
        try await read("list revoked credentials") { db in
            // `+not_after` keeps the planner off `(status, not_after)`: that index would need a sort of every
            // unexpired revoked row for the first page. `(status, issuer, serial)` or `(status, serial)` walks
            // the rows in page order instead and stops after `limit`.
            var sql = "SELECT * FROM credentials WHERE status = ? AND +not_after > ?"
            var arguments: StatementArguments = [
                CredentialStatus.revoked.rawValue, StoreTime.milliseconds(notExpiredAt),
            ]
            if let issuer {
                sql += " AND issuer = ?"
                arguments += [issuer]
            }
            if let afterSerial {
                sql += " AND serial > ?"
                arguments += [afterSerial.rawValue]
            }
            sql += " ORDER BY serial LIMIT ?"
            arguments += [max(0, limit)]
            return try CredentialRecord.fetchAll(db, sql: sql, arguments: arguments)
                .map { record throws(StoreError) in try record.model() }
        }
    }

    public func revokedIDevIDs(afterSerial: SerialNumber?, limit: Int) async throws(StoreError) -> [Device] {
        try await read("list revoked IDevIDs") { db in
            // Walks the unique index on idevid_serial in page order; `+` keeps the planner on it.
            var sql = "SELECT * FROM devices WHERE idevid_serial IS NOT NULL AND +idevid_revoked_at IS NOT NULL"
            var arguments: StatementArguments = []
            if let afterSerial {
                sql += " AND idevid_serial > ?"
                arguments += [afterSerial.rawValue]
            }
            sql += " ORDER BY idevid_serial LIMIT ?"
            arguments += [max(0, limit)]
            return try DeviceRecord.fetchAll(db, sql: sql, arguments: arguments)
                .map { record throws(StoreError) in try record.model() }
        }
    }
}

/// A ``CredentialScope`` as SQL.
enum SQLiteScope {
    /// A `WHERE` fragment and its arguments.
    struct Condition {
        var sql: String
        var arguments: StatementArguments
    }

    /// `.notFound` if the device, lot, tenant or credential the scope names does not exist.
    static func requireExists(_ scope: CredentialScope, _ db: Database, _ operation: String) throws {
        let exists =
            switch scope {
            case .device(let id): try DeviceRecord.exists(db, key: id.rawValue)
            case .lot(let id): try LotRecord.exists(db, key: id.rawValue)
            case .tenant(let id): try TenantRecord.exists(db, key: id.rawValue)
            case .token(let id): try ClaimTokenRecord.exists(db, key: id)
            case .serial(let serial): try CredentialRecord.exists(db, key: serial.rawValue)
            case .expiringBefore, .issuer: true
            }
        guard exists else { throw RotationRules.missing(scope, operation) }
    }

    /// The scope's credentials, over the unaliased `credentials` table (valid in `UPDATE credentials` too).
    static func credentials(_ scope: CredentialScope) -> Condition {
        switch scope {
        case .device(let id):
            Condition(sql: "credentials.device_id = ?", arguments: [id.rawValue])
        case .lot(let id):
            Condition(
                sql: "credentials.device_id IN (SELECT id FROM devices WHERE lot_id = ?)", arguments: [id.rawValue])
        case .tenant(let id):
            Condition(
                sql: "credentials.device_id IN (SELECT id FROM devices WHERE tenant_id = ?)",
                arguments: [id.rawValue])
        case .token(let id):
            Condition(
                sql: "credentials.device_id IN (SELECT id FROM devices WHERE enrolled_with_token = ?)",
                arguments: [id])
        case .serial(let serial):
            Condition(sql: "credentials.serial = ?", arguments: [serial.rawValue])
        case .expiringBefore(let date):
            Condition(
                sql: "credentials.kind = ? AND credentials.not_after < ?",
                arguments: [CredentialKind.ldevid.rawValue, StoreTime.milliseconds(date)])
        case .issuer(let subject):
            Condition(
                sql: "credentials.issuer = ? AND credentials.kind = ?",
                arguments: [subject, CredentialKind.ldevid.rawValue])
        }
    }

    /// The scope's devices over the unaliased `devices` table, for device, lot and tenant scopes.
    static func devices(_ scope: CredentialScope) -> Condition? {
        switch scope {
        case .device(let id): Condition(sql: "devices.id = ?", arguments: [id.rawValue])
        case .lot(let id): Condition(sql: "devices.lot_id = ?", arguments: [id.rawValue])
        case .tenant(let id): Condition(sql: "devices.tenant_id = ?", arguments: [id.rawValue])
        case .token(let id): Condition(sql: "devices.enrolled_with_token = ?", arguments: [id])
        case .serial, .expiringBefore, .issuer: nil
        }
    }

    /// Which of the scope's credentials revoking it at `now` revokes (``RotationRules/isRevocable(_:in:now:)``).
    static func revocable(_ scope: CredentialScope, now: Date) -> Condition {
        if case .expiringBefore = scope {
            return Condition(
                sql: "credentials.status = ? AND credentials.not_after > ?",
                arguments: [CredentialStatus.active.rawValue, StoreTime.milliseconds(now)])
        }
        return Condition(
            sql: "credentials.status <> ? AND credentials.not_after > ?",
            arguments: [CredentialStatus.revoked.rawValue, StoreTime.milliseconds(now)])
    }

    /// What revoking `scope` at `now` changes, counted per tenant and lot in SQL (a tenant of 100,000 devices
    /// comes back as a few rows). Device scopes walk the devices and count each one's revocable credentials;
    /// credential scopes walk the credentials and count their distinct devices.
    static func blastRadius(_ scope: CredentialScope, now: Date, _ db: Database) throws -> BlastRadius {
        let revocable = revocable(scope, now: now)
        let sql: String
        let arguments: StatementArguments
        if let devices = devices(scope) {
            sql = """
                SELECT tenant_id, lot_id, COUNT(CASE WHEN moves = 1 OR revoked > 0 THEN 1 END), SUM(revoked)
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
                [DeviceState.revoked.rawValue, DeviceState.decommissioned.rawValue] + revocable.arguments
                + devices.arguments
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
        let rows = try Row.fetchCursor(db, sql: sql, arguments: arguments)
        while let row = try rows.next() {
            let tenant = try SQLiteColumn.decode(
                TenantID.init(rawValue:), try row.decode(atIndex: 0), "devices.tenant_id")
            let lot = try (try row.decode(atIndex: 1) as String?).map { value throws(StoreError) in
                try SQLiteColumn.decode(LotID.init(rawValue:), value, "devices.lot_id")
            }
            radius.add(
                tenant: tenant, lot: lot, devices: try row.decode(atIndex: 2), credentials: try row.decode(atIndex: 3))
        }
        return radius
    }
}
