import DevIDCore
import GRDB

/// A row of `tenants`.
struct TenantRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "tenants"

    var id: String
    var displayName: String
    var createdAt: Int64

    enum CodingKeys: String, CodingKey {
        case id
        case displayName = "display_name"
        case createdAt = "created_at"
    }

    enum Columns {
        static let id = Column(CodingKeys.id)
    }
}

extension TenantRecord {
    init(_ tenant: Tenant) {
        self.init(
            id: tenant.id.rawValue, displayName: tenant.displayName, createdAt: StoreTime.milliseconds(tenant.createdAt)
        )
    }

    func model() throws(StoreError) -> Tenant {
        Tenant(
            id: try SQLiteColumn.decode(TenantID.init(rawValue:), id, "tenants.id"),
            displayName: displayName,
            createdAt: StoreTime.date(milliseconds: createdAt))
    }
}
