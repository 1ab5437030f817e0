import DevIDCore
import GRDB

/// A row of `claim_tokens`. Only the secret's hash is stored.
struct ClaimTokenRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "claim_tokens"

    var id: String
    var secretHash: String
    var tenantID: String
    var deviceID: String?
    var expiresAt: Int64
    var usesRemaining: Int
    var revoked: Bool
    var createdAt: Int64
    var lotID: String?
    var namePattern: String?

    enum CodingKeys: String, CodingKey {
        case id
        case secretHash = "secret_hash"
        case tenantID = "tenant_id"
        case deviceID = "device_id"
        case expiresAt = "expires_at"
        case usesRemaining = "uses_remaining"
        case revoked
        case createdAt = "created_at"
        case lotID = "lot_id"
        case namePattern = "name_pattern"
    }

    enum Columns {
        static let id = Column(CodingKeys.id)
        static let secretHash = Column(CodingKeys.secretHash)
        static let tenantID = Column(CodingKeys.tenantID)
        static let createdAt = Column(CodingKeys.createdAt)
        static let expiresAt = Column(CodingKeys.expiresAt)
        static let usesRemaining = Column(CodingKeys.usesRemaining)
        static let revoked = Column(CodingKeys.revoked)
    }
}

extension ClaimTokenRecord {
    init(_ token: ClaimToken) {
        self.init(
            id: token.id, secretHash: token.secretHash, tenantID: token.tenant.rawValue,
            deviceID: token.device?.rawValue, expiresAt: StoreTime.milliseconds(token.expiresAt),
            usesRemaining: token.usesRemaining, revoked: token.revoked,
            createdAt: StoreTime.milliseconds(token.createdAt), lotID: token.lot?.rawValue,
            namePattern: token.namePattern)
    }

    func model() throws(StoreError) -> ClaimToken {
        ClaimToken(
            id: id, secretHash: secretHash,
            tenant: try SQLiteColumn.decode(TenantID.init(rawValue:), tenantID, "claim_tokens.tenant_id"),
            device: try deviceID.map { value throws(StoreError) in
                try SQLiteColumn.decode(DeviceID.init(rawValue:), value, "claim_tokens.device_id")
            },
            expiresAt: StoreTime.date(milliseconds: expiresAt),
            usesRemaining: usesRemaining, revoked: revoked,
            createdAt: StoreTime.date(milliseconds: createdAt),
            lot: try lotID.map { value throws(StoreError) in
                try SQLiteColumn.decode(LotID.init(rawValue:), value, "claim_tokens.lot_id")
            },
            namePattern: namePattern)
    }
}
