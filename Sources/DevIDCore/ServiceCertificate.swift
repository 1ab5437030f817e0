public import Foundation

/// A TLS certificate DevID issued from its services CA for a service beside it (an MQTT broker), as the registry
/// keeps it: nothing leaves unrecorded, so a broker's certificate is listed, revocable by serial, and answered by
/// OCSP and the services CA's CRL like any credential. It belongs to no device.
public struct ServiceCertificate: Sendable, Hashable, Codable {
    public var serial: SerialNumber
    /// What the certificate is for, e.g. `mosquitto` (one word: letters, digits, `-`).
    public var service: String
    /// The DNS names and IP addresses it names (its SANs), in issue order.
    public var names: [String]
    /// The issuer's subject, as an RFC 4514 string (the services CA's).
    public var issuer: String
    public var notBefore: Date
    public var notAfter: Date
    /// SHA-256 of the SubjectPublicKeyInfo DER, lowercase hex.
    public var publicKeySHA256: String
    /// SHA-256 of the certificate DER, lowercase hex.
    public var certificateSHA256: String
    public var der: [UInt8]
    /// `active` or `revoked` (expiry is a matter of time, as for credentials).
    public var status: CredentialStatus
    public var revokedAt: Date?
    public var revocationReason: RevocationReason?
    public var createdAt: Date

    public init(
        serial: SerialNumber, service: String, names: [String], issuer: String, notBefore: Date, notAfter: Date,
        publicKeySHA256: String, certificateSHA256: String, der: [UInt8], status: CredentialStatus = .active,
        revokedAt: Date? = nil, revocationReason: RevocationReason? = nil, createdAt: Date
    ) {
        self.serial = serial
        self.service = service
        self.names = names
        self.issuer = issuer
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.publicKeySHA256 = publicKeySHA256
        self.certificateSHA256 = certificateSHA256
        self.der = der
        self.status = status
        self.revokedAt = revokedAt
        self.revocationReason = revocationReason
        self.createdAt = createdAt
    }
}
