public import DevIDCore
import Foundation
import PostgresNIO

extension PostgresStore {
    /// The steps of ``Issuance``, in its order, inside one write transaction: a refusal throws, and the
    /// transaction rolls back everything before it. The write lock makes a claim token's use and a device's state
    /// change one step across every server: of three servers enrolling with the same single-use token at once,
    /// exactly one commits.
    public func recordIssuance(_ issuance: Issuance) async throws(StoreError) {
        let operation = "record issuance"
        try await write(operation) { session in
            let credential = issuance.credential
            let deviceID = credential.deviceID.rawValue

            if let device = issuance.registerDevice {
                guard device.id == credential.deviceID else {
                    throw StoreError(.conflict, "\(operation): the device to register is not the credential's device")
                }
                try await session.insert(DeviceRecord(device))
            }

            try await session.insert(CredentialRecord(credential))
            guard
                let device = try await session.fetchOne(
                    DeviceRecord.self, "SELECT * FROM devices WHERE id = ?", [.text(deviceID)])?.model()
            else {
                throw StoreError(.notFound, "\(operation): no such device")
            }

            if let transition = issuance.transition {
                let changed = try await session.changes(
                    "UPDATE devices SET state = ? WHERE id = ? AND state = ?",
                    [.text(transition.next.rawValue), .text(deviceID), .text(transition.expected.rawValue)])
                guard changed > 0 else {
                    throw StoreError(.conflict, "\(operation): device is no longer \(transition.expected.rawValue)")
                }
            }

            if let tokenID = issuance.consumeToken {
                guard
                    let token = try await session.fetchOne(
                        ClaimTokenRecord.self, "SELECT * FROM claim_tokens WHERE id = ?", [.text(tokenID)])?.model()
                else {
                    throw StoreError(.notFound, "\(operation): no such claim token")
                }
                if let mismatch = ClaimTokenRules.mismatch(token, device: device, operation) { throw mismatch }
                let changed = try await session.changes(
                    """
                    UPDATE claim_tokens SET uses_remaining = uses_remaining - 1
                    WHERE id = ? AND uses_remaining > 0 AND revoked = 0 AND expires_at > ?
                    """, [.text(tokenID), .integer(StoreTime.milliseconds(issuance.now))])
                guard changed > 0 else { throw ClaimTokenRules.unusable(token, now: issuance.now, operation) }
            }

            var listed: Set<SerialNumber> = []
            for serial in issuance.supersede {
                guard serial != credential.serial else {
                    throw StoreError(.conflict, "\(operation): cannot supersede the credential being issued")
                }
                guard listed.insert(serial).inserted else {
                    throw StoreError(.conflict, "\(operation): a credential to supersede is listed twice")
                }
                guard
                    var existing = try await session.fetchOne(
                        CredentialRecord.self, "SELECT * FROM credentials WHERE serial = ?", [.text(serial.rawValue)])
                else {
                    throw StoreError(.notFound, "\(operation): no such credential to supersede")
                }
                guard existing.deviceID == deviceID else {
                    throw StoreError(.conflict, "\(operation): a credential to supersede belongs to another device")
                }
                let deadline = StoreTime.normalized(issuance.overlapDeadline)
                switch existing.status {
                case CredentialStatus.active.rawValue:
                    existing.overlapDeadline = deadline.map(StoreTime.milliseconds)
                case CredentialStatus.superseded.rawValue:
                    if let refusal = Issuance.successorLeftOut(
                        existing.replacedBy.flatMap(SerialNumber.init(rawValue:)), of: serial, in: issuance, operation)
                    {
                        throw refusal
                    }
                    existing.overlapDeadline = RotationRules.earlierDeadline(
                        existing.overlapDeadline.map { StoreTime.date(milliseconds: $0) }, deadline
                    ).map(StoreTime.milliseconds)
                default:
                    throw StoreError(.conflict, "\(operation): a credential to supersede is no longer active")
                }
                try await session.execute(
                    "UPDATE credentials SET status = ?, replaced_by = ?, overlap_deadline = ? WHERE serial = ?",
                    [
                        .text(CredentialStatus.superseded.rawValue), .text(credential.serial.rawValue),
                        .optional(existing.overlapDeadline), .text(serial.rawValue),
                    ])
            }

            try await session.execute(
                "UPDATE devices SET last_seen = ? WHERE id = ?",
                [.integer(StoreTime.milliseconds(issuance.now)), .text(deviceID)])
            _ = try await self.append(issuance.audit, session)
        }
    }

    /// One write transaction, as on SQLite (see ``SQLiteStore/importDevices(_:audit:)``): what the registry holds is
    /// read set-wise (`= ANY(text[])`, one statement per lookup, no chunks), ``DeviceImportPlan`` decides from
    /// memory, and the devices are inserted by one statement over `unnest` of column arrays (a nullable column
    /// travels as text with '' for NULL: no id, serial or fingerprint is empty).
    public func importDevices(_ devices: [Device], audit: AuditEvent) async throws(StoreError) -> DeviceImportResult {
        try await write("import devices") { session in
            let tenants = Set(
                try await session.rows(
                    "SELECT id FROM tenants WHERE id = ANY(?)", [.texts(Set(devices.map(\.tenant.rawValue)).sorted())]
                ).compactMap { TenantID(rawValue: try $0.decode(String.self)) })

            var lotTenants: [LotID: TenantID] = [:]
            for row in try await session.rows(
                "SELECT id, tenant_id FROM lots WHERE id = ANY(?)",
                [.texts(Set(devices.compactMap(\.lot?.rawValue)).sorted())])
            {
                let (lot, owner) = try row.decode((String, String).self)
                guard let lot = LotID(rawValue: lot) else { continue }
                lotTenants[lot] = try SQLiteColumn.decode(TenantID.init(rawValue:), owner, "lots.tenant_id")
            }

            var registered: [String: DeviceImportPlan.Registered] = [:]
            for row in try await session.rows(
                "SELECT id, tenant_id, hardware_serial, lot_id, idevid_serial FROM devices WHERE id = ANY(?)",
                [.texts(devices.map(\.id.rawValue))])
            {
                let (id, tenant, hardwareSerial, lot, idevidSerial) = try row.decode(
                    (String, String, String, String?, String?).self)
                registered[id] = DeviceImportPlan.Registered(
                    tenant: tenant, hardwareSerial: hardwareSerial, lot: lot, idevidSerial: idevidSerial)
            }
            let takenSerials = Set(
                try await session.rows(
                    "SELECT hardware_serial FROM devices WHERE hardware_serial = ANY(?)",
                    [.texts(devices.map(\.hardwareSerial))]
                ).map { try $0.decode(String.self) })
            let takenIDevIDs = Set(
                try await session.rows(
                    "SELECT idevid_serial FROM devices WHERE idevid_serial = ANY(?)",
                    [.texts(devices.compactMap(\.idevidSerial?.rawValue))]
                ).map { try $0.decode(String.self) })

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
                try await session.insert(LotRecord(lot))
            }
            if !plan.devices.isEmpty {
                let rows = plan.devices
                func column(_ value: (Device) -> String?) -> PostgresValue { .texts(rows.map { value($0) ?? "" }) }
                try await session.execute(
                    """
                    INSERT INTO devices (id, tenant_id, hardware_serial, lot_id, state, created_at, last_seen, idevid_serial,
                        idevid_issuer_sha256, idevid_sha256)
                    SELECT id, tenant_id, hardware_serial, NULLIF(lot_id, ''), state, created_at::BIGINT,
                        NULLIF(last_seen, '')::BIGINT, NULLIF(idevid_serial, ''), NULLIF(idevid_issuer_sha256, ''),
                        NULLIF(idevid_sha256, '')
                    FROM unnest(?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[], ?::text[],
                        ?::text[], ?::text[])
                        AS u(id, tenant_id, hardware_serial, lot_id, state, created_at, last_seen, idevid_serial,
                            idevid_issuer_sha256, idevid_sha256)
                    """,
                    [
                        column(\.id.rawValue), column(\.tenant.rawValue), column(\.hardwareSerial),
                        column(\.lot?.rawValue), column(\.state.rawValue),
                        column { String(StoreTime.milliseconds($0.createdAt)) },
                        column { $0.lastSeen.map { String(StoreTime.milliseconds($0)) } },
                        column(\.idevidSerial?.rawValue), column(\.idevidIssuerSHA256), column(\.idevidSHA256),
                    ])
            }
            // Devices registered before IDevIDs were bound to their manufacturer CA get the binding from the
            // manifest that names them again (same id and hardware serial, never overwriting a binding).
            for device in devices where device.idevidIssuerSHA256 != nil {
                try await session.execute(
                    """
                    UPDATE devices SET idevid_issuer_sha256 = ?, idevid_sha256 = ?
                    WHERE id = ? AND hardware_serial = ? AND idevid_issuer_sha256 IS NULL
                    """,
                    [
                        .optional(device.idevidIssuerSHA256), .optional(device.idevidSHA256), .text(device.id.rawValue),
                        .text(device.hardwareSerial),
                    ])
            }
            if !plan.idevidBackfills.isEmpty {
                // See ``DeviceImportPlan/IDevIDBackfill`` and the SQLite version.
                let newestRevoked = """
                    FROM credentials c WHERE c.device_id = devices.id AND c.status = ?
                        AND c.revocation_reason IS DISTINCT FROM ?
                    ORDER BY c.revoked_at DESC NULLS LAST, c.serial COLLATE "C" DESC LIMIT 1
                    """
                let revoked = CredentialStatus.revoked.rawValue
                let revokedState = DeviceState.revoked.rawValue
                let superseded = RevocationReason.superseded.rawValue
                for entry in plan.idevidBackfills {
                    try await session.execute(
                        """
                        UPDATE devices SET idevid_serial = ?,
                            idevid_revoked_at = CASE WHEN state = ?
                                THEN COALESCE((SELECT c.revoked_at \(newestRevoked)), ?) END,
                            idevid_revocation_reason = CASE WHEN state = ?
                                THEN (SELECT c.revocation_reason \(newestRevoked)) END
                        WHERE id = ? AND idevid_serial IS NULL
                        """,
                        [
                            .text(entry.serial.rawValue), .text(revokedState), .text(revoked), .text(superseded),
                            .integer(StoreTime.milliseconds(audit.time)), .text(revokedState), .text(revoked),
                            .text(superseded), .text(entry.device.rawValue),
                        ])
                }
            }
            _ = try await self.append(audit, session)
            return plan.result
        }
    }
}
