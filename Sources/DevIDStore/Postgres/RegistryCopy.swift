public import Foundation
import GRDB
public import Logging
import PostgresNIO

/// Moves an installation from its SQLite registry to PostgreSQL (`devid registry copy`): every row of every table,
/// in one transaction, then verified row by row and by the audit chain.
public enum RegistryCopy {
    /// What was copied and checked.
    public struct Report: Sendable, Codable, Hashable {
        public struct Table: Sendable, Codable, Hashable {
            public var name: String
            public var rows: Int
        }
        public var tables: [Table]
        /// The audit chain as verified on the copy (with the same key): its length and last hash.
        public var auditEntries: Int64
        public var auditHeadHash: String?
    }

    /// The tables in the order their foreign keys need, with each one's primary key (the order rows are compared in).
    /// The change stream's history (`registry_changes`) is not copied: servers on the copy start after it, as on a
    /// new registry.
    static let tables: [Table] = [
        Table("tenants", "id"), Table("lots", "id"), Table("devices", "id"), Table("credentials", "serial"),
        Table("claim_tokens", "id"), Table("admin_tokens", "id"), Table("service_certificates", "serial"),
        Table("issuing_cas", integer: "id"), Table("settings", "key"),
        Table("health_counts", "metric", "hour", "tenant_id", "first", "second", integers: ["hour"]),
        Table("stored_crls", "name"),
        Table("audit_events", integer: "sequence"),
    ]

    struct Table {
        let name: String
        /// The key in SQLite's (binary) order, and the same order in PostgreSQL (text columns `COLLATE "C"`).
        let sqliteOrder: String
        let postgresOrder: String

        init(_ name: String, _ key: String...) { self.init(name, key, integers: []) }
        init(_ name: String, integer key: String) { self.init(name, [key], integers: [key]) }
        init(_ name: String, _ key: String..., integers: Set<String>) { self.init(name, key, integers: integers) }

        private init(_ name: String, _ key: [String], integers: Set<String>) {
            self.name = name
            sqliteOrder = key.joined(separator: ", ")
            postgresOrder = key.map { integers.contains($0) ? $0 : "\($0) COLLATE \"C\"" }.joined(separator: ", ")
        }
    }

    /// Copies the SQLite registry at `sqlitePath` (opened read-only: stop its server first) into the PostgreSQL
    /// registry at `location`, which must be empty (it is migrated first), and verifies the copy: every row equal, and
    /// the audit chain intact with `auditKey` and ending at the same hash as the source's. Refused, changing nothing,
    /// if the source needs a migration this DevID would run (migrate it first) or the target holds any row.
    public static func copy(
        from sqlitePath: String, to location: PostgresStore.Location, auditKey: AuditKey?,
        logger: Logger = Logger(label: "devid.registry.copy")
    ) async throws(StoreError) -> Report {
        let status = try SQLiteStore.migrationStatus(path: sqlitePath)
        guard status.pending.isEmpty, status.unknown.isEmpty else {
            throw StoreError(
                .conflict,
                "the SQLite registry is not at this DevID's schema (pending: \(status.pending.count), "
                    + "unknown: \(status.unknown.count)): run devid registry migrate on it first")
        }
        var configuration = Configuration()
        configuration.readonly = true
        configuration.publicStatementArguments = false
        let source: DatabaseQueue
        do {
            source = try DatabaseQueue(path: sqlitePath, configuration: configuration)
        } catch {
            throw .sqlite(error, "open the SQLite registry")
        }
        defer { try? source.close() }

        let target = try await PostgresStore.open(location, auditKey: auditKey, logger: logger)
        defer { target.close() }
        var report = Report(tables: [], auditEntries: 0, auditHeadHash: nil)
        try await target.write("copy the registry") { session in
            for table in tables {
                if try await session.exists("SELECT 1 FROM \(table.name) LIMIT 1") {
                    throw StoreError(.conflict, "the PostgreSQL registry is not empty (\(table.name) has rows): copy into a new database")
                }
            }
            // The copy records no change: servers started on it begin after the copied state.
            for table in tables where !["health_counts", "audit_events", "stored_crls"].contains(table.name) {
                try await session.execute("ALTER TABLE \(table.name) DISABLE TRIGGER USER")
            }
            for table in tables {
                let (columns, rows) = try read(table, from: source)
                try await insert(rows, columns: columns, into: table.name, session)
                logger.info("copied", metadata: ["table": "\(table.name)", "rows": "\(rows.count)"])
            }
            for table in tables where !["health_counts", "audit_events", "stored_crls"].contains(table.name) {
                try await session.execute("ALTER TABLE \(table.name) ENABLE TRIGGER USER")
            }
            // The CRL counter (one row both migrations created): CRLs built on the copy keep counting up.
            let lastCRLNumber: Int64
            do {
                lastCRLNumber = try await source.read { db in
                    try Int64.fetchOne(db, sql: "SELECT last FROM crl_numbers WHERE only_row = 1") ?? 0
                }
            } catch {
                throw StoreError.sqlite(error, "read the SQLite registry's CRL number")
            }
            try await session.execute("UPDATE crl_numbers SET last = ? WHERE only_row = 1", [.integer(lastCRLNumber)])
        }
        // Row by row: the same rows, in key order, with the same values.
        for table in tables {
            let (columns, rows) = try read(table, from: source)
            let copied = try await target.read("verify \(table.name)") { session in
                try await session.rows(
                    "SELECT \(columns.joined(separator: ", ")) FROM \(table.name) ORDER BY \(table.postgresOrder)")
                    .map { row in try row.makeRandomAccess().map(PostgresValue.init(cell:)) }
            }
            guard copied.count == rows.count else {
                throw StoreError(
                    .corrupt, "copy verification: \(table.name) has \(copied.count) rows, the source \(rows.count)")
            }
            for (index, (original, copy)) in zip(rows, copied).enumerated() where original != copy {
                throw StoreError(.corrupt, "copy verification: \(table.name) row \(index + 1) differs from the source")
            }
            report.tables.append(Report.Table(name: table.name, rows: rows.count))
        }
        let sourceHead: String?
        do {
            sourceHead = try await source.read { db in
                try String.fetchOne(db, sql: "SELECT hash FROM audit_events ORDER BY sequence DESC LIMIT 1")
            }
        } catch {
            throw .sqlite(error, "read the SQLite registry's audit chain")
        }
        let chain = try await target.auditChainReport(anchor: nil)
        guard chain.finding == nil, chain.headHash == sourceHead else {
            throw StoreError(
                .corrupt,
                "copy verification: the copied audit chain does not verify with this data directory's audit key")
        }
        report.auditEntries = chain.checked
        report.auditHeadHash = chain.headHash
        return report
    }

    /// Every row of a SQLite table in key order, with its column names (PostgreSQL has the same ones).
    private static func read(
        _ table: Table, from source: DatabaseQueue
    ) throws(StoreError) -> (columns: [String], rows: [[PostgresValue]]) {
        do {
            return try source.read { db in
                let columns = try db.columns(in: table.name).map(\.name)
                let rows = try Row.fetchAll(
                    db, sql: "SELECT \(columns.joined(separator: ", ")) FROM \(table.name) ORDER BY \(table.sqliteOrder)")
                return (columns, rows.map { row in row.databaseValues.map(PostgresValue.init(sqlite:)) })
            }
        } catch {
            throw .sqlite(error, "read \(table.name) from the SQLite registry")
        }
    }

    /// Multi-row INSERTs of at most 60,000 bound values each (PostgreSQL takes 65,535 per statement).
    private static func insert(
        _ rows: [[PostgresValue]], columns: [String], into table: String, _ session: PostgresSession
    ) async throws {
        guard !rows.isEmpty else { return }
        let perStatement = max(1, 60_000 / max(1, columns.count))
        let tuple = "(" + Array(repeating: "?", count: columns.count).joined(separator: ", ") + ")"
        var start = 0
        while start < rows.count {
            let chunk = rows[start..<min(start + perStatement, rows.count)]
            try await session.execute(
                "INSERT INTO \(table) (\(columns.joined(separator: ", "))) VALUES "
                    + Array(repeating: tuple, count: chunk.count).joined(separator: ", "),
                chunk.flatMap { $0 })
            start += chunk.count
        }
    }
}

extension PostgresValue {
    /// A SQLite value as the PostgreSQL column of the same name holds it (INTEGER → BIGINT, TEXT, BLOB → BYTEA).
    init(sqlite value: DatabaseValue) {
        switch value.storage {
        case .null: self = .null
        case .int64(let integer): self = .integer(integer)
        case .double(let double): self = .real(double)
        case .string(let string): self = .text(string)
        case .blob(let data): self = .bytes(data)
        }
    }

    /// A cell read back from PostgreSQL, for comparison with ``init(sqlite:)``.
    init(cell: PostgresCell) throws {
        guard cell.bytes != nil else {
            self = .null
            return
        }
        switch cell.dataType {
        case .int8, .int4, .int2: self = .integer(try cell.decode(Int64.self))
        case .float8, .float4: self = .real(try cell.decode(Double.self))
        case .bytea: self = .bytes(try cell.decode(Data.self))
        default: self = .text(try cell.decode(String.self))
        }
    }
}
