public import DevIDCore
import GRDB

extension SQLiteStore {
    /// One write transaction. What the store already holds is read first, set-wise: tenants and lots one by
    /// one (a manifest names few), devices by id and by hardware serial with `IN` lists of up to
    /// ``lookupChunk`` values, through cached (prepared) statements. ``DeviceImportPlan`` then decides from
    /// memory, and the inserts run through one cached statement. 10,000 devices take well under a second.
    public func importDevices(_ devices: [Device], audit: AuditEvent) async throws(StoreError) -> DeviceImportResult {
        try await write("import devices") { db in
            var tenants: Set<TenantID> = []
            let tenantByID = try db.cachedStatement(sql: "SELECT 1 FROM tenants WHERE id = ?")
            for tenant in Set(devices.map(\.tenant))
            where try Row.fetchOne(tenantByID, arguments: [tenant.rawValue]) != nil {
                tenants.insert(tenant)
            }

            var lotTenants: [LotID: TenantID] = [:]
            let lotByID = try db.cachedStatement(sql: "SELECT tenant_id FROM lots WHERE id = ?")
            for lot in Set(devices.compactMap(\.lot)) {
                if let owner = try String.fetchOne(lotByID, arguments: [lot.rawValue]) {
                    lotTenants[lot] = try SQLiteColumn.decode(TenantID.init(rawValue:), owner, "lots.tenant_id")
                }
            }

            var registered: [String: DeviceImportPlan.Registered] = [:]
            try Self.forEachRow(
                db, "SELECT id, tenant_id, hardware_serial, lot_id, idevid_serial FROM devices WHERE id IN",
                devices.map(\.id.rawValue)
            ) { row in
                registered[try row.decode(atIndex: 0)] = DeviceImportPlan.Registered(
                    tenant: try row.decode(atIndex: 1), hardwareSerial: try row.decode(atIndex: 2),
                    lot: try row.decode(atIndex: 3), idevidSerial: try row.decode(atIndex: 4))
            }
            var takenSerials: Set<String> = []
            try Self.forEachRow(
                db, "SELECT hardware_serial FROM devices WHERE hardware_serial IN", devices.map(\.hardwareSerial)
            ) { row in
                takenSerials.insert(try row.decode(atIndex: 0))
            }
            var takenIDevIDs: Set<String> = []
            try Self.forEachRow(
                db, "SELECT idevid_serial FROM devices WHERE idevid_serial IN",
                devices.compactMap(\.idevidSerial?.rawValue)
            ) { row in
                takenIDevIDs.insert(try row.decode(atIndex: 0))
            }

            var plan = DeviceImportPlan(time: audit.time)
            for device in devices {
                try plan.add(
                    device,
                    DeviceImportPlan.Stored(
                        tenantExists: tenants.contains(device.tenant),
                        lotTenant: device.lot.flatMap { lotTenants[$0] },
                        registered: registered[device.id.rawValue],
                        hardwareSerialTaken: takenSerials.contains(device.hardwareSerial),
                        idevidSerialTaken: device.idevidSerial.map { takenIDevIDs.contains($0.rawValue) } ?? false))
            }

            for lot in plan.lots {
                try LotRecord(lot).insert(db)
            }
            let insertDevice = try db.cachedStatement(
                sql: """
                    INSERT INTO devices (id, tenant_id, hardware_serial, lot_id, state, created_at, last_seen, idevid_serial,
                        idevid_issuer_sha256, idevid_sha256)
                    VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                    """)
            for device in plan.devices {
                try insertDevice.execute(arguments: [
                    device.id.rawValue, device.tenant.rawValue, device.hardwareSerial, device.lot?.rawValue,
                    device.state.rawValue, StoreTime.milliseconds(device.createdAt),
                    device.lastSeen.map(StoreTime.milliseconds), device.idevidSerial?.rawValue,
                    device.idevidIssuerSHA256, device.idevidSHA256,
                ])
            }
            // Devices registered before IDevIDs were bound to their manufacturer CA get the binding from the
            // manifest that names them again (same id and hardware serial, never overwriting a binding).
            let bind = try db.cachedStatement(
                sql: """
                    UPDATE devices SET idevid_issuer_sha256 = ?, idevid_sha256 = ?
                    WHERE id = ? AND hardware_serial = ? AND idevid_issuer_sha256 IS NULL
                    """)
            for device in devices where device.idevidIssuerSHA256 != nil {
                try bind.execute(arguments: [
                    device.idevidIssuerSHA256, device.idevidSHA256, device.id.rawValue, device.hardwareSerial,
                ])
            }
            if !plan.idevidBackfills.isEmpty {
                // See ``DeviceImportPlan/IDevIDBackfill``: a `revoked` device's IDevID is revoked with the time and
                // reason of its newest credential revoked for another reason than `superseded` (rotation is not
                // what revoked the device), or at the import's time without a reason.
                let newestRevoked = """
                    FROM credentials c WHERE c.device_id = devices.id AND c.status = ? AND c.revocation_reason IS NOT ?
                    ORDER BY c.revoked_at DESC, c.serial DESC LIMIT 1
                    """
                let backfill = try db.cachedStatement(
                    sql: """
                        UPDATE devices SET idevid_serial = ?,
                            idevid_revoked_at = CASE WHEN state = ?
                                THEN COALESCE((SELECT c.revoked_at \(newestRevoked)), ?) END,
                            idevid_revocation_reason = CASE WHEN state = ?
                                THEN (SELECT c.revocation_reason \(newestRevoked)) END
                        WHERE id = ? AND idevid_serial IS NULL
                        """)
                let revoked = CredentialStatus.revoked.rawValue
                let revokedState = DeviceState.revoked.rawValue
                let superseded = RevocationReason.superseded.rawValue
                for entry in plan.idevidBackfills {
                    try backfill.execute(arguments: [
                        entry.serial.rawValue, revokedState, revoked, superseded, StoreTime.milliseconds(audit.time),
                        revokedState, revoked, superseded, entry.device.rawValue,
                    ])
                }
            }
            _ = try Self.append(audit, db)
            return plan.result
        }
    }

    /// Bound parameters per `IN` list: below SQLite's historical limit of 999 variables per statement.
    static let lookupChunk = 500

    /// Runs `prefix (?, ?, ...)` over `values`, ``lookupChunk`` at a time, and hands every row to `body`.
    /// Only the number of placeholders varies, so every full chunk reuses one cached statement.
    private static func forEachRow(
        _ db: Database, _ prefix: String, _ values: [String], _ body: (Row) throws -> Void
    ) throws {
        var start = values.startIndex
        while start < values.endIndex {
            let end = min(start + lookupChunk, values.endIndex)
            let placeholders = repeatElement("?", count: end - start).joined(separator: ", ")
            let statement = try db.cachedStatement(sql: "\(prefix) (\(placeholders))")
            let rows = try Row.fetchCursor(statement, arguments: StatementArguments(values[start..<end]))
            while let row = try rows.next() { try body(row) }
            start = end
        }
    }
}
