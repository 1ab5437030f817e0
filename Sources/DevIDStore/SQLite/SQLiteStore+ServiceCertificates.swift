public import DevIDCore
public import Foundation
import GRDB

extension SQLiteStore {
    public func insertServiceCertificate(
        _ certificate: ServiceCertificate, audit: AuditEvent
    ) async throws(StoreError) {
        try await write("insert service certificate") { db in
            // One serial space for everything DevID issues: OCSP and `devid revoke --serial` look a serial up in both.
            if try Bool.fetchOne(
                db, sql: "SELECT EXISTS (SELECT 1 FROM credentials WHERE serial = ?)",
                arguments: [certificate.serial.rawValue]) == true
            {
                throw StoreError(.duplicate, "insert service certificate: credentials.serial already exists")
            }
            try ServiceCertificateRecord(certificate).insert(db)
            try Self.append(audit, db)
        }
    }

    public func serviceCertificate(serial: SerialNumber) async throws(StoreError) -> ServiceCertificate? {
        let record = try await read("read service certificate") { db in
            try ServiceCertificateRecord.fetchOne(db, key: serial.rawValue)
        }
        return try record?.model()
    }

    public func serviceCertificates() async throws(StoreError) -> [ServiceCertificate] {
        let records = try await read("list service certificates") { db in
            try ServiceCertificateRecord.fetchAll(
                db, sql: "SELECT * FROM service_certificates ORDER BY created_at DESC, serial DESC")
        }
        var result: [ServiceCertificate] = []
        for record in records { result.append(try record.model()) }
        return result
    }

    public func revokeServiceCertificate(
        serial: SerialNumber, reason: RevocationReason, at: Date, audit: AuditEvent?
    ) async throws(StoreError) -> Bool {
        try await write("revoke service certificate") { db in
            guard let status = try String.fetchOne(
                db, sql: "SELECT status FROM service_certificates WHERE serial = ?", arguments: [serial.rawValue])
            else {
                throw StoreError(.notFound, "revoke service certificate: no service certificate with serial \(serial)")
            }
            guard status != CredentialStatus.revoked.rawValue else { return false }
            try db.execute(
                sql: """
                    UPDATE service_certificates SET status = ?, revoked_at = ?, revocation_reason = ?
                    WHERE serial = ?
                    """,
                arguments: [
                    CredentialStatus.revoked.rawValue, StoreTime.milliseconds(at), reason.rawValue, serial.rawValue,
                ])
            try Self.append(audit, db)
            return true
        }
    }

    public func revokedServiceCertificates(
        notExpiredAt: Date, afterSerial: SerialNumber?, limit: Int
    ) async throws(StoreError) -> [ServiceCertificate] {
        let records = try await read("list revoked service certificates") { db in
            try ServiceCertificateRecord.fetchAll(
                db,
                sql: """
                    SELECT * FROM service_certificates
                    WHERE status = ? AND not_after > ? AND serial > ?
                    ORDER BY serial LIMIT ?
                    """,
                arguments: [
                    CredentialStatus.revoked.rawValue, StoreTime.milliseconds(notExpiredAt),
                    afterSerial?.rawValue ?? "", max(0, limit),
                ])
        }
        var result: [ServiceCertificate] = []
        for record in records { result.append(try record.model()) }
        return result
    }
}
