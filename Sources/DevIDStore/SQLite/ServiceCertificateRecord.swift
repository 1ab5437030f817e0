import DevIDCore
import Foundation
import GRDB

extension SQLiteSchema {
    /// Certificates of the services CA (brokers' TLS certificates): recorded like credentials, but of no device.
    /// `names` is the SANs joined by spaces (a DNS name or IP address holds none). The CRL's pages walk
    /// `(status, serial)` in serial order.
    static let v9ServiceCertificates = """
        CREATE TABLE service_certificates (
            serial TEXT NOT NULL PRIMARY KEY,
            service TEXT NOT NULL,
            names TEXT NOT NULL,
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
        CREATE INDEX service_certificates_status_serial ON service_certificates(status, serial);
        CREATE INDEX service_certificates_created_at ON service_certificates(created_at, serial);
        """
}

/// A row of `service_certificates`.
struct ServiceCertificateRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "service_certificates"

    var serial: String
    var service: String
    var names: String
    var issuer: String
    var notBefore: Int64
    var notAfter: Int64
    var publicKeySHA256: String
    var certificateSHA256: String
    var der: Data
    var status: String
    var revokedAt: Int64?
    var revocationReason: String?
    var createdAt: Int64

    enum CodingKeys: String, CodingKey {
        case serial, service, names, issuer
        case notBefore = "not_before"
        case notAfter = "not_after"
        case publicKeySHA256 = "public_key_sha256"
        case certificateSHA256 = "certificate_sha256"
        case der, status
        case revokedAt = "revoked_at"
        case revocationReason = "revocation_reason"
        case createdAt = "created_at"
    }
}

extension ServiceCertificateRecord {
    init(_ certificate: ServiceCertificate) {
        self.init(
            serial: certificate.serial.rawValue, service: certificate.service,
            names: certificate.names.joined(separator: " "), issuer: certificate.issuer,
            notBefore: StoreTime.milliseconds(certificate.notBefore),
            notAfter: StoreTime.milliseconds(certificate.notAfter), publicKeySHA256: certificate.publicKeySHA256,
            certificateSHA256: certificate.certificateSHA256, der: Data(certificate.der),
            status: certificate.status.rawValue, revokedAt: certificate.revokedAt.map(StoreTime.milliseconds),
            revocationReason: certificate.revocationReason?.rawValue,
            createdAt: StoreTime.milliseconds(certificate.createdAt))
    }

    func model() throws(StoreError) -> ServiceCertificate {
        ServiceCertificate(
            serial: try SQLiteColumn.decode(SerialNumber.init(rawValue:), serial, "service_certificates.serial"),
            service: service,
            names: names.split(separator: " ").map(String.init),
            issuer: issuer,
            notBefore: StoreTime.date(milliseconds: notBefore),
            notAfter: StoreTime.date(milliseconds: notAfter),
            publicKeySHA256: publicKeySHA256,
            certificateSHA256: certificateSHA256,
            der: Array(der),
            status: try SQLiteColumn.decode(CredentialStatus.init(rawValue:), status, "service_certificates.status"),
            revokedAt: revokedAt.map { StoreTime.date(milliseconds: $0) },
            revocationReason: try revocationReason.map { value throws(StoreError) in
                try SQLiteColumn.decode(
                    RevocationReason.init(rawValue:), value, "service_certificates.revocation_reason")
            },
            createdAt: StoreTime.date(milliseconds: createdAt))
    }
}
