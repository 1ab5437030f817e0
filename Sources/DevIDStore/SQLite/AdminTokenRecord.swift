import DevIDCore
import GRDB

/// A row of `admin_tokens`. Only the secret's hash is stored.
struct AdminTokenRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "admin_tokens"

    var id: String
    var secretHash: String
    var createdAt: Int64

    enum CodingKeys: String, CodingKey {
        case id
        case secretHash = "secret_hash"
        case createdAt = "created_at"
    }

    enum Columns {
        static let id = Column(CodingKeys.id)
    }
}

extension AdminTokenRecord {
    init(_ token: AdminToken) {
        self.init(id: token.id, secretHash: token.secretHash, createdAt: StoreTime.milliseconds(token.createdAt))
    }

    func model() -> AdminToken {
        AdminToken(id: id, secretHash: secretHash, createdAt: StoreTime.date(milliseconds: createdAt))
    }
}
