import DevIDCore
import Foundation
import GRDB

/// A row of `credentials`.
struct CredentialRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "credentials"

    var serial: String
    var deviceID: String
    var kind: String
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
    var overlapDeadline: Int64?
    var confirmedAt: Int64?
    var rotationDue: Bool
    var replacedBy: String?

    enum CodingKeys: String, CodingKey {
        case serial
        case deviceID = "device_id"
        case kind
        case issuer
        case notBefore = "not_before"
        case notAfter = "not_after"
        case publicKeySHA256 = "public_key_sha256"
        case certificateSHA256 = "certificate_sha256"
        case der
        case status
        case revokedAt = "revoked_at"
        case revocationReason = "revocation_reason"
        case createdAt = "created_at"
        case overlapDeadline = "overlap_deadline"
        case confirmedAt = "confirmed_at"
        case rotationDue = "rotation_due"
        case replacedBy = "replaced_by"
    }

    enum Columns {
        static let serial = Column(CodingKeys.serial)
        static let deviceID = Column(CodingKeys.deviceID)
        static let notBefore = Column(CodingKeys.notBefore)
        static let certificateSHA256 = Column(CodingKeys.certificateSHA256)
        static let status = Column(CodingKeys.status)
        static let revokedAt = Column(CodingKeys.revokedAt)
        static let revocationReason = Column(CodingKeys.revocationReason)
        static let createdAt = Column(CodingKeys.createdAt)
        static let confirmedAt = Column(CodingKeys.confirmedAt)
    }
}

extension CredentialRecord {
    init(_ credential: Credential) {
        self.init(
            serial: credential.serial.rawValue, deviceID: credential.deviceID.rawValue,
            kind: credential.kind.rawValue, issuer: credential.issuer,
            notBefore: StoreTime.milliseconds(credential.notBefore),
            notAfter: StoreTime.milliseconds(credential.notAfter),
            publicKeySHA256: credential.publicKeySHA256, certificateSHA256: credential.certificateSHA256,
            der: Data(credential.der), status: credential.status.rawValue,
            revokedAt: credential.revokedAt.map(StoreTime.milliseconds),
            revocationReason: credential.revocationReason?.rawValue,
            createdAt: StoreTime.milliseconds(credential.createdAt),
            overlapDeadline: credential.overlapDeadline.map(StoreTime.milliseconds),
            confirmedAt: credential.confirmedAt.map(StoreTime.milliseconds), rotationDue: credential.rotationDue,
            replacedBy: credential.replacedBy?.rawValue)
    }

    func model() throws(StoreError) -> Credential {
        Credential(
            serial: try SQLiteColumn.decode(SerialNumber.init(rawValue:), serial, "credentials.serial"),
            deviceID: try SQLiteColumn.decode(DeviceID.init(rawValue:), deviceID, "credentials.device_id"),
            kind: try SQLiteColumn.decode(CredentialKind.init(rawValue:), kind, "credentials.kind"),
            issuer: issuer,
            notBefore: StoreTime.date(milliseconds: notBefore),
            notAfter: StoreTime.date(milliseconds: notAfter),
            publicKeySHA256: publicKeySHA256,
            certificateSHA256: certificateSHA256,
            der: Array(der),
            status: try SQLiteColumn.decode(CredentialStatus.init(rawValue:), status, "credentials.status"),
            revokedAt: revokedAt.map { StoreTime.date(milliseconds: $0) },
            revocationReason: try revocationReason.map { value throws(StoreError) in
                try SQLiteColumn.decode(RevocationReason.init(rawValue:), value, "credentials.revocation_reason")
            },
            createdAt: StoreTime.date(milliseconds: createdAt),
            overlapDeadline: overlapDeadline.map { StoreTime.date(milliseconds: $0) },
            confirmedAt: confirmedAt.map { StoreTime.date(milliseconds: $0) },
            rotationDue: rotationDue,
            replacedBy: try replacedBy.map { value throws(StoreError) in
                try SQLiteColumn.decode(SerialNumber.init(rawValue:), value, "credentials.replaced_by")
            })
    }
}

// Explicit row coding instead of the synthesized `Codable` path (see `DeviceRecord`).
extension CredentialRecord {
    init(row: Row) throws {
        serial = try row.decode(forColumn: CodingKeys.serial.rawValue)
        deviceID = try row.decode(forColumn: CodingKeys.deviceID.rawValue)
        kind = try row.decode(forColumn: CodingKeys.kind.rawValue)
        issuer = try row.decode(forColumn: CodingKeys.issuer.rawValue)
        notBefore = try row.decode(forColumn: CodingKeys.notBefore.rawValue)
        notAfter = try row.decode(forColumn: CodingKeys.notAfter.rawValue)
        publicKeySHA256 = try row.decode(forColumn: CodingKeys.publicKeySHA256.rawValue)
        certificateSHA256 = try row.decode(forColumn: CodingKeys.certificateSHA256.rawValue)
        der = try row.decode(forColumn: CodingKeys.der.rawValue)
        status = try row.decode(forColumn: CodingKeys.status.rawValue)
        revokedAt = try row.decode(forColumn: CodingKeys.revokedAt.rawValue)
        revocationReason = try row.decode(forColumn: CodingKeys.revocationReason.rawValue)
        createdAt = try row.decode(forColumn: CodingKeys.createdAt.rawValue)
        overlapDeadline = try row.decode(forColumn: CodingKeys.overlapDeadline.rawValue)
        confirmedAt = try row.decode(forColumn: CodingKeys.confirmedAt.rawValue)
        rotationDue = try row.decode(forColumn: CodingKeys.rotationDue.rawValue)
        replacedBy = try row.decode(forColumn: CodingKeys.replacedBy.rawValue)
    }

    func encode(to container: inout PersistenceContainer) {
        container[CodingKeys.serial.rawValue] = serial
        container[CodingKeys.deviceID.rawValue] = deviceID
        container[CodingKeys.kind.rawValue] = kind
        container[CodingKeys.issuer.rawValue] = issuer
        container[CodingKeys.notBefore.rawValue] = notBefore
        container[CodingKeys.notAfter.rawValue] = notAfter
        container[CodingKeys.publicKeySHA256.rawValue] = publicKeySHA256
        container[CodingKeys.certificateSHA256.rawValue] = certificateSHA256
        container[CodingKeys.der.rawValue] = der
        container[CodingKeys.status.rawValue] = status
        container[CodingKeys.revokedAt.rawValue] = revokedAt
        container[CodingKeys.revocationReason.rawValue] = revocationReason
        container[CodingKeys.createdAt.rawValue] = createdAt
        container[CodingKeys.overlapDeadline.rawValue] = overlapDeadline
        container[CodingKeys.confirmedAt.rawValue] = confirmedAt
        container[CodingKeys.rotationDue.rawValue] = rotationDue
        container[CodingKeys.replacedBy.rawValue] = replacedBy
    }
}
