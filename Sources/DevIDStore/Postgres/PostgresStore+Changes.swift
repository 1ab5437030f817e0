public import DevIDCore
import Foundation
import PostgresNIO

extension StoreError {
    /// Maps whatever a postgres-nio call threw to a `StoreError` with a one-line reason that names the operation
    /// and, for constraint violations, the constraint (a schema name), but never SQL, arguments or row contents:
    /// never `String(reflecting:)` of a `PSQLError`, which shows the query with its arguments.
    static func postgres(_ error: any Error, _ operation: String) -> StoreError {
        switch error {
        case let error as StoreError:
            return error
        case let error as PSQLError:
            return postgres(error, operation)
        case is CancellationError:
            return StoreError(.unavailable, "\(operation): cancelled")
        case is DecodingError, is PostgresDecodingError:
            return StoreError(.corrupt, "\(operation): unreadable row")
        default:
            return StoreError(.unavailable, "\(operation): database error (\(type(of: error)))")
        }
    }

    private static func postgres(_ error: PSQLError, _ operation: String) -> StoreError {
        guard error.code == .server, let info = error.serverInfo, let state = info[.sqlState] else {
            switch error.code {
            case .queryCancelled:
                return StoreError(.unavailable, "\(operation): cancelled")
            case .poolClosed, .clientClosedConnection:
                return StoreError(.unavailable, "\(operation): the registry is closed")
            default:
                return StoreError(.unavailable, "\(operation): the registry's database is unreachable (\(error.code))")
            }
        }
        let constraint = info[.constraintName].flatMap(schemaName)
        switch state {
        case "23505":
            return StoreError(.duplicate, "\(operation): \(constraint ?? "a unique key") already exists")
        case "23503":
            return StoreError(.notFound, "\(operation): a referenced row does not exist")
        case "23514", "23502":
            return StoreError(.unavailable, "\(operation): \(constraint ?? "a") constraint failed")
        case "53100":
            return StoreError(.storageFull, "\(operation): the database's disk is full (SQLSTATE 53100)")
        case "40001", "40P01", "55P03":
            return StoreError(.unavailable, "\(operation): database is busy (SQLSTATE \(state))")
        case "57P01", "57P02", "57P03", "08000", "08003", "08006":
            return StoreError(.unavailable, "\(operation): the registry's database is unavailable (SQLSTATE \(state))")
        case "28P01", "28000":
            return StoreError(.unavailable, "\(operation): the registry refused the login (SQLSTATE \(state))")
        case "3D000":
            return StoreError(.unavailable, "\(operation): the registry's database does not exist (SQLSTATE \(state))")
        default:
            return StoreError(.unavailable, "\(operation): PostgreSQL error (SQLSTATE \(schemaName(state) ?? "?"))")
        }
    }

    /// A constraint or state name as the server gave it, if it is one (letters, digits, `_`); anything else is dropped.
    private static func schemaName(_ name: String) -> String? {
        guard !name.isEmpty, name.count <= 100,
            name.unicodeScalars.allSatisfy({ $0.isASCII && (CharacterSet.alphanumerics.contains($0) || $0 == "_") })
        else { return nil }
        return name
    }
}

extension PostgresStore {
    // MARK: Change stream

    /// The changes after `sequence`, inside the caller's transaction or read.
    static func changes(_ session: PostgresSession, after sequence: Int64, limit: Int) async throws -> [RegistryChange] {
        let rows = try await session.rows(
            """
            SELECT sequence, kind, subject, device_id, tenant_id, detail FROM registry_changes
            WHERE sequence > ? ORDER BY sequence LIMIT ?
            """, [.integer(sequence), .int(min(limit, Int(Int64.max)))])
        return try rows.map { row in
            let (sequence, kindText, subject, device, tenant, detail) = try row.decode(
                (Int64, String, String, String?, String?, String).self)
            // A kind a newer DevID records: reload everything, as for changes missed.
            guard let kind = RegistryChange.Kind(rawValue: kindText), kind != .missed else {
                return RegistryChange(sequence: sequence, kind: .missed, subject: kindText, detail: "unknown kind")
            }
            return RegistryChange(
                sequence: sequence, kind: kind, subject: subject, device: device.flatMap(DeviceID.init(rawValue:)),
                tenant: tenant.flatMap(TenantID.init(rawValue:)), detail: detail)
        }
    }

    /// The last sequence number given out (the counter: right even when pruning emptied the table).
    static func latestChange(_ session: PostgresSession) async throws -> Int64 {
        try await session.scalar(Int64.self, "SELECT last FROM registry_change_counter WHERE only_row = 1") ?? 0
    }

    public func changes(after sequence: Int64, limit: Int) async throws(StoreError) -> [RegistryChange] {
        try await read("read registry changes") { session in
            try await Self.changes(session, after: sequence, limit: max(0, limit))
        }
    }

    public func pruneChanges(keepingLatest: Int) async throws(StoreError) -> Int {
        try await write("prune registry changes") { session in
            let latest = try await Self.latestChange(session)
            return try await session.changes(
                "DELETE FROM registry_changes WHERE sequence <= ?", [.integer(latest - Int64(max(0, keepingLatest)))])
        }
    }

    // MARK: CRL numbers

    public func nextCRLNumber(atLeast minimum: UInt64) async throws(StoreError) -> UInt64 {
        let floor = Int64(clamping: minimum)
        let next = try await write("allocate a CRL number") { session in
            try await session.scalar(
                Int64.self, "UPDATE crl_numbers SET last = GREATEST(last, ?) + 1 WHERE only_row = 1 RETURNING last",
                [.integer(floor)]) ?? 0
        }
        return UInt64(max(0, next))
    }

    @discardableResult
    public func storeCRLs(_ crls: [StoredCRL]) async throws(StoreError) -> Bool {
        let number = Int64(clamping: crls.map(\.number).max() ?? 0)
        return try await write("store CRLs") { session in
            if let stored = try await session.scalar(Int64.self, "SELECT max(number) FROM stored_crls"), stored > number {
                return false
            }
            try await session.execute("DELETE FROM stored_crls")
            for crl in crls {
                try await session.execute(
                    "INSERT INTO stored_crls (name, ca_name, url, number, der, withheld) VALUES (?, ?, ?, ?, ?, ?)",
                    [
                        .text(crl.name), .text(crl.caName), .text(crl.url), .integer(Int64(clamping: crl.number)),
                        .bytes(Data(crl.der)), .optional(crl.withheld),
                    ])
            }
            try await session.execute(
                "SELECT devid_record_change('crl', 'all', NULL, NULL, ?)", [.text(String(number))])
            return true
        }
    }

    public func storedCRLs() async throws(StoreError) -> [StoredCRL] {
        try await read("read stored CRLs") { session in
            try await session.rows(
                "SELECT name, ca_name, url, number, der, withheld FROM stored_crls ORDER BY name"
            ).map { row in
                let (name, caName, url, number, der, withheld) = try row.decode(
                    (String, String, String, Int64, Data, String?).self)
                return StoredCRL(
                    name: name, caName: caName, url: url, number: UInt64(max(0, number)), der: Array(der),
                    withheld: withheld)
            }
        }
    }

    // MARK: Settings

    public func settings() async throws(StoreError) -> [String: String] {
        try await read("read settings") { session in
            Dictionary(
                try await session.rows("SELECT key, value FROM settings").map { try $0.decode((String, String).self) },
                uniquingKeysWith: { $1 })
        }
    }

    public func updateSettings(_ changes: [String: String?], audit: AuditEvent?) async throws(StoreError) {
        try await write("update settings") { session in
            for (key, value) in changes.sorted(by: { $0.key < $1.key }) {
                if let value {
                    try await session.execute(
                        "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                        [.text(key), .text(value)])
                } else {
                    try await session.execute("DELETE FROM settings WHERE key = ?", [.text(key)])
                }
            }
            try await self.append(audit, session)
        }
    }

    // MARK: Audit

    @discardableResult
    public func appendAudit(_ event: AuditEvent) async throws(StoreError) -> AuditEvent {
        try await write("append audit event") { session in
            try await self.append(event, session)
        }
    }

    public func auditEntries(_ filter: AuditFilter) async throws(StoreError) -> [AuditEntry] {
        var conditions: [String] = []
        var arguments: [PostgresValue] = []
        if let action = filter.action {
            conditions.append("action = ?")
            arguments.append(.text(action))
        }
        if let device = filter.device {
            conditions.append("device_id = ?")
            arguments.append(.text(device.rawValue))
        }
        if let outcome = filter.outcome {
            conditions.append("outcome = ?")
            arguments.append(.text(outcome.rawValue))
        }
        if let after = filter.afterSequence {
            conditions.append("sequence > ?")
            arguments.append(.integer(after))
        }
        if let actor = filter.actor {
            conditions.append("actor = ?")
            arguments.append(.text(actor))
        }
        if let tenants = filter.tenants {
            if tenants.isEmpty {
                conditions.append("FALSE")
            } else {
                conditions.append("tenant_id IN (\(Array(repeating: "?", count: tenants.count).joined(separator: ", ")))")
                arguments += tenants.map { .text($0.rawValue) }
            }
        }
        let sql = "SELECT * FROM audit_events"
            + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
            + (filter.oldestFirst ? " ORDER BY sequence" : " ORDER BY sequence DESC") + " LIMIT ?"
        arguments.append(.int(max(0, filter.limit)))
        return try await read("list audit events") { [arguments] session in
            try await session.fetch(AuditEventRecord.self, sql, arguments).map(\.entry)
        }
    }

    public func auditChainReport(anchor: AuditAnchor?) async throws(StoreError) -> AuditChainReport {
        let key = auditKey
        return try await snapshot("verify audit chain") { session in
            var verifier = AuditChain.Verifier(key: key, anchor: anchor)
            // From the lowest sequence there is: a row written at 0 or below by someone with write access to the
            // database is checked (and refused) like any other, as SQLite's check reads every row.
            var after = Int64.min
            // Pages in sequence order, so a long trail is never held in memory at once.
            while true {
                let page = try await session.fetch(
                    AuditEventRecord.self, "SELECT * FROM audit_events WHERE sequence > ? ORDER BY sequence LIMIT 5000",
                    [.integer(after)])
                for record in page {
                    guard verifier.accept(record.entry) else { return verifier.finish() }
                }
                guard let last = page.last, page.count == 5000 else { break }
                after = last.sequence
            }
            return verifier.finish()
        }
    }
}

extension AuditEventRecord {
    /// The row as stored (PostgreSQL's columns are typed: nothing to re-read).
    var entry: AuditEntry {
        AuditEntry(
            sequence: sequence, timeMillis: occurredAt, actor: actor, action: action, outcome: outcome, reason: reason,
            tenant: tenantID, device: deviceID, serial: serial, previousHash: previousHash, hash: hash)
    }
}
