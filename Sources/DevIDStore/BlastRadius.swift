public import DevIDCore

/// What revoking a ``CredentialScope`` touches: the preview ``Store/blastRadius(_:now:)`` computes, and the
/// change ``Store/revoke(_:reason:at:audit:)`` reports. With the same rows and time, the two are equal.
///
/// - `credentials`: credentials that get revoked: not revoked yet and not expired (`notAfter` after the time);
///   for ``CredentialScope/expiringBefore(_:)`` only `active` LDevIDs.
/// - `devices`: distinct devices touched: moved to `revoked` (device, lot and tenant scopes move every device
///   that is neither `revoked` nor `decommissioned`), or losing at least one credential.
/// - `byTenant`, `byLot`: the same two counts per tenant and per lot (`"-"` for devices without a lot); groups
///   where nothing changes are left out.
public struct BlastRadius: Sendable, Hashable, Codable {
    public struct Counts: Sendable, Hashable, Codable {
        public var devices: Int
        public var credentials: Int

        public init(devices: Int = 0, credentials: Int = 0) {
            self.devices = devices
            self.credentials = credentials
        }
    }

    /// The `byLot` key of devices without a lot.
    public static let noLot = "-"

    public var devices: Int
    public var credentials: Int
    public var byTenant: [TenantID: Counts]
    public var byLot: [String: Counts]

    public init(
        devices: Int = 0, credentials: Int = 0, byTenant: [TenantID: Counts] = [:], byLot: [String: Counts] = [:]
    ) {
        self.devices = devices
        self.credentials = credentials
        self.byTenant = byTenant
        self.byLot = byLot
    }

    /// Adds `devices` touched devices of one tenant and lot, and the `credentials` of theirs that are revoked.
    mutating func add(tenant: TenantID, lot: LotID?, devices touched: Int, credentials count: Int) {
        guard touched > 0 || count > 0 else { return }
        devices += touched
        credentials += count
        byTenant[tenant, default: Counts()].devices += touched
        byTenant[tenant, default: Counts()].credentials += count
        let lotKey = lot?.rawValue ?? Self.noLot
        byLot[lotKey, default: Counts()].devices += touched
        byLot[lotKey, default: Counts()].credentials += count
    }

    private enum CodingKeys: String, CodingKey {
        case devices, credentials, byTenant, byLot
    }

    /// `byTenant` is encoded as an object keyed by tenant id (a dictionary keyed by `TenantID` would otherwise
    /// encode as an array of alternating keys and values).
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.devices = try container.decode(Int.self, forKey: .devices)
        self.credentials = try container.decode(Int.self, forKey: .credentials)
        let tenants = try container.decode([String: Counts].self, forKey: .byTenant)
        var byTenant: [TenantID: Counts] = [:]
        for (key, counts) in tenants {
            guard let tenant = TenantID(rawValue: key) else {
                throw DecodingError.dataCorruptedError(
                    forKey: .byTenant, in: container, debugDescription: "invalid tenant")
            }
            byTenant[tenant] = counts
        }
        self.byTenant = byTenant
        self.byLot = try container.decode([String: Counts].self, forKey: .byLot)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(devices, forKey: .devices)
        try container.encode(credentials, forKey: .credentials)
        try container.encode(
            Dictionary(uniqueKeysWithValues: byTenant.map { ($0.key.rawValue, $0.value) }), forKey: .byTenant)
        try container.encode(byLot, forKey: .byLot)
    }
}
