public import Foundation

/// What kind of identity a credential is.
public enum CredentialKind: String, Sendable, Codable, CaseIterable, Hashable {
    /// The factory ("birth") identity, from a manufacturer CA.
    case idevid
    /// The operational identity DevID issues on enrollment.
    case ldevid
}

/// The lifecycle state of one issued certificate.
public enum CredentialStatus: String, Sendable, Codable, CaseIterable, Hashable {
    case active
    /// Replaced by a newer credential; still valid until its overlap deadline.
    case superseded
    case revoked
    case expired
}

/// RFC 5280 §5.3.1 CRL reason codes (the numbers are the DER enumeration values).
public enum RevocationReason: String, Sendable, Codable, CaseIterable, Hashable {
    case unspecified
    case keyCompromise
    case caCompromise
    case affiliationChanged
    case superseded
    case cessationOfOperation
    case certificateHold
    case removeFromCRL
    case privilegeWithdrawn
    case aaCompromise

    public var code: Int {
        switch self {
        case .unspecified: 0
        case .keyCompromise: 1
        case .caCompromise: 2
        case .affiliationChanged: 3
        case .superseded: 4
        case .cessationOfOperation: 5
        case .certificateHold: 6
        case .removeFromCRL: 8
        case .privilegeWithdrawn: 9
        case .aaCompromise: 10
        }
    }

    public init?(code: Int) {
        guard let reason = Self.allCases.first(where: { $0.code == code }) else { return nil }
        self = reason
    }
}

/// One issued certificate and its lifecycle state, as the registry keeps it.
public struct Credential: Sendable, Hashable, Codable {
    public var serial: SerialNumber
    public var deviceID: DeviceID
    public var kind: CredentialKind
    /// The issuer's subject, as an RFC 4514 string.
    public var issuer: String
    public var notBefore: Date
    public var notAfter: Date
    /// SHA-256 of the SubjectPublicKeyInfo DER, lowercase hex.
    public var publicKeySHA256: String
    /// SHA-256 of the certificate DER, lowercase hex (the fingerprint `openssl x509 -fingerprint -sha256` prints).
    public var certificateSHA256: String
    public var der: [UInt8]
    public var status: CredentialStatus
    public var revokedAt: Date?
    public var revocationReason: RevocationReason?
    public var createdAt: Date

    public init(
        serial: SerialNumber, deviceID: DeviceID, kind: CredentialKind, issuer: String,
        notBefore: Date, notAfter: Date, publicKeySHA256: String, certificateSHA256: String, der: [UInt8],
        status: CredentialStatus = .active, revokedAt: Date? = nil, revocationReason: RevocationReason? = nil,
        createdAt: Date
    ) {
        self.serial = serial
        self.deviceID = deviceID
        self.kind = kind
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
