import DevIDCore
import GRDB

/// A row of `lots`.
struct LotRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "lots"

    var id: String
    var tenantID: String
    var createdAt: Int64

    enum CodingKeys: String, CodingKey {
        case id
        case tenantID = "tenant_id"
        case createdAt = "created_at"
    }

    enum Columns {
        static let id = Column(CodingKeys.id)
    }
}

extension LotRecord {
    init(_ lot: Lot) {
        self.init(id: lot.id.rawValue, tenantID: lot.tenant.rawValue, createdAt: StoreTime.milliseconds(lot.createdAt))
    }

    func model() throws(StoreError) -> Lot {
        Lot(
            id: try SQLiteColumn.decode(LotID.init(rawValue:), id, "lots.id"),
            tenant: try SQLiteColumn.decode(TenantID.init(rawValue:), tenantID, "lots.tenant_id"),
            createdAt: StoreTime.date(milliseconds: createdAt))
    }
}
