import DevIDCore
import GRDB

/// A row of `tenants`, with its enrollment policy flattened into columns (added by migration v2).
struct TenantRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "tenants"

    var id: String
    var displayName: String
    var createdAt: Int64
    var autoRegister: Bool
    var manualApproval: Bool

    enum CodingKeys: String, CodingKey {
        case id
        case displayName = "display_name"
        case createdAt = "created_at"
        case autoRegister = "auto_register"
        case manualApproval = "manual_approval"
    }

    enum Columns {
        static let id = Column(CodingKeys.id)
        static let autoRegister = Column(CodingKeys.autoRegister)
        static let manualApproval = Column(CodingKeys.manualApproval)
    }
}

extension TenantRecord {
    init(_ tenant: Tenant) {
        self.init(
            id: tenant.id.rawValue, displayName: tenant.displayName,
            createdAt: StoreTime.milliseconds(tenant.createdAt), autoRegister: tenant.policy.autoRegister,
            manualApproval: tenant.policy.manualApproval)
    }

    func model() throws(StoreError) -> Tenant {
        Tenant(
            id: try SQLiteColumn.decode(TenantID.init(rawValue:), id, "tenants.id"),
            displayName: displayName,
            createdAt: StoreTime.date(milliseconds: createdAt),
            policy: TenantPolicy(autoRegister: autoRegister, manualApproval: manualApproval))
    }
}
