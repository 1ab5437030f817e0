import Foundation

/// The PostgreSQL registry's schema, as versioned migrations recorded in `devid_migrations`.
///
/// The tables and columns are those of the SQLite schema after its migration `v15-settings` (see ``SQLiteSchema``),
/// with the same types: times BIGINT milliseconds since 1970, booleans BIGINT 0/1, enumerations their raw TEXT,
/// certificates BYTEA; keys and serials are `COLLATE "C"`, so their indexes serve the byte-order listings and CRL
/// pages that SQLite's binary collation gives, whatever the database's locale. Both backends then share their SQL text, and `devid registry copy` moves a registry column
/// for column. The first PostgreSQL migration creates that whole schema at once: there was never an older
/// PostgreSQL registry to migrate. Never edit a shipped migration; add a new one.
///
/// The change stream is recorded by triggers, as on SQLite. Its sequence comes from a one-row counter updated in
/// the writing transaction, not from a PostgreSQL sequence: a sequence number taken by a transaction that then
/// rolls back would leave a gap, which a reader cannot tell from changes pruned before it read them. Every write
/// transaction holds the registry's write lock (see ``PostgresStore``), so changes are numbered in commit order.
/// Each change also sends a notification on `devid_registry_changes` (an empty payload, so PostgreSQL folds a
/// transaction's notifications into one), delivered at commit to every server that listens.
enum PostgresSchema {
    static let migrations: [(identifier: String, sql: String)] = [
        ("pg1-registry", registry),
        ("pg1-registry-changes", registryChanges),
        ("pg2-crl-number", crlNumber),
        ("pg3-stored-crls", storedCRLs),
        ("pg4-claim-token-order", claimTokenOrder),
    ]

    /// The claim tokens' listing order as indexes, of all tenants and of each (``Store/claimTokens(_:)``); the
    /// tenant index starts with what `claim_tokens_tenant` held.
    static let claimTokenOrder = """
        DROP INDEX claim_tokens_tenant;
        CREATE INDEX claim_tokens_order ON claim_tokens(created_at, id);
        CREATE INDEX claim_tokens_tenant_order ON claim_tokens(tenant_id, created_at, id);
        """

    /// The CRLs the job-lease holder built, for every server to serve (``Store/storeCRLs(_:)``).
    static let storedCRLs = """
        CREATE TABLE stored_crls (
            name TEXT COLLATE "C" NOT NULL PRIMARY KEY,
            ca_name TEXT NOT NULL,
            url TEXT NOT NULL,
            number BIGINT NOT NULL,
            der BYTEA NOT NULL,
            withheld TEXT
        );
        """

    /// The last CRL number given out (``Store/nextCRLNumber(atLeast:)``), one row: what keeps servers from giving two
    /// CRLs the same number.
    static let crlNumber = """
        CREATE TABLE crl_numbers (
            only_row BIGINT NOT NULL PRIMARY KEY CHECK (only_row = 1),
            last BIGINT NOT NULL
        );
        INSERT INTO crl_numbers (only_row, last) VALUES (1, 0);
        """

    /// The statements of a migration: split at each `;` that ends a line outside a `$$` body. A `--` comment line
    /// is dropped. (The schema's own text only: no string literal in it holds `$$` or ends a line with `;`.)
    static func statements(_ sql: String) -> [String] {
        var statements: [String] = []
        var current = ""
        var inBody = false
        for line in sql.split(separator: "\n", omittingEmptySubsequences: false) {
            let trimmed = line.trimmingCharacters(in: .whitespaces)
            if !inBody, trimmed.hasPrefix("--") { continue }
            current += line + "\n"
            if line.components(separatedBy: "$$").count % 2 == 0 { inBody.toggle() }
            if !inBody, trimmed.hasSuffix(";") {
                statements.append(current.trimmingCharacters(in: .whitespacesAndNewlines))
                current = ""
            }
        }
        let rest = current.trimmingCharacters(in: .whitespacesAndNewlines)
        if !rest.isEmpty { statements.append(rest) }
        return statements
    }

    static let registry = """
        CREATE TABLE tenants (
            id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
            display_name TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            auto_register BIGINT NOT NULL DEFAULT 0 CHECK (auto_register IN (0, 1)),
            manual_approval BIGINT NOT NULL DEFAULT 0 CHECK (manual_approval IN (0, 1)),
            topic_policy TEXT,
            max_unbound_token_uses BIGINT,
            max_unbound_token_ttl BIGINT
        );

        CREATE TABLE lots (
            id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants(id),
            created_at BIGINT NOT NULL
        );
        CREATE INDEX lots_tenant ON lots(tenant_id);

        CREATE TABLE devices (
            id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants(id),
            hardware_serial TEXT NOT NULL UNIQUE,
            lot_id TEXT REFERENCES lots(id),
            state TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            last_seen BIGINT,
            idevid_serial TEXT COLLATE "C",
            idevid_revoked_at BIGINT,
            idevid_revocation_reason TEXT,
            idevid_issuer_sha256 TEXT,
            idevid_sha256 TEXT,
            enrolled_with_token TEXT
        );
        CREATE INDEX devices_tenant ON devices(tenant_id, id);
        CREATE INDEX devices_lot ON devices(lot_id, id);
        CREATE INDEX devices_state ON devices(state, id);
        CREATE UNIQUE INDEX devices_idevid_serial ON devices(idevid_serial);
        CREATE INDEX devices_enrolled_with_token ON devices(enrolled_with_token);
        CREATE INDEX devices_tenant_state ON devices(tenant_id, state);

        CREATE TABLE credentials (
            serial TEXT COLLATE "C" NOT NULL PRIMARY KEY,
            device_id TEXT NOT NULL REFERENCES devices(id),
            kind TEXT NOT NULL,
            issuer TEXT NOT NULL,
            not_before BIGINT NOT NULL,
            not_after BIGINT NOT NULL,
            public_key_sha256 TEXT NOT NULL,
            certificate_sha256 TEXT NOT NULL UNIQUE,
            der BYTEA NOT NULL,
            status TEXT NOT NULL,
            revoked_at BIGINT,
            revocation_reason TEXT,
            created_at BIGINT NOT NULL,
            overlap_deadline BIGINT,
            confirmed_at BIGINT,
            rotation_due BIGINT NOT NULL DEFAULT 0 CHECK (rotation_due IN (0, 1)),
            replaced_by TEXT
        );
        CREATE INDEX credentials_device ON credentials(device_id);
        CREATE INDEX credentials_status_not_after ON credentials(status, not_after);
        CREATE INDEX credentials_status_overlap_deadline ON credentials(status, overlap_deadline);
        CREATE INDEX credentials_status_issuer_serial ON credentials(status, issuer, serial);
        CREATE INDEX credentials_status_serial ON credentials(status, serial);
        CREATE INDEX credentials_rotation_due ON credentials(device_id) WHERE rotation_due = 1;
        CREATE INDEX credentials_fleet_expiry ON credentials(status, kind, device_id, not_after);
        CREATE INDEX credentials_kind_created ON credentials(kind, created_at);
        CREATE INDEX credentials_issuer_kind ON credentials(issuer, kind, status);

        CREATE TABLE claim_tokens (
            id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
            secret_hash TEXT NOT NULL UNIQUE,
            tenant_id TEXT NOT NULL REFERENCES tenants(id),
            device_id TEXT,
            expires_at BIGINT NOT NULL,
            uses_remaining BIGINT NOT NULL CHECK (uses_remaining >= 0),
            revoked BIGINT NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
            created_at BIGINT NOT NULL,
            lot_id TEXT,
            name_pattern TEXT
        );
        CREATE INDEX claim_tokens_tenant ON claim_tokens(tenant_id);

        CREATE TABLE admin_tokens (
            id TEXT COLLATE "C" NOT NULL PRIMARY KEY,
            secret_hash TEXT NOT NULL UNIQUE,
            created_at BIGINT NOT NULL,
            name TEXT NOT NULL DEFAULT '',
            role TEXT NOT NULL DEFAULT 'admin',
            tenants TEXT,
            expires_at BIGINT,
            last_used_at BIGINT,
            revoked BIGINT NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1))
        );
        CREATE UNIQUE INDEX admin_tokens_active_name ON admin_tokens(name) WHERE revoked = 0;

        -- tenant_id, device_id and serial are not foreign keys: the trail also records denials for
        -- unknown devices, and outlives the rows it mentions.
        CREATE TABLE audit_events (
            sequence BIGINT NOT NULL PRIMARY KEY,
            occurred_at BIGINT NOT NULL,
            actor TEXT NOT NULL,
            action TEXT NOT NULL,
            outcome TEXT NOT NULL,
            reason TEXT NOT NULL,
            tenant_id TEXT,
            device_id TEXT,
            serial TEXT,
            previous_hash TEXT NOT NULL,
            hash TEXT NOT NULL
        );
        CREATE INDEX audit_events_action ON audit_events(action, sequence);
        CREATE INDEX audit_events_device ON audit_events(device_id, sequence);

        CREATE TABLE service_certificates (
            serial TEXT COLLATE "C" NOT NULL PRIMARY KEY,
            service TEXT NOT NULL,
            names TEXT NOT NULL,
            issuer TEXT NOT NULL,
            not_before BIGINT NOT NULL,
            not_after BIGINT NOT NULL,
            public_key_sha256 TEXT NOT NULL,
            certificate_sha256 TEXT NOT NULL UNIQUE,
            der BYTEA NOT NULL,
            status TEXT NOT NULL,
            revoked_at BIGINT,
            revocation_reason TEXT,
            created_at BIGINT NOT NULL
        );
        CREATE INDEX service_certificates_status_serial ON service_certificates(status, serial);
        CREATE INDEX service_certificates_created_at ON service_certificates(created_at, serial);

        CREATE TABLE health_counts (
            metric TEXT NOT NULL,
            hour BIGINT NOT NULL,
            tenant_id TEXT NOT NULL,
            first TEXT NOT NULL,
            second TEXT NOT NULL,
            count BIGINT NOT NULL,
            PRIMARY KEY (metric, hour, tenant_id, first, second)
        );
        CREATE INDEX health_counts_hour ON health_counts(hour);

        CREATE TABLE issuing_cas (
            id BIGINT PRIMARY KEY,
            subject TEXT NOT NULL UNIQUE,
            sha256 TEXT NOT NULL UNIQUE,
            serial TEXT NOT NULL,
            not_before BIGINT NOT NULL,
            not_after BIGINT NOT NULL,
            state TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            state_changed_at BIGINT NOT NULL,
            revocation_reason TEXT
        );

        CREATE TABLE settings (
            key TEXT NOT NULL PRIMARY KEY,
            value TEXT NOT NULL
        );
        """

    /// The triggers of the change stream: the same rows, kinds and details as ``SQLiteSchema/v14RegistryChanges``
    /// and ``SQLiteSchema/v15Settings``.
    static let registryChanges = """
        CREATE TABLE registry_changes (
            sequence BIGINT NOT NULL PRIMARY KEY,
            kind TEXT NOT NULL,
            subject TEXT NOT NULL,
            device_id TEXT,
            tenant_id TEXT,
            detail TEXT NOT NULL
        );
        CREATE TABLE registry_change_counter (
            only_row BIGINT NOT NULL PRIMARY KEY CHECK (only_row = 1),
            last BIGINT NOT NULL
        );
        INSERT INTO registry_change_counter (only_row, last) VALUES (1, 0);

        CREATE FUNCTION devid_record_change(
            change_kind TEXT, change_subject TEXT, change_device TEXT, change_tenant TEXT, change_detail TEXT
        ) RETURNS void LANGUAGE plpgsql AS $$
        DECLARE next_sequence BIGINT;
        BEGIN
            UPDATE registry_change_counter SET last = last + 1 WHERE only_row = 1 RETURNING last INTO next_sequence;
            INSERT INTO registry_changes (sequence, kind, subject, device_id, tenant_id, detail)
                VALUES (next_sequence, change_kind, change_subject, change_device, change_tenant, change_detail);
            PERFORM pg_notify('devid_registry_changes', '');
        END $$;

        CREATE FUNCTION devid_tenant_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN PERFORM devid_record_change('tenant', NEW.id, NULL, NEW.id, 'created');
            ELSIF TG_OP = 'UPDATE' THEN PERFORM devid_record_change('tenant', NEW.id, NULL, NEW.id, 'updated');
            ELSE PERFORM devid_record_change('tenant', OLD.id, NULL, OLD.id, 'deleted');
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER registry_changes_tenant AFTER INSERT OR UPDATE OR DELETE ON tenants
            FOR EACH ROW EXECUTE FUNCTION devid_tenant_changed();

        CREATE FUNCTION devid_lot_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM devid_record_change('lot', NEW.id, NULL, NEW.tenant_id, 'created');
            RETURN NULL;
        END $$;
        CREATE TRIGGER registry_changes_lot AFTER INSERT ON lots FOR EACH ROW EXECUTE FUNCTION devid_lot_changed();

        CREATE FUNCTION devid_device_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                PERFORM devid_record_change('device', NEW.id, NEW.id, NEW.tenant_id, 'created');
            ELSIF TG_OP = 'UPDATE' THEN
                IF OLD.state IS DISTINCT FROM NEW.state OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id
                    OR OLD.lot_id IS DISTINCT FROM NEW.lot_id OR OLD.hardware_serial IS DISTINCT FROM NEW.hardware_serial
                    OR OLD.idevid_issuer_sha256 IS DISTINCT FROM NEW.idevid_issuer_sha256
                    OR OLD.idevid_sha256 IS DISTINCT FROM NEW.idevid_sha256
                    OR OLD.enrolled_with_token IS DISTINCT FROM NEW.enrolled_with_token
                THEN
                    PERFORM devid_record_change('device', NEW.id, NEW.id, NEW.tenant_id,
                        CASE WHEN OLD.state IS DISTINCT FROM NEW.state THEN NEW.state ELSE 'updated' END);
                END IF;
                IF OLD.idevid_serial IS DISTINCT FROM NEW.idevid_serial
                    OR OLD.idevid_revoked_at IS DISTINCT FROM NEW.idevid_revoked_at
                THEN
                    PERFORM devid_record_change('device', NEW.id, NEW.id, NEW.tenant_id, 'idevid');
                END IF;
            ELSE
                PERFORM devid_record_change('device', OLD.id, OLD.id, OLD.tenant_id, 'deleted');
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER registry_changes_device AFTER INSERT OR UPDATE OR DELETE ON devices
            FOR EACH ROW EXECUTE FUNCTION devid_device_changed();

        CREATE FUNCTION devid_credential_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                PERFORM devid_record_change('credential', NEW.serial, NEW.device_id, NULL, NEW.status);
            ELSIF TG_OP = 'UPDATE' THEN
                IF OLD.status IS DISTINCT FROM NEW.status OR OLD.rotation_due IS DISTINCT FROM NEW.rotation_due
                    OR OLD.overlap_deadline IS DISTINCT FROM NEW.overlap_deadline
                    OR OLD.replaced_by IS DISTINCT FROM NEW.replaced_by OR OLD.device_id IS DISTINCT FROM NEW.device_id
                THEN
                    PERFORM devid_record_change('credential', NEW.serial, NEW.device_id, NULL,
                        CASE WHEN OLD.status IS DISTINCT FROM NEW.status THEN
                            NEW.status || CASE WHEN NEW.status = 'revoked' AND OLD.status = 'superseded'
                                THEN ':superseded' ELSE '' END
                        ELSE 'updated' END);
                END IF;
            ELSE
                PERFORM devid_record_change('credential', OLD.serial, OLD.device_id, NULL, 'deleted');
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER registry_changes_credential AFTER INSERT OR UPDATE OR DELETE ON credentials
            FOR EACH ROW EXECUTE FUNCTION devid_credential_changed();

        CREATE FUNCTION devid_claim_token_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                PERFORM devid_record_change('claim_token', NEW.id, NEW.device_id, NEW.tenant_id, 'created');
            ELSIF TG_OP = 'UPDATE' THEN
                IF OLD.revoked IS DISTINCT FROM NEW.revoked OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
                    OR OLD.device_id IS DISTINCT FROM NEW.device_id OR OLD.tenant_id IS DISTINCT FROM NEW.tenant_id
                THEN
                    PERFORM devid_record_change('claim_token', NEW.id, NEW.device_id, NEW.tenant_id,
                        CASE WHEN NEW.revoked = 1 AND OLD.revoked = 0 THEN 'revoked' ELSE 'updated' END);
                END IF;
            ELSE
                PERFORM devid_record_change('claim_token', OLD.id, OLD.device_id, OLD.tenant_id, 'deleted');
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER registry_changes_claim_token AFTER INSERT OR UPDATE OR DELETE ON claim_tokens
            FOR EACH ROW EXECUTE FUNCTION devid_claim_token_changed();

        CREATE FUNCTION devid_admin_token_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN
                PERFORM devid_record_change('admin_token', NEW.id, NULL, NULL, 'created');
            ELSIF TG_OP = 'UPDATE' THEN
                IF OLD.revoked IS DISTINCT FROM NEW.revoked OR OLD.role IS DISTINCT FROM NEW.role
                    OR OLD.tenants IS DISTINCT FROM NEW.tenants OR OLD.expires_at IS DISTINCT FROM NEW.expires_at
                    OR OLD.name IS DISTINCT FROM NEW.name OR OLD.secret_hash IS DISTINCT FROM NEW.secret_hash
                THEN
                    PERFORM devid_record_change('admin_token', NEW.id, NULL, NULL,
                        CASE WHEN NEW.revoked = 1 AND OLD.revoked = 0 THEN 'revoked' ELSE 'updated' END);
                END IF;
            ELSE
                PERFORM devid_record_change('admin_token', OLD.id, NULL, NULL, 'deleted');
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER registry_changes_admin_token AFTER INSERT OR UPDATE OR DELETE ON admin_tokens
            FOR EACH ROW EXECUTE FUNCTION devid_admin_token_changed();

        CREATE FUNCTION devid_issuing_ca_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' OR OLD.state IS DISTINCT FROM NEW.state OR OLD.sha256 IS DISTINCT FROM NEW.sha256 THEN
                PERFORM devid_record_change('issuing_ca', CAST(NEW.id AS TEXT), NULL, NULL, NEW.state);
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER registry_changes_issuing_ca AFTER INSERT OR UPDATE ON issuing_cas
            FOR EACH ROW EXECUTE FUNCTION devid_issuing_ca_changed();

        CREATE FUNCTION devid_service_certificate_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' OR OLD.status IS DISTINCT FROM NEW.status THEN
                PERFORM devid_record_change('service_certificate', NEW.serial, NULL, NULL, NEW.status);
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER registry_changes_service_certificate AFTER INSERT OR UPDATE ON service_certificates
            FOR EACH ROW EXECUTE FUNCTION devid_service_certificate_changed();

        CREATE FUNCTION devid_setting_changed() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'INSERT' THEN PERFORM devid_record_change('setting', NEW.key, NULL, NULL, 'updated');
            ELSIF TG_OP = 'UPDATE' THEN
                IF OLD.value IS DISTINCT FROM NEW.value THEN
                    PERFORM devid_record_change('setting', NEW.key, NULL, NULL, 'updated');
                END IF;
            ELSE PERFORM devid_record_change('setting', OLD.key, NULL, NULL, 'deleted');
            END IF;
            RETURN NULL;
        END $$;
        CREATE TRIGGER registry_changes_setting AFTER INSERT OR UPDATE OR DELETE ON settings
            FOR EACH ROW EXECUTE FUNCTION devid_setting_changed();
        """
}
