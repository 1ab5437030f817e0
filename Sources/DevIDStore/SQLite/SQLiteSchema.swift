import GRDB

/// The registry's schema, as versioned migrations.
///
/// Kept to portable SQL (TEXT, INTEGER, BIGINT, BLOB and plain constraints) so the PostgreSQL backend can
/// mirror it: times are BIGINT milliseconds since 1970, booleans INTEGER 0/1, enumerations their raw TEXT.
/// Never edit a shipped migration; add a new one.
enum SQLiteSchema {
    static var migrator: DatabaseMigrator {
        var migrator = DatabaseMigrator()
        migrator.registerMigration("v1") { db in
            try db.execute(sql: v1)
        }
        migrator.registerMigration("v2") { db in
            try db.execute(sql: v2)
        }
        migrator.registerMigration("v3") { db in
            try db.execute(sql: v3)
        }
        migrator.registerMigration("v4") { db in
            try db.execute(sql: v4)
        }
        migrator.registerMigration("v5") { db in
            try db.execute(sql: v5)
        }
        migrator.registerMigration("v6") { db in
            try db.execute(sql: v6)
        }
        migrator.registerMigration("v7-enrollment-bindings") { db in
            try db.execute(sql: v7EnrollmentBindings)
        }
        migrator.registerMigration("v8-admin-token-roles") { db in
            try db.execute(sql: v8AdminTokenRoles)
        }
        migrator.registerMigration("v9-service-certificates") { db in
            try db.execute(sql: v9ServiceCertificates)
        }
        migrator.registerMigration("v10-fleet-health") { db in
            try db.execute(sql: v10FleetHealth)
        }
        migrator.registerMigration("v11-fleet-expiry") { db in
            try db.execute(sql: v11FleetExpiry)
        }
        migrator.registerMigration("v12-health-history") { db in
            try db.execute(sql: v12HealthHistory)
        }
        migrator.registerMigration("v13-issuing-cas") { db in
            try db.execute(sql: v13IssuingCAs)
        }
        migrator.registerMigration("v14-registry-changes") { db in
            try db.execute(sql: v14RegistryChanges)
        }
        migrator.registerMigration("v15-settings") { db in
            try db.execute(sql: v15Settings)
        }
        migrator.registerMigration("v16-crl-number") { db in
            try db.execute(sql: v16CRLNumber)
        }
        migrator.registerMigration("v17-stored-crls") { db in
            try db.execute(sql: v17StoredCRLs)
        }
        migrator.registerMigration("v18-claim-token-order") { db in
            try db.execute(sql: v18ClaimTokenOrder)
        }
        return migrator
    }

    /// Claim tokens are listed newest first, a page at a time (``Store/claimTokens(_:)``): the listing order as
    /// indexes, of all tenants and of each, so a page reads its rows in order instead of sorting the table. The
    /// tenant index starts with what `claim_tokens_tenant` held.
    static let v18ClaimTokenOrder = """
        DROP INDEX claim_tokens_tenant;
        CREATE INDEX claim_tokens_order ON claim_tokens(created_at, id);
        CREATE INDEX claim_tokens_tenant_order ON claim_tokens(tenant_id, created_at, id);
        """

    static let v1 = """
        CREATE TABLE tenants (
            id TEXT NOT NULL PRIMARY KEY,
            display_name TEXT NOT NULL,
            created_at BIGINT NOT NULL
        );

        CREATE TABLE lots (
            id TEXT NOT NULL PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants(id),
            created_at BIGINT NOT NULL
        );
        CREATE INDEX lots_tenant ON lots(tenant_id);

        CREATE TABLE devices (
            id TEXT NOT NULL PRIMARY KEY,
            tenant_id TEXT NOT NULL REFERENCES tenants(id),
            hardware_serial TEXT NOT NULL UNIQUE,
            lot_id TEXT REFERENCES lots(id),
            state TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            last_seen BIGINT
        );
        CREATE INDEX devices_tenant ON devices(tenant_id, id);
        CREATE INDEX devices_lot ON devices(lot_id, id);
        CREATE INDEX devices_state ON devices(state, id);

        CREATE TABLE credentials (
            serial TEXT NOT NULL PRIMARY KEY,
            device_id TEXT NOT NULL REFERENCES devices(id),
            kind TEXT NOT NULL,
            issuer TEXT NOT NULL,
            not_before BIGINT NOT NULL,
            not_after BIGINT NOT NULL,
            public_key_sha256 TEXT NOT NULL,
            certificate_sha256 TEXT NOT NULL UNIQUE,
            der BLOB NOT NULL,
            status TEXT NOT NULL,
            revoked_at BIGINT,
            revocation_reason TEXT,
            created_at BIGINT NOT NULL
        );
        CREATE INDEX credentials_device ON credentials(device_id);
        CREATE INDEX credentials_status_not_after ON credentials(status, not_after);

        CREATE TABLE claim_tokens (
            id TEXT NOT NULL PRIMARY KEY,
            secret_hash TEXT NOT NULL UNIQUE,
            tenant_id TEXT NOT NULL REFERENCES tenants(id),
            device_id TEXT REFERENCES devices(id),
            expires_at BIGINT NOT NULL,
            uses_remaining INTEGER NOT NULL CHECK (uses_remaining >= 0),
            revoked INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
            created_at BIGINT NOT NULL
        );
        CREATE INDEX claim_tokens_tenant ON claim_tokens(tenant_id);

        CREATE TABLE admin_tokens (
            id TEXT NOT NULL PRIMARY KEY,
            secret_hash TEXT NOT NULL UNIQUE,
            created_at BIGINT NOT NULL
        );

        -- tenant_id, device_id and serial are not foreign keys: the trail also records denials for
        -- unknown devices, and outlives the rows it mentions.
        CREATE TABLE audit_events (
            sequence INTEGER NOT NULL PRIMARY KEY,
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
        """

    /// Tenant enrollment policy. One column per statement: SQLite adds one column per ALTER TABLE.
    static let v2 = """
        ALTER TABLE tenants ADD COLUMN auto_register INTEGER NOT NULL DEFAULT 0 CHECK (auto_register IN (0, 1));
        ALTER TABLE tenants ADD COLUMN manual_approval INTEGER NOT NULL DEFAULT 0 CHECK (manual_approval IN (0, 1));
        """

    /// A claim token may name a device that does not exist yet: bootstrapping it is the token's purpose.
    /// SQLite cannot drop a constraint, so the table is rebuilt without the foreign key on device_id.
    static let v3 = """
        CREATE TABLE claim_tokens_v3 (
            id TEXT NOT NULL PRIMARY KEY,
            secret_hash TEXT NOT NULL UNIQUE,
            tenant_id TEXT NOT NULL REFERENCES tenants(id),
            device_id TEXT,
            expires_at BIGINT NOT NULL,
            uses_remaining INTEGER NOT NULL CHECK (uses_remaining >= 0),
            revoked INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1)),
            created_at BIGINT NOT NULL
        );
        INSERT INTO claim_tokens_v3 SELECT id, secret_hash, tenant_id, device_id, expires_at, uses_remaining, revoked,
            created_at FROM claim_tokens;
        DROP TABLE claim_tokens;
        ALTER TABLE claim_tokens_v3 RENAME TO claim_tokens;
        CREATE INDEX claim_tokens_tenant ON claim_tokens(tenant_id);
        """

    /// Staged key rotation, rotation campaigns and CRL paging. One column per ALTER TABLE.
    /// - `overlap_deadline`: when a superseded credential is revoked at the latest; the sweep for due ones reads
    ///   `(status, overlap_deadline)`.
    /// - `confirmed_at`: the first authentication seen with the credential.
    /// - `rotation_due`: flagged by a rotation campaign.
    /// - `replaced_by`: the successor's serial (not a foreign key, like the audit trail's references).
    /// - `(status, issuer, serial)` and `(status, serial)`: CRL pages, per issuer or for all issuers, in serial
    ///   order without a sort.
    static let v4 = """
        ALTER TABLE credentials ADD COLUMN overlap_deadline BIGINT;
        ALTER TABLE credentials ADD COLUMN confirmed_at BIGINT;
        ALTER TABLE credentials ADD COLUMN rotation_due INTEGER NOT NULL DEFAULT 0 CHECK (rotation_due IN (0, 1));
        ALTER TABLE credentials ADD COLUMN replaced_by TEXT;
        CREATE INDEX credentials_status_overlap_deadline ON credentials(status, overlap_deadline);
        CREATE INDEX credentials_status_issuer_serial ON credentials(status, issuer, serial);
        CREATE INDEX credentials_status_serial ON credentials(status, serial);
        """

    /// A tenant's own MQTT topic rules and API scopes, as JSON (`TopicPolicy`); NULL means the default policy.
    static let v5 = """
        ALTER TABLE tenants ADD COLUMN topic_policy TEXT;
        """

    /// The IDevIDs of DevID's own manufacturer CA, so that its CRL and OCSP responder know them: the serial
    /// (unique; NULL for other devices), and when and why it was revoked. The CRL's pages of revoked IDevIDs
    /// walk the unique index in serial order.
    static let v6 = """
        ALTER TABLE devices ADD COLUMN idevid_serial TEXT;
        ALTER TABLE devices ADD COLUMN idevid_revoked_at BIGINT;
        ALTER TABLE devices ADD COLUMN idevid_revocation_reason TEXT;
        CREATE UNIQUE INDEX devices_idevid_serial ON devices(idevid_serial);
        """

    /// What binds a device to the credential that may enroll it, and what limits a claim token:
    /// - `devices.idevid_issuer_sha256` / `idevid_sha256`: the manufacturer CA (and, from a manifest, the exact
    ///   IDevID certificate) that alone enrolls as the device;
    /// - `devices.enrolled_with_token`: the claim token a device first enrolled with (`devid revoke --token`);
    /// - `claim_tokens.lot_id` / `name_pattern`: where a token that names no device may create devices;
    /// - `tenants.max_unbound_token_uses` / `max_unbound_token_ttl`: the tenant's caps on such tokens (NULL: the
    ///   defaults, 1 use and 24 hours).
    static let v7EnrollmentBindings = """
        ALTER TABLE devices ADD COLUMN idevid_issuer_sha256 TEXT;
        ALTER TABLE devices ADD COLUMN idevid_sha256 TEXT;
        ALTER TABLE devices ADD COLUMN enrolled_with_token TEXT;
        CREATE INDEX devices_enrolled_with_token ON devices(enrolled_with_token);
        ALTER TABLE claim_tokens ADD COLUMN lot_id TEXT;
        ALTER TABLE claim_tokens ADD COLUMN name_pattern TEXT;
        ALTER TABLE tenants ADD COLUMN max_unbound_token_uses INTEGER;
        ALTER TABLE tenants ADD COLUMN max_unbound_token_ttl BIGINT;
        """

    /// Named admin tokens with roles: `name` (unique among tokens that are not revoked), `role` (`admin`,
    /// `operator`, `factory`, `auditor`, `broker`), `tenants` (a JSON array of tenant ids; NULL: every tenant),
    /// `expires_at` (NULL: never), `last_used_at` (written back coalesced), `revoked`. Tokens of earlier versions
    /// become `admin` tokens for every tenant; the oldest one, created at first start, is named `bootstrap`.
    static let v8AdminTokenRoles = """
        ALTER TABLE admin_tokens ADD COLUMN name TEXT NOT NULL DEFAULT '';
        ALTER TABLE admin_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'admin';
        ALTER TABLE admin_tokens ADD COLUMN tenants TEXT;
        ALTER TABLE admin_tokens ADD COLUMN expires_at BIGINT;
        ALTER TABLE admin_tokens ADD COLUMN last_used_at BIGINT;
        ALTER TABLE admin_tokens ADD COLUMN revoked INTEGER NOT NULL DEFAULT 0 CHECK (revoked IN (0, 1));
        UPDATE admin_tokens SET name = id;
        UPDATE admin_tokens SET name = 'bootstrap'
            WHERE id = (SELECT id FROM admin_tokens ORDER BY created_at, id LIMIT 1);
        CREATE UNIQUE INDEX admin_tokens_active_name ON admin_tokens(name) WHERE revoked = 0;
        """

    /// `GET /metrics` counts devices by tenant and state, and the rotation campaign's progress, at every scrape. The
    /// first index answers the counts without reading the table (13 ms instead of 94 ms for 100,000 devices); the
    /// partial one finds the flagged credentials without scanning them all (11 ms instead of 90 ms for 4,000 of
    /// 200,000 credentials), both measured with the sqlite3 shell.
    static let v10FleetHealth = """
        CREATE INDEX devices_tenant_state ON devices(tenant_id, state);
        CREATE INDEX credentials_rotation_due ON credentials(device_id) WHERE rotation_due = 1;
        """

    /// The expiry histogram of `GET /metrics` joins every current LDevID to its device's tenant. Through
    /// `credentials_status_not_after` that is a table read per credential and device lookups in random order: 411 ms
    /// for 100,000 devices (sqlite3 shell, `Benchmarks/metrics/run`). This covering index hands the credentials over
    /// in device order, so the lookups walk the devices' index front to back: 111 ms.
    static let v11FleetExpiry = """
        CREATE INDEX credentials_fleet_expiry ON credentials(status, kind, device_id, not_after);
        """

    /// Hourly counts of the health series (``HealthCount``): one row per hour, metric, tenant and label pair,
    /// bounded by the fixed label sets and pruned after 400 days. Keyed metric first, so a series read is one range
    /// of the primary key.
    ///
    /// Every device's first LDevID (`onboardingTimes`) is the first credential in `credentials_device`; the stale
    /// devices are found through `devices_state`.
    static let v12HealthHistory = """
        CREATE TABLE health_counts (
            metric TEXT NOT NULL,
            hour BIGINT NOT NULL,
            tenant_id TEXT NOT NULL,
            first TEXT NOT NULL,
            second TEXT NOT NULL,
            count INTEGER NOT NULL,
            PRIMARY KEY (metric, hour, tenant_id, first, second)
        ) WITHOUT ROWID;
        CREATE INDEX health_counts_hour ON health_counts(hour);
        CREATE INDEX credentials_kind_created ON credentials(kind, created_at);
        """

    /// The issuing CAs and their states (``IssuingCA``). `credentials_issuer_kind` finds one CA's LDevIDs (taint,
    /// revoke, the per-CA counts of `devid ca issuing list`) without walking every credential.
    static let v13IssuingCAs = """
        CREATE TABLE issuing_cas (
            id INTEGER PRIMARY KEY,
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
        CREATE INDEX credentials_issuer_kind ON credentials(issuer, kind, status);
        """
}
