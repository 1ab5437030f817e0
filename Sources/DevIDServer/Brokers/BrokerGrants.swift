public import DevIDCore
public import DevIDStore

/// The per-device topic filters a broker that cannot ask DevID (Mosquitto with an ACL file) enforces: every device
/// that may connect now — state `active` — with its tenant's effective topic policy expanded for it.
///
/// Suspended, revoked, decommissioned and never-enrolled devices get no grant at all. An expired LDevID is refused
/// by the broker's own TLS check, a revoked one by the CRL exported next to the ACL.
public enum BrokerGrants {
    static let pageSize = 2_000

    public static func all(store: any Store) async throws(StoreError) -> [BrokerGrant] {
        var grants: [BrokerGrant] = []
        for tenant in try await store.tenants() {
            // Stored policies were validated when they were set; one that no longer compiles grants nothing.
            let policy = (try? CompiledTopicPolicy(tenant.policy.effectiveTopics)) ?? .nothing
            var after: DeviceID?
            while true {
                let page = try await store.devices(
                    DeviceFilter(tenant: tenant.id, state: .active, limit: pageSize, after: after))
                for device in page {
                    grants.append(grant(policy, tenant: tenant.id, device: device.id, lot: device.lot))
                }
                guard page.count == pageSize, let last = page.last else { break }
                after = last.id
            }
        }
        return grants
    }

    /// The policy's rules expanded for one device (``CompiledTopicPolicy/expanded(for:)``: `{tenant}`, `{device}`,
    /// `{lot}` replaced; a `{lot}` rule left out for a device without a lot), split by action.
    public static func grant(_ policy: CompiledTopicPolicy, tenant: TenantID, device: DeviceID, lot: LotID?)
        -> BrokerGrant
    {
        var publish: [String] = []
        var subscribe: [String] = []
        for rule in policy.expanded(for: TopicBinding(tenant: tenant, device: device, lot: lot)) {
            switch rule.action {
            case .publish: publish.append(rule.topic)
            case .subscribe: subscribe.append(rule.topic)
            case .all:
                publish.append(rule.topic)
                subscribe.append(rule.topic)
            }
        }
        return BrokerGrant(device: device, publish: publish, subscribe: subscribe)
    }
}
