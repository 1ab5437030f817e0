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
    /// When a `superseded` credential is revoked at the latest, whether or not its successor was seen.
    public var overlapDeadline: Date?
    /// When the server first saw this credential authenticate (nil until then).
    public var confirmedAt: Date?
    /// Flagged by a rotation campaign: the device should replace this credential.
    public var rotationDue: Bool
    /// The credential that superseded this one (its successor in the device's lineage).
    public var replacedBy: SerialNumber?

    public init(
        serial: SerialNumber, deviceID: DeviceID, kind: CredentialKind, issuer: String,
        notBefore: Date, notAfter: Date, publicKeySHA256: String, certificateSHA256: String, der: [UInt8],
        status: CredentialStatus = .active, revokedAt: Date? = nil, revocationReason: RevocationReason? = nil,
        createdAt: Date, overlapDeadline: Date? = nil, confirmedAt: Date? = nil, rotationDue: Bool = false,
        replacedBy: SerialNumber? = nil
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
        self.overlapDeadline = overlapDeadline
        self.confirmedAt = confirmedAt
        self.rotationDue = rotationDue
        self.replacedBy = replacedBy
    }

    private enum CodingKeys: String, CodingKey {
        case serial, deviceID, kind, issuer, notBefore, notAfter, publicKeySHA256, certificateSHA256, der, status
        case revokedAt, revocationReason, createdAt, overlapDeadline, confirmedAt, rotationDue, replacedBy
    }

    /// Decodes credentials written before staged rotation: the rotation fields are optional and take their
    /// defaults when missing.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.serial = try container.decode(SerialNumber.self, forKey: .serial)
        self.deviceID = try container.decode(DeviceID.self, forKey: .deviceID)
        self.kind = try container.decode(CredentialKind.self, forKey: .kind)
        self.issuer = try container.decode(String.self, forKey: .issuer)
        self.notBefore = try container.decode(Date.self, forKey: .notBefore)
        self.notAfter = try container.decode(Date.self, forKey: .notAfter)
        self.publicKeySHA256 = try container.decode(String.self, forKey: .publicKeySHA256)
        self.certificateSHA256 = try container.decode(String.self, forKey: .certificateSHA256)
        self.der = try container.decode([UInt8].self, forKey: .der)
        self.status = try container.decode(CredentialStatus.self, forKey: .status)
        self.revokedAt = try container.decodeIfPresent(Date.self, forKey: .revokedAt)
        self.revocationReason = try container.decodeIfPresent(RevocationReason.self, forKey: .revocationReason)
        self.createdAt = try container.decode(Date.self, forKey: .createdAt)
        self.overlapDeadline = try container.decodeIfPresent(Date.self, forKey: .overlapDeadline)
        self.confirmedAt = try container.decodeIfPresent(Date.self, forKey: .confirmedAt)
        self.rotationDue = try container.decodeIfPresent(Bool.self, forKey: .rotationDue) ?? false
        self.replacedBy = try container.decodeIfPresent(SerialNumber.self, forKey: .replacedBy)
    }
}
