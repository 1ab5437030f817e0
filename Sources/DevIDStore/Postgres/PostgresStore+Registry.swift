public import DevIDCore
public import Foundation
import PostgresNIO

// Text keys sort and compare with `COLLATE "C"` (byte order), as SQLite's binary collation does: listings, pages
// (`id > ?`) and CRL order then agree between the two backends whatever the database's locale.

extension PostgresStore {
    // MARK: Tenants and lots

    public func createTenant(_ tenant: Tenant, audit: AuditEvent?) async throws(StoreError) {
        try await write("create tenant") { session in
            try await session.insert(TenantRecord(tenant))
            try await self.append(audit, session)
        }
    }

    public func tenant(_ id: TenantID) async throws(StoreError) -> Tenant? {
        try await read("read tenant") { session in
            try await session.fetchOne(TenantRecord.self, "SELECT * FROM tenants WHERE id = ?", [.text(id.rawValue)])
        }?.model()
    }

    public func tenants() async throws(StoreError) -> [Tenant] {
        try await read("list tenants") { session in
            try await session.fetch(TenantRecord.self, "SELECT * FROM tenants ORDER BY id COLLATE \"C\"")
        }.map { record throws(StoreError) in try record.model() }
    }

    public func updateTenantPolicy(_ id: TenantID, policy: TenantPolicy, audit: AuditEvent?) async throws(StoreError) {
        try await write("update tenant policy") { session in
            let changed = try await session.changes(
                """
                UPDATE tenants SET auto_register = ?, manual_approval = ?, topic_policy = ?, max_unbound_token_uses = ?,
                    max_unbound_token_ttl = ?
                WHERE id = ?
                """,
                [
                    .bool(policy.autoRegister), .bool(policy.manualApproval),
                    .optional(TenantRecord.encode(policy.topics)), .int(policy.maxUnboundTokenUses),
                    .integer(Int64(policy.maxUnboundTokenTTL)), .text(id.rawValue),
                ])
            guard changed > 0 else { throw StoreError(.notFound, "update tenant policy: no such tenant") }
            try await self.append(audit, session)
        }
    }

    public func createLot(_ lot: Lot) async throws(StoreError) {
        try await write("create lot") { session in
            try await session.insert(LotRecord(lot))
        }
    }

    public func lot(_ id: LotID) async throws(StoreError) -> Lot? {
        try await read("read lot") { session in
            try await session.fetchOne(LotRecord.self, "SELECT * FROM lots WHERE id = ?", [.text(id.rawValue)])
        }?.model()
    }

    // MARK: Devices

    public func insertDevice(_ device: Device, audit: AuditEvent?) async throws(StoreError) {
        try await write("insert device") { session in
            try await session.insert(DeviceRecord(device))
            try await self.append(audit, session)
        }
    }

    public func device(_ id: DeviceID) async throws(StoreError) -> Device? {
        try await oneDevice("SELECT * FROM devices WHERE id = ?", .text(id.rawValue))
    }

    public func device(hardwareSerial: String) async throws(StoreError) -> Device? {
        try await oneDevice("SELECT * FROM devices WHERE hardware_serial = ?", .text(hardwareSerial))
    }

    public func device(idevidSerial: SerialNumber) async throws(StoreError) -> Device? {
        try await oneDevice("SELECT * FROM devices WHERE idevid_serial = ?", .text(idevidSerial.rawValue))
    }

    private func oneDevice(_ sql: String, _ key: PostgresValue) async throws(StoreError) -> Device? {
        try await read("read device") { session in
            try await session.fetchOne(DeviceRecord.self, sql, [key])
        }?.model()
    }

    public func devices(_ filter: DeviceFilter) async throws(StoreError) -> [Device] {
        var conditions: [String] = []
        var arguments: [PostgresValue] = []
        if let tenant = filter.tenant {
            conditions.append("tenant_id = ?")
            arguments.append(.text(tenant.rawValue))
        }
        if let lot = filter.lot {
            conditions.append("lot_id = ?")
            arguments.append(.text(lot.rawValue))
        }
        if let state = filter.state {
            conditions.append("state = ?")
            arguments.append(.text(state.rawValue))
        }
        if let token = filter.enrolledWithToken {
            conditions.append("enrolled_with_token = ?")
            arguments.append(.text(token))
        }
        if let after = filter.after {
            conditions.append("id COLLATE \"C\" > ?")
            arguments.append(.text(after.rawValue))
        }
        arguments.append(.int(max(0, filter.limit)))
        let sql = "SELECT * FROM devices"
            + (conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND "))
            + " ORDER BY id COLLATE \"C\" LIMIT ?"
        return try await read("list devices") { [arguments] session in
            try await session.fetch(DeviceRecord.self, sql, arguments)
        }.map { record throws(StoreError) in try record.model() }
    }

    public func updateDeviceState(
        _ id: DeviceID, from expected: DeviceState, to next: DeviceState, audit: AuditEvent?
    ) async throws(StoreError) {
        try await write("update device state") { session in
            let changed = try await session.changes(
                "UPDATE devices SET state = ? WHERE id = ? AND state = ?",
                [.text(next.rawValue), .text(id.rawValue), .text(expected.rawValue)])
            if changed == 0 {
                guard try await session.exists("SELECT 1 FROM devices WHERE id = ?", [.text(id.rawValue)]) else {
                    throw StoreError(.notFound, "update device state: no such device")
                }
                throw StoreError(.conflict, "update device state: device is no longer \(expected.rawValue)")
            }
            try await self.append(audit, session)
        }
    }

    public func recordSeen(_ id: DeviceID, at time: Date) async throws(StoreError) {
        try await write("record device seen") { session in
            let changed = try await session.changes(
                "UPDATE devices SET last_seen = ? WHERE id = ?",
                [.integer(StoreTime.milliseconds(time)), .text(id.rawValue)])
            guard changed > 0 else { throw StoreError(.notFound, "record device seen: no such device") }
        }
    }

    // MARK: Credentials

    public func insertCredential(_ credential: Credential, audit: AuditEvent) async throws(StoreError) {
        try await write("insert credential") { session in
            try await session.insert(CredentialRecord(credential))
            _ = try await self.append(audit, session)
        }
    }

    public func credential(serial: SerialNumber) async throws(StoreError) -> Credential? {
        try await read("read credential") { session in
            try await session.fetchOne(
                CredentialRecord.self, "SELECT * FROM credentials WHERE serial = ?", [.text(serial.rawValue)])
        }?.model()
    }

    public func credential(certificateSHA256: String) async throws(StoreError) -> Credential? {
        let fingerprint = certificateSHA256.lowercased()
        return try await read("read credential") { session in
            try await session.fetchOne(
                CredentialRecord.self, "SELECT * FROM credentials WHERE certificate_sha256 = ?", [.text(fingerprint)])
        }?.model()
    }

    public func credentials(device: DeviceID) async throws(StoreError) -> [Credential] {
        try await read("list credentials") { session in
            try await session.fetch(
                CredentialRecord.self,
                "SELECT * FROM credentials WHERE device_id = ? ORDER BY created_at, serial COLLATE \"C\"",
                [.text(device.rawValue)])
        }.map { record throws(StoreError) in try record.model() }
    }

    public func activeCredentials(device: DeviceID) async throws(StoreError) -> [Credential] {
        try await read("list active credentials") { session in
            try await session.fetch(
                CredentialRecord.self,
                """
                SELECT * FROM credentials WHERE device_id = ? AND status IN (?, ?)
                ORDER BY not_before DESC, created_at DESC, serial COLLATE "C" DESC
                """,
                [
                    .text(device.rawValue), .text(CredentialStatus.active.rawValue),
                    .text(CredentialStatus.superseded.rawValue),
                ])
        }.map { record throws(StoreError) in try record.model() }
    }

    public func updateCredentialStatus(
        serial: SerialNumber, status: CredentialStatus, revokedAt: Date?, reason: RevocationReason?,
        audit: AuditEvent?
    ) async throws(StoreError) {
        try await write("update credential status") { session in
            let changed = try await session.changes(
                "UPDATE credentials SET status = ?, revoked_at = ?, revocation_reason = ? WHERE serial = ?",
                [
                    .text(status.rawValue), .optional(revokedAt.map(StoreTime.milliseconds)),
                    .optional(reason?.rawValue), .text(serial.rawValue),
                ])
            guard changed > 0 else { throw StoreError(.notFound, "update credential status: no such credential") }
            try await self.append(audit, session)
        }
    }

    public func credentialCount() async throws(StoreError) -> Int {
        try await read("count credentials") { session in
            Int(try await session.scalar(Int64.self, "SELECT COUNT(*) FROM credentials") ?? 0)
        }
    }

    // MARK: Claim tokens

    public func insertClaimToken(_ token: ClaimToken, audit: AuditEvent?) async throws(StoreError) {
        try await write("insert claim token") { session in
            try await session.insert(ClaimTokenRecord(token))
            try await self.append(audit, session)
        }
    }

    public func claimToken(id: String) async throws(StoreError) -> ClaimToken? {
        try await read("read claim token") { session in
            try await session.fetchOne(ClaimTokenRecord.self, "SELECT * FROM claim_tokens WHERE id = ?", [.text(id)])
        }?.model()
    }

    public func claimToken(secretHash: String) async throws(StoreError) -> ClaimToken? {
        try await read("read claim token") { session in
            try await session.fetchOne(
                ClaimTokenRecord.self, "SELECT * FROM claim_tokens WHERE secret_hash = ?", [.text(secretHash)])
        }?.model()
    }

    public func claimTokens(_ filter: ClaimTokenFilter) async throws(StoreError) -> [ClaimToken] {
        try await read("list claim tokens") { session in
            var conditions: [String] = []
            var values: [PostgresValue] = []
            if let tenant = filter.tenant {
                conditions.append("tenant_id = ?")
                values.append(.text(tenant.rawValue))
            }
            if let after = filter.after {
                guard
                    let cursor = try await session.fetchOne(
                        ClaimTokenRecord.self, "SELECT * FROM claim_tokens WHERE id = ?", [.text(after)])
                else {
                    throw StoreError(.notFound, "list claim tokens: no claim token \(after) to continue after")
                }
                // A row value, which the listing-order index answers (`id` is COLLATE "C" in the table).
                conditions.append("(created_at, id) < (?, ?)")
                values += [.integer(cursor.createdAt), .text(cursor.id)]
            }
            let whereClause = conditions.isEmpty ? "" : " WHERE " + conditions.joined(separator: " AND ")
            return try await session.fetch(
                ClaimTokenRecord.self,
                "SELECT * FROM claim_tokens" + whereClause + " ORDER BY created_at DESC, id DESC LIMIT ?",
                values + [.integer(Int64(filter.limit))])
        }.map { record throws(StoreError) in try record.model() }
    }

    public func consumeClaimToken(id: String, now: Date) async throws(StoreError) -> ClaimToken {
        let nowMilliseconds = StoreTime.milliseconds(now)
        return try await write("consume claim token") { session in
            // One conditional UPDATE: the usability check and the decrement cannot be split by another writer.
            let changed = try await session.changes(
                """
                UPDATE claim_tokens SET uses_remaining = uses_remaining - 1
                WHERE id = ? AND uses_remaining > 0 AND revoked = 0 AND expires_at > ?
                """, [.text(id), .integer(nowMilliseconds)])
            guard
                let record = try await session.fetchOne(
                    ClaimTokenRecord.self, "SELECT * FROM claim_tokens WHERE id = ?", [.text(id)])
            else {
                throw StoreError(.notFound, "consume claim token: no such token")
            }
            guard changed > 0 else { throw ClaimTokenRules.unusable(try record.model(), now: now) }
            var before = try record.model()
            before.usesRemaining += 1
            return before
        }
    }

    public func revokeClaimToken(id: String, audit: AuditEvent?) async throws(StoreError) {
        try await write("revoke claim token") { session in
            let changed = try await session.changes("UPDATE claim_tokens SET revoked = 1 WHERE id = ?", [.text(id)])
            guard changed > 0 else { throw StoreError(.notFound, "revoke claim token: no such token") }
            try await self.append(audit, session)
        }
    }

    // MARK: Admin tokens

    public func insertAdminToken(_ token: AdminToken, audit: AuditEvent?) async throws(StoreError) {
        try await write("insert admin token") { session in
            try await session.insert(AdminTokenRecord(token))
            try await self.append(audit, session)
        }
    }

    public func adminTokens() async throws(StoreError) -> [AdminToken] {
        try await read("list admin tokens") { session in
            try await session.fetch(AdminTokenRecord.self, "SELECT * FROM admin_tokens ORDER BY id COLLATE \"C\"")
        }.map { record throws(StoreError) in try record.model() }
    }

    public func revokeAdminToken(id: String, now: Date, audit: AuditEvent?) async throws(StoreError) -> AdminToken {
        try await write("revoke admin token") { session in
            guard
                let record = try await session.fetchOne(
                    AdminTokenRecord.self, "SELECT * FROM admin_tokens WHERE id = ?", [.text(id)])
            else {
                throw StoreError(.notFound, "revoke admin token: no such token")
            }
            let token = try record.model()
            guard !token.revoked else { throw StoreError(.conflict, "admin token \(token.id) is already revoked") }
            if token.role == .admin {
                let others = try await session.fetch(
                    AdminTokenRecord.self, "SELECT * FROM admin_tokens WHERE id <> ?", [.text(id)]
                )
                .compactMap { try? $0.model() }
                .filter { $0.role == .admin && $0.isUsable(at: now) }
                guard !others.isEmpty else {
                    throw StoreError(
                        .conflict,
                        "admin token \(token.id) (\(token.name)) is the last usable admin token; create another first")
                }
            }
            try await session.execute("UPDATE admin_tokens SET revoked = 1 WHERE id = ?", [.text(id)])
            try await self.append(audit, session)
            var revoked = token
            revoked.revoked = true
            return revoked
        }
    }

    public func recordAdminTokenUse(_ lastUsed: [String: Date]) async throws(StoreError) {
        guard !lastUsed.isEmpty else { return }
        try await write("record admin token use") { session in
            for (id, time) in lastUsed.sorted(by: { $0.key < $1.key }) {
                let millis = StoreTime.milliseconds(time)
                try await session.execute(
                    """
                    UPDATE admin_tokens SET last_used_at = ?
                    WHERE id = ? AND (last_used_at IS NULL OR last_used_at < ?)
                    """, [.integer(millis), .text(id), .integer(millis)])
            }
        }
    }
}
