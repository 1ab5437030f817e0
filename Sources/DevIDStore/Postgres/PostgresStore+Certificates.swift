public import DevIDCore
public import Foundation
import PostgresNIO

// Issuing CAs and service certificates, as ``SQLiteStore`` records them. A duplicate key is looked for before
// the insert (writes hold the write lock, so nothing slips in between): PostgreSQL names the violated
// constraint (`issuing_cas_pkey`) where SQLite names the column, and the refusal's text must stay SQLite's
// (`issuing_cas.id already exists`). Text orderings use `COLLATE "C"`, SQLite's byte order.
extension PostgresStore {
    // MARK: Issuing CAs

    public func issuingCAs() async throws(StoreError) -> [IssuingCA] {
        try await read("list issuing CAs") { session in
            try await session.rows(
                """
                SELECT id, subject, sha256, serial, not_before, not_after, state, created_at, state_changed_at,
                    revocation_reason
                FROM issuing_cas ORDER BY id
                """
            ).map(Self.issuingCA)
        }
    }

    public func insertIssuingCA(_ ca: IssuingCA, audit: AuditEvent?) async throws(StoreError) {
        let operation = "record issuing CA"
        try await write(operation) { session in
            // In SQLite's check order: the rowid, then the unique indexes newest first.
            try await Self.refuseDuplicate(
                session, operation, table: "issuing_cas",
                [("id", .int(ca.id)), ("sha256", .text(ca.sha256)), ("subject", .text(ca.subject))])
            try await session.execute(
                """
                INSERT INTO issuing_cas (id, subject, sha256, serial, not_before, not_after, state, created_at,
                    state_changed_at, revocation_reason)
                VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
                """,
                [
                    .int(ca.id), .text(ca.subject), .text(ca.sha256), .text(ca.serial),
                    .integer(StoreTime.milliseconds(ca.notBefore)), .integer(StoreTime.milliseconds(ca.notAfter)),
                    .text(ca.state.rawValue), .integer(StoreTime.milliseconds(ca.createdAt)),
                    .integer(StoreTime.milliseconds(ca.stateChangedAt)), .optional(ca.revocationReason),
                ])
            try await self.append(audit, session)
        }
    }

    public func changeIssuingCAStates(
        _ changes: [IssuingCATransitions.Change], at: Date, revocationReason: String?, audit: AuditEvent
    ) async throws(StoreError) {
        let operation = "change issuing CA states"
        try await write(operation) { session in
            for change in changes {
                guard
                    let current = try await session.scalar(
                        String.self, "SELECT state FROM issuing_cas WHERE id = ?", [.int(change.id)])
                else { throw StoreError(.notFound, "\(operation): no issuing CA \(change.id)") }
                guard current == change.from.rawValue else {
                    throw StoreError(
                        .conflict, "\(operation): issuing CA \(change.id) is \(current), not \(change.from.rawValue)")
                }
                // `?::TEXT`: the reason may be a NULL bind, whose type PostgreSQL cannot infer.
                try await session.execute(
                    """
                    UPDATE issuing_cas SET state = ?, state_changed_at = ?,
                        revocation_reason = CASE WHEN ?::TEXT = 'revoked' THEN ?::TEXT ELSE revocation_reason END
                    WHERE id = ?
                    """,
                    [
                        .text(change.to.rawValue), .integer(StoreTime.milliseconds(at)), .text(change.to.rawValue),
                        .optional(revocationReason), .int(change.id),
                    ])
            }
            _ = try await self.append(audit, session)
        }
    }

    public func ldevidCountsByIssuer(now: Date, seenSince: Date) async throws(StoreError) -> [String: IssuerLDevIDCounts] {
        try await read("count LDevIDs by issuer") { session in
            let rows = try await session.rows(
                """
                SELECT c.issuer, COUNT(*), COUNT(*) FILTER (WHERE c.status = ? AND d.last_seen >= ?)
                FROM credentials c JOIN devices d ON d.id = c.device_id
                WHERE c.kind = ? AND c.status IN (?, ?) AND c.not_after > ?
                GROUP BY c.issuer
                """,
                [
                    .text(CredentialStatus.active.rawValue), .integer(StoreTime.milliseconds(seenSince)),
                    .text(CredentialKind.ldevid.rawValue), .text(CredentialStatus.active.rawValue),
                    .text(CredentialStatus.superseded.rawValue), .integer(StoreTime.milliseconds(now)),
                ])
            var counts: [String: IssuerLDevIDCounts] = [:]
            for row in rows {
                let (issuer, current, online) = try row.decode((String, Int, Int).self)
                counts[issuer] = IssuerLDevIDCounts(current: current, online: online)
            }
            return counts
        }
    }

    private static func issuingCA(_ row: PostgresRow) throws -> IssuingCA {
        let (id, subject, sha256, serial, notBefore, notAfter, stateText, createdAt, stateChangedAt, reason) =
            try row.decode((Int, String, String, String, Int64, Int64, String, Int64, Int64, String?).self)
        guard let state = IssuingCAState(rawValue: stateText) else {
            throw StoreError(.corrupt, "issuing CA with an unknown state")
        }
        return IssuingCA(
            id: id, subject: subject, sha256: sha256, serial: serial,
            notBefore: StoreTime.date(milliseconds: notBefore), notAfter: StoreTime.date(milliseconds: notAfter),
            state: state, createdAt: StoreTime.date(milliseconds: createdAt),
            stateChangedAt: StoreTime.date(milliseconds: stateChangedAt), revocationReason: reason)
    }

    /// Throws SQLite's `.duplicate` refusal for the first of `columns` whose value `table` already holds.
    private static func refuseDuplicate(
        _ session: PostgresSession, _ operation: String, table: String, _ columns: [(String, PostgresValue)]
    ) async throws {
        for (column, value) in columns {
            if try await session.exists("SELECT 1 FROM \(table) WHERE \(column) = ?", [value]) {
                throw StoreError(.duplicate, "\(operation): \(table).\(column) already exists")
            }
        }
    }

    // MARK: Service certificates

    public func insertServiceCertificate(
        _ certificate: ServiceCertificate, audit: AuditEvent
    ) async throws(StoreError) {
        let operation = "insert service certificate"
        try await write(operation) { session in
            // One serial space for everything DevID issues: OCSP and `devid revoke --serial` look a serial up in both.
            if try await session.exists(
                "SELECT 1 FROM credentials WHERE serial = ?", [.text(certificate.serial.rawValue)])
            {
                throw StoreError(.duplicate, "insert service certificate: credentials.serial already exists")
            }
            // In SQLite's check order (its unique indexes newest first).
            try await Self.refuseDuplicate(
                session, operation, table: "service_certificates",
                [
                    ("certificate_sha256", .text(certificate.certificateSHA256)),
                    ("serial", .text(certificate.serial.rawValue)),
                ])
            try await session.insert(ServiceCertificateRecord(certificate))
            _ = try await self.append(audit, session)
        }
    }

    public func serviceCertificate(serial: SerialNumber) async throws(StoreError) -> ServiceCertificate? {
        let record = try await read("read service certificate") { session in
            try await session.fetchOne(
                ServiceCertificateRecord.self, "SELECT * FROM service_certificates WHERE serial = ?",
                [.text(serial.rawValue)])
        }
        return try record?.model()
    }

    public func serviceCertificates() async throws(StoreError) -> [ServiceCertificate] {
        let records = try await read("list service certificates") { session in
            try await session.fetch(
                ServiceCertificateRecord.self,
                #"SELECT * FROM service_certificates ORDER BY created_at DESC, serial COLLATE "C" DESC"#)
        }
        var result: [ServiceCertificate] = []
        for record in records { result.append(try record.model()) }
        return result
    }

    public func revokeServiceCertificate(
        serial: SerialNumber, reason: RevocationReason, at: Date, audit: AuditEvent?
    ) async throws(StoreError) -> Bool {
        try await write("revoke service certificate") { session in
            guard
                let status = try await session.scalar(
                    String.self, "SELECT status FROM service_certificates WHERE serial = ?", [.text(serial.rawValue)])
            else {
                throw StoreError(.notFound, "revoke service certificate: no service certificate with serial \(serial)")
            }
            guard status != CredentialStatus.revoked.rawValue else { return false }
            try await session.execute(
                """
                UPDATE service_certificates SET status = ?, revoked_at = ?, revocation_reason = ?
                WHERE serial = ?
                """,
                [
                    .text(CredentialStatus.revoked.rawValue), .integer(StoreTime.milliseconds(at)),
                    .text(reason.rawValue), .text(serial.rawValue),
                ])
            try await self.append(audit, session)
            return true
        }
    }

    public func revokedServiceCertificates(
        notExpiredAt: Date, afterSerial: SerialNumber?, limit: Int
    ) async throws(StoreError) -> [ServiceCertificate] {
        let records = try await read("list revoked service certificates") { session in
            try await session.fetch(
                ServiceCertificateRecord.self,
                """
                SELECT * FROM service_certificates
                WHERE status = ? AND not_after > ? AND serial COLLATE "C" > ?
                ORDER BY serial COLLATE "C" LIMIT ?
                """,
                [
                    .text(CredentialStatus.revoked.rawValue), .integer(StoreTime.milliseconds(notExpiredAt)),
                    .text(afterSerial?.rawValue ?? ""), .int(max(0, limit)),
                ])
        }
        var result: [ServiceCertificate] = []
        for record in records { result.append(try record.model()) }
        return result
    }
}
