import DevIDCore
import Foundation
import GRDB

/// A row of `tenants`, with its enrollment policy flattened into columns (added by migration v2).
struct TenantRecord: Codable, FetchableRecord, PersistableRecord {
    static let databaseTableName = "tenants"

    var id: String
    var displayName: String
    var createdAt: Int64
    var autoRegister: Bool
    var manualApproval: Bool
    /// `TopicPolicy` as JSON; nil for the default policy.
    var topicPolicy: String?
    var maxUnboundTokenUses: Int?
    var maxUnboundTokenTTL: Int64?

    enum CodingKeys: String, CodingKey {
        case id
        case displayName = "display_name"
        case createdAt = "created_at"
        case autoRegister = "auto_register"
        case manualApproval = "manual_approval"
        case topicPolicy = "topic_policy"
        case maxUnboundTokenUses = "max_unbound_token_uses"
        case maxUnboundTokenTTL = "max_unbound_token_ttl"
    }

    enum Columns {
        static let id = Column(CodingKeys.id)
        static let autoRegister = Column(CodingKeys.autoRegister)
        static let manualApproval = Column(CodingKeys.manualApproval)
        static let topicPolicy = Column(CodingKeys.topicPolicy)
        static let maxUnboundTokenUses = Column(CodingKeys.maxUnboundTokenUses)
        static let maxUnboundTokenTTL = Column(CodingKeys.maxUnboundTokenTTL)
    }
}

extension TenantRecord {
    init(_ tenant: Tenant) {
        self.init(
            id: tenant.id.rawValue, displayName: tenant.displayName,
            createdAt: StoreTime.milliseconds(tenant.createdAt), autoRegister: tenant.policy.autoRegister,
            manualApproval: tenant.policy.manualApproval, topicPolicy: Self.encode(tenant.policy.topics),
            maxUnboundTokenUses: tenant.policy.maxUnboundTokenUses,
            maxUnboundTokenTTL: Int64(tenant.policy.maxUnboundTokenTTL))
    }

    static func encode(_ topics: TopicPolicy?) -> String? {
        guard let topics else { return nil }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return (try? encoder.encode(topics)).map { String(decoding: $0, as: UTF8.self) }
    }

    static func decode(_ text: String?) throws(StoreError) -> TopicPolicy? {
        guard let text else { return nil }
        do {
            return try JSONDecoder().decode(TopicPolicy.self, from: Data(text.utf8))
        } catch {
            throw StoreError(.corrupt, "unreadable value in tenants.topic_policy")
        }
    }

    func model() throws(StoreError) -> Tenant {
        Tenant(
            id: try SQLiteColumn.decode(TenantID.init(rawValue:), id, "tenants.id"),
            displayName: displayName,
            createdAt: StoreTime.date(milliseconds: createdAt),
            policy: TenantPolicy(
                autoRegister: autoRegister, manualApproval: manualApproval, topics: try Self.decode(topicPolicy),
                maxUnboundTokenUses: maxUnboundTokenUses ?? TenantPolicy.defaultMaxUnboundTokenUses,
                maxUnboundTokenTTL: maxUnboundTokenTTL.map { Int($0) } ?? TenantPolicy.defaultMaxUnboundTokenTTL))
    }
}
