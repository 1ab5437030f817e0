public import DevIDCore
import Foundation
import GRDB

extension SQLiteSchema {
    /// The change stream (``RegistryChange``): one row per change to identity state, written by triggers in the
    /// transaction that makes the change, so that no write path can forget one. `AUTOINCREMENT` keeps sequence
    /// numbers from being reused after the newest rows are pruned. The update triggers fire only when a column a
    /// cache depends on changed: never for `last_seen`, `last_used_at` or a claim token's remaining uses, which
    /// change on every check-in, request and enrollment, nor for a credential's `confirmed_at` (its first use),
    /// which the decision index records itself when it sees that use.
    static let v14RegistryChanges = """
        CREATE TABLE registry_changes (
            sequence INTEGER PRIMARY KEY AUTOINCREMENT,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            device_id TEXT,
            tenant_id TEXT,
            detail TEXT NOT NULL
        );

        CREATE TRIGGER registry_changes_tenant_insert AFTER INSERT ON tenants BEGIN
            INSERT INTO registry_changes (kind, subject, tenant_id, detail) VALUES ('tenant', NEW.id, NEW.id, 'created');
        END;
        CREATE TRIGGER registry_changes_tenant_update AFTER UPDATE ON tenants BEGIN
            INSERT INTO registry_changes (kind, subject, tenant_id, detail) VALUES ('tenant', NEW.id, NEW.id, 'updated');
        END;
        CREATE TRIGGER registry_changes_tenant_delete AFTER DELETE ON tenants BEGIN
            INSERT INTO registry_changes (kind, subject, tenant_id, detail) VALUES ('tenant', OLD.id, OLD.id, 'deleted');
        END;

        CREATE TRIGGER registry_changes_lot_insert AFTER INSERT ON lots BEGIN
            INSERT INTO registry_changes (kind, subject, tenant_id, detail)
                VALUES ('lot', NEW.id, NEW.tenant_id, 'created');
        END;

        CREATE TRIGGER registry_changes_device_insert AFTER INSERT ON devices BEGIN
            INSERT INTO registry_changes (kind, subject, device_id, tenant_id, detail)
                VALUES ('device', NEW.id, NEW.id, NEW.tenant_id, 'created');
        END;
        CREATE TRIGGER registry_changes_device_update AFTER UPDATE ON devices
            WHEN OLD.state IS NOT NEW.state OR OLD.tenant_id IS NOT NEW.tenant_id OR OLD.lot_id IS NOT NEW.lot_id
                OR OLD.hardware_serial IS NOT NEW.hardware_serial
                OR OLD.idevid_issuer_sha256 IS NOT NEW.idevid_issuer_sha256 OR OLD.idevid_sha256 IS NOT NEW.idevid_sha256
                OR OLD.enrolled_with_token IS NOT NEW.enrolled_with_token
        BEGIN
            INSERT INTO registry_changes (kind, subject, device_id, tenant_id, detail)
                VALUES ('device', NEW.id, NEW.id, NEW.tenant_id,
                    CASE WHEN OLD.state IS NOT NEW.state THEN NEW.state ELSE 'updated' END);
        END;
        CREATE TRIGGER registry_changes_device_idevid AFTER UPDATE ON devices
            WHEN OLD.idevid_serial IS NOT NEW.idevid_serial OR OLD.idevid_revoked_at IS NOT NEW.idevid_revoked_at
        BEGIN
            INSERT INTO registry_changes (kind, subject, device_id, tenant_id, detail)
                VALUES ('device', NEW.id, NEW.id, NEW.tenant_id, 'idevid');
        END;
        CREATE TRIGGER registry_changes_device_delete AFTER DELETE ON devices BEGIN
            INSERT INTO registry_changes (kind, subject, device_id, tenant_id, detail)
                VALUES ('device', OLD.id, OLD.id, OLD.tenant_id, 'deleted');
        END;

        CREATE TRIGGER registry_changes_credential_insert AFTER INSERT ON credentials BEGIN
            INSERT INTO registry_changes (kind, subject, device_id, detail)
                VALUES ('credential', NEW.serial, NEW.device_id, NEW.status);
        END;
        CREATE TRIGGER registry_changes_credential_update AFTER UPDATE ON credentials
            WHEN OLD.status IS NOT NEW.status OR OLD.rotation_due IS NOT NEW.rotation_due
                OR OLD.overlap_deadline IS NOT NEW.overlap_deadline
                OR OLD.replaced_by IS NOT NEW.replaced_by OR OLD.device_id IS NOT NEW.device_id
        BEGIN
            INSERT INTO registry_changes (kind, subject, device_id, detail)
                VALUES ('credential', NEW.serial, NEW.device_id,
                    CASE WHEN OLD.status IS NOT NEW.status THEN
                        NEW.status || CASE WHEN NEW.status = 'revoked' AND OLD.status = 'superseded'
                            THEN ':superseded' ELSE '' END
                    ELSE 'updated' END);
        END;
        CREATE TRIGGER registry_changes_credential_delete AFTER DELETE ON credentials BEGIN
            INSERT INTO registry_changes (kind, subject, device_id, detail)
                VALUES ('credential', OLD.serial, OLD.device_id, 'deleted');
        END;

        CREATE TRIGGER registry_changes_claim_token_insert AFTER INSERT ON claim_tokens BEGIN
            INSERT INTO registry_changes (kind, subject, device_id, tenant_id, detail)
                VALUES ('claim_token', NEW.id, NEW.device_id, NEW.tenant_id, 'created');
        END;
        CREATE TRIGGER registry_changes_claim_token_update AFTER UPDATE ON claim_tokens
            WHEN OLD.revoked IS NOT NEW.revoked OR OLD.expires_at IS NOT NEW.expires_at
                OR OLD.device_id IS NOT NEW.device_id OR OLD.tenant_id IS NOT NEW.tenant_id
        BEGIN
            INSERT INTO registry_changes (kind, subject, device_id, tenant_id, detail)
                VALUES ('claim_token', NEW.id, NEW.device_id, NEW.tenant_id,
                    CASE WHEN NEW.revoked = 1 AND OLD.revoked = 0 THEN 'revoked' ELSE 'updated' END);
        END;
        CREATE TRIGGER registry_changes_claim_token_delete AFTER DELETE ON claim_tokens BEGIN
            INSERT INTO registry_changes (kind, subject, device_id, tenant_id, detail)
                VALUES ('claim_token', OLD.id, OLD.device_id, OLD.tenant_id, 'deleted');
        END;

        CREATE TRIGGER registry_changes_admin_token_insert AFTER INSERT ON admin_tokens BEGIN
            INSERT INTO registry_changes (kind, subject, detail) VALUES ('admin_token', NEW.id, 'created');
        END;
        CREATE TRIGGER registry_changes_admin_token_update AFTER UPDATE ON admin_tokens
            WHEN OLD.revoked IS NOT NEW.revoked OR OLD.role IS NOT NEW.role OR OLD.tenants IS NOT NEW.tenants
                OR OLD.expires_at IS NOT NEW.expires_at OR OLD.name IS NOT NEW.name
                OR OLD.secret_hash IS NOT NEW.secret_hash
        BEGIN
            INSERT INTO registry_changes (kind, subject, detail)
                VALUES ('admin_token', NEW.id,
                    CASE WHEN NEW.revoked = 1 AND OLD.revoked = 0 THEN 'revoked' ELSE 'updated' END);
        END;
        CREATE TRIGGER registry_changes_admin_token_delete AFTER DELETE ON admin_tokens BEGIN
            INSERT INTO registry_changes (kind, subject, detail) VALUES ('admin_token', OLD.id, 'deleted');
        END;

        CREATE TRIGGER registry_changes_issuing_ca_insert AFTER INSERT ON issuing_cas BEGIN
            INSERT INTO registry_changes (kind, subject, detail) VALUES ('issuing_ca', CAST(NEW.id AS TEXT), NEW.state);
        END;
        CREATE TRIGGER registry_changes_issuing_ca_update AFTER UPDATE ON issuing_cas
            WHEN OLD.state IS NOT NEW.state OR OLD.sha256 IS NOT NEW.sha256
        BEGIN
            INSERT INTO registry_changes (kind, subject, detail) VALUES ('issuing_ca', CAST(NEW.id AS TEXT), NEW.state);
        END;

        CREATE TRIGGER registry_changes_service_certificate_insert AFTER INSERT ON service_certificates BEGIN
            INSERT INTO registry_changes (kind, subject, detail)
                VALUES ('service_certificate', NEW.serial, NEW.status);
        END;
        CREATE TRIGGER registry_changes_service_certificate_update AFTER UPDATE ON service_certificates
            WHEN OLD.status IS NOT NEW.status
        BEGIN
            INSERT INTO registry_changes (kind, subject, detail)
                VALUES ('service_certificate', NEW.serial, NEW.status);
        END;
        """
}

extension SQLiteStore {
    /// The changes after `sequence`, inside the caller's transaction or read.
    static func changes(_ db: Database, after sequence: Int64, limit: Int) throws -> [RegistryChange] {
        let rows = try Row.fetchAll(
            db.cachedStatement(
                sql: """
                    SELECT sequence, kind, subject, device_id, tenant_id, detail FROM registry_changes
                    WHERE sequence > ? ORDER BY sequence LIMIT ?
                    """),
            arguments: [sequence, limit])
        return rows.map { row in
            let kindText: String = row["kind"]
            // A kind a newer DevID records (it migrated the file while this one runs): never fail the write that
            // reads it; reload everything, as for changes missed.
            guard let kind = RegistryChange.Kind(rawValue: kindText), kind != .missed else {
                return RegistryChange(sequence: row["sequence"], kind: .missed, subject: kindText, detail: "unknown kind")
            }
            let device: String? = row["device_id"]
            let tenant: String? = row["tenant_id"]
            return RegistryChange(
                sequence: row["sequence"], kind: kind, subject: row["subject"], device: device.flatMap(DeviceID.init(rawValue:)),
                tenant: tenant.flatMap(TenantID.init(rawValue:)), detail: row["detail"])
        }
    }

    /// The last sequence number given out (AUTOINCREMENT's counter: right even when pruning emptied the table).
    static func latestChange(_ db: Database) throws -> Int64 {
        try Int64.fetchOne(db, sql: "SELECT seq FROM sqlite_sequence WHERE name = 'registry_changes'") ?? 0
    }

    public func changes(after sequence: Int64, limit: Int) async throws(StoreError) -> [RegistryChange] {
        try await read("read registry changes") { db in try Self.changes(db, after: sequence, limit: max(0, limit)) }
    }

    public func pruneChanges(keepingLatest: Int) async throws(StoreError) -> Int {
        try await write("prune registry changes") { db in
            let latest = try Self.latestChange(db)
            try db.execute(
                sql: "DELETE FROM registry_changes WHERE sequence <= ?", arguments: [latest - Int64(max(0, keepingLatest))])
            return db.changesCount
        }
    }
}

extension SQLiteSchema {
    /// Server settings kept in the registry (``Store/settings()``): one row per configuration key, its value as
    /// text; every change is a change of the stream (kind `setting`), so every server applies it.
    static let v15Settings = """
        CREATE TABLE settings (
            key TEXT NOT NULL PRIMARY KEY,
            value TEXT NOT NULL
        );
        CREATE TRIGGER registry_changes_setting_insert AFTER INSERT ON settings BEGIN
            INSERT INTO registry_changes (kind, subject, detail) VALUES ('setting', NEW.key, 'updated');
        END;
        CREATE TRIGGER registry_changes_setting_update AFTER UPDATE ON settings WHEN OLD.value IS NOT NEW.value BEGIN
            INSERT INTO registry_changes (kind, subject, detail) VALUES ('setting', NEW.key, 'updated');
        END;
        CREATE TRIGGER registry_changes_setting_delete AFTER DELETE ON settings BEGIN
            INSERT INTO registry_changes (kind, subject, detail) VALUES ('setting', OLD.key, 'deleted');
        END;
        """
}

extension SQLiteStore {
    public func settings() async throws(StoreError) -> [String: String] {
        try await read("read settings") { db in
            Dictionary(
                try Row.fetchAll(db, sql: "SELECT key, value FROM settings").map { ($0["key"], $0["value"]) },
                uniquingKeysWith: { $1 })
        }
    }

    public func updateSettings(_ changes: [String: String?], audit: AuditEvent?) async throws(StoreError) {
        try await write("update settings") { db in
            for (key, value) in changes.sorted(by: { $0.key < $1.key }) {
                if let value {
                    try db.execute(
                        sql: "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                        arguments: [key, value])
                } else {
                    try db.execute(sql: "DELETE FROM settings WHERE key = ?", arguments: [key])
                }
            }
            try Self.append(audit, db)
        }
    }
}

extension SQLiteSchema {
    /// The last CRL number given out (``Store/nextCRLNumber(atLeast:)``), one row.
    static let v16CRLNumber = """
        CREATE TABLE crl_numbers (
            only_row INTEGER NOT NULL PRIMARY KEY CHECK (only_row = 1),
            last INTEGER NOT NULL
        );
        INSERT INTO crl_numbers (only_row, last) VALUES (1, 0);
        """
}

extension SQLiteStore {
    public func nextCRLNumber(atLeast minimum: UInt64) async throws(StoreError) -> UInt64 {
        let floor = Int64(clamping: minimum)
        let next = try await write("allocate a CRL number") { db in
            try Int64.fetchOne(
                db, sql: "UPDATE crl_numbers SET last = max(last, ?) + 1 WHERE only_row = 1 RETURNING last",
                arguments: [floor]) ?? 0
        }
        return UInt64(max(0, next))
    }
}

extension SQLiteSchema {
    /// The CRLs the job-lease holder built, for every server of the registry to serve (``Store/storeCRLs(_:)``).
    static let v17StoredCRLs = """
        CREATE TABLE stored_crls (
            name TEXT NOT NULL PRIMARY KEY,
            ca_name TEXT NOT NULL,
            url TEXT NOT NULL,
            number INTEGER NOT NULL,
            der BLOB NOT NULL,
            withheld TEXT
        );
        """
}

extension SQLiteStore {
    @discardableResult
    public func storeCRLs(_ crls: [StoredCRL]) async throws(StoreError) -> Bool {
        let number = Int64(clamping: crls.map(\.number).max() ?? 0)
        return try await write("store CRLs") { db in
            if let stored = try Int64.fetchOne(db, sql: "SELECT max(number) FROM stored_crls"), stored > number {
                return false
            }
            try db.execute(sql: "DELETE FROM stored_crls")
            for crl in crls {
                try db.execute(
                    sql: "INSERT INTO stored_crls (name, ca_name, url, number, der, withheld) VALUES (?, ?, ?, ?, ?, ?)",
                    arguments: [crl.name, crl.caName, crl.url, Int64(clamping: crl.number), Data(crl.der), crl.withheld])
            }
            try db.execute(
                sql: "INSERT INTO registry_changes (kind, subject, detail) VALUES ('crl', 'all', ?)",
                arguments: [String(number)])
            return true
        }
    }

    public func storedCRLs() async throws(StoreError) -> [StoredCRL] {
        try await read("read stored CRLs") { db in
            try Row.fetchAll(db, sql: "SELECT name, ca_name, url, number, der, withheld FROM stored_crls ORDER BY name")
                .map { row in
                    let number: Int64 = row["number"]
                    let der: Data = row["der"]
                    return StoredCRL(
                        name: row["name"], caName: row["ca_name"], url: row["url"], number: UInt64(max(0, number)),
                        der: Array(der), withheld: row["withheld"])
                }
        }
    }
}
