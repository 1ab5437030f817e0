public import DevIDCore
public import Foundation

extension MemoryStore {
    public func insertServiceCertificate(_ certificate: ServiceCertificate, audit: AuditEvent) throws(StoreError) {
        guard serviceCertificateRows[certificate.serial] == nil else {
            throw StoreError(.duplicate, "insert service certificate: service_certificates.serial already exists")
        }
        guard credential(serial: certificate.serial) == nil else {
            throw StoreError(.duplicate, "insert service certificate: credentials.serial already exists")
        }
        guard !serviceCertificateRows.values.contains(where: { $0.certificateSHA256 == certificate.certificateSHA256 })
        else {
            throw StoreError(
                .duplicate, "insert service certificate: service_certificates.certificate_sha256 already exists")
        }
        var certificate = certificate
        certificate.notBefore = StoreTime.normalized(certificate.notBefore)
        certificate.notAfter = StoreTime.normalized(certificate.notAfter)
        certificate.revokedAt = StoreTime.normalized(certificate.revokedAt)
        certificate.createdAt = StoreTime.normalized(certificate.createdAt)
        serviceCertificateRows[certificate.serial] = certificate
        note(.serviceCertificate, certificate.serial.rawValue, certificate.status.rawValue)
        appendAudit(audit)
    }

    public func serviceCertificate(serial: SerialNumber) -> ServiceCertificate? { serviceCertificateRows[serial] }

    public func serviceCertificates() -> [ServiceCertificate] {
        serviceCertificateRows.values.sorted {
            ($0.createdAt, $0.serial.rawValue) > ($1.createdAt, $1.serial.rawValue)
        }
    }

    public func revokeServiceCertificate(
        serial: SerialNumber, reason: RevocationReason, at: Date, audit: AuditEvent?
    ) throws(StoreError) -> Bool {
        guard let row = serviceCertificateRows[serial] else {
            throw StoreError(.notFound, "revoke service certificate: no service certificate with serial \(serial)")
        }
        guard row.status != .revoked else { return false }
        if serviceCertificateRows[serial]?.status != .revoked { note(.serviceCertificate, serial.rawValue, "revoked") }
        serviceCertificateRows[serial]?.status = .revoked
        serviceCertificateRows[serial]?.revokedAt = StoreTime.normalized(at)
        serviceCertificateRows[serial]?.revocationReason = reason
        if let audit { appendAudit(audit) }
        return true
    }

    public func revokedServiceCertificates(
        notExpiredAt: Date, afterSerial: SerialNumber?, limit: Int
    ) -> [ServiceCertificate] {
        let now = StoreTime.normalized(notExpiredAt)
        let matching = serviceCertificateRows.values.filter { row in
            row.status == .revoked && row.notAfter > now
                && (afterSerial.map { $0.rawValue.utf8.lexicographicallyPrecedes(row.serial.rawValue.utf8) } ?? true)
        }
        return Array(
            matching.sorted { $0.serial.rawValue.utf8.lexicographicallyPrecedes($1.serial.rawValue.utf8) }
                .prefix(max(0, limit)))
    }
}
