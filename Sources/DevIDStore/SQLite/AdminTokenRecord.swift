import DevIDCore
import Foundation
import GRDB

/// A row of `admin_tokens`. Only the secret's hash is stored. `tenants` is a JSON array of tenant ids, NULL for
/// a token that may act on every tenant.
struct AdminTokenRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "admin_tokens"

    var id: String
    var secretHash: String
    var createdAt: Int64
    var name: String
    var role: String
    var tenants: String?
    var expiresAt: Int64?
    var lastUsedAt: Int64?
    var revoked: Bool

    enum CodingKeys: String, CodingKey {
        case id
        case secretHash = "secret_hash"
        case createdAt = "created_at"
        case name
        case role
        case tenants
        case expiresAt = "expires_at"
        case lastUsedAt = "last_used_at"
        case revoked
    }

    enum Columns {
        static let id = Column(CodingKeys.id)
        static let name = Column(CodingKeys.name)
        static let role = Column(CodingKeys.role)
        static let expiresAt = Column(CodingKeys.expiresAt)
        static let lastUsedAt = Column(CodingKeys.lastUsedAt)
        static let revoked = Column(CodingKeys.revoked)
    }
}

extension AdminTokenRecord {
    init(_ token: AdminToken) {
        self.init(
            id: token.id, secretHash: token.secretHash, createdAt: StoreTime.milliseconds(token.createdAt),
            name: token.name, role: token.role.rawValue,
            tenants: token.tenants.map { tenants in
                String(decoding: (try? JSONEncoder().encode(tenants.map(\.rawValue))) ?? Data("[]".utf8), as: UTF8.self)
            },
            expiresAt: token.expiresAt.map(StoreTime.milliseconds), lastUsedAt: token.lastUsedAt.map(StoreTime.milliseconds),
            revoked: token.revoked)
    }

    func model() throws(StoreError) -> AdminToken {
        let role = try SQLiteColumn.decode(AdminRole.init(rawValue:), role, "admin_tokens.role")
        var tenantIDs: [TenantID]?
        if let tenants {
            guard let names = try? JSONDecoder().decode([String].self, from: Data(tenants.utf8)) else {
                throw StoreError(.corrupt, "unreadable value in admin_tokens.tenants")
            }
            tenantIDs = try names.map { name throws(StoreError) in
                try SQLiteColumn.decode(TenantID.init(rawValue:), name, "admin_tokens.tenants")
            }
        }
        return AdminToken(
            id: id, name: name, secretHash: secretHash, role: role, tenants: tenantIDs,
            createdAt: StoreTime.date(milliseconds: createdAt), expiresAt: expiresAt.map(StoreTime.date(milliseconds:)),
            lastUsedAt: lastUsedAt.map(StoreTime.date(milliseconds:)), revoked: revoked)
    }
}
