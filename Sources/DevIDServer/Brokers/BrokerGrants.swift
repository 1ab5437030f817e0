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
            let policy = tenant.policy.effectiveTopics
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

    /// The policy's rules with `{tenant}`, `{device}` and `{lot}` replaced. A rule naming `{lot}` is left out for a
    /// device without a lot (it could never match, and an empty level would widen nothing but confuse readers).
    public static func grant(_ policy: TopicPolicy, tenant: TenantID, device: DeviceID, lot: LotID?) -> BrokerGrant {
        var publish: [String] = []
        var subscribe: [String] = []
        for rule in policy.rules {
            guard let filter = expand(rule.topic, tenant: tenant, device: device, lot: lot) else { continue }
            switch rule.action {
            case .publish: publish.append(filter)
            case .subscribe: subscribe.append(filter)
            case .all:
                publish.append(filter)
                subscribe.append(filter)
            }
        }
        return BrokerGrant(device: device, publish: publish, subscribe: subscribe)
    }

    public static func expand(_ template: String, tenant: TenantID, device: DeviceID, lot: LotID?) -> String? {
        var levels: [String] = []
        for level in template.split(separator: "/", omittingEmptySubsequences: false) {
            switch level {
            case "{tenant}": levels.append(tenant.rawValue)
            case "{device}": levels.append(device.rawValue)
            case "{lot}":
                guard let lot else { return nil }
                levels.append(lot.rawValue)
            default: levels.append(String(level))
            }
        }
        return levels.joined(separator: "/")
    }
}
