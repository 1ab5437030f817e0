import DevIDCore
import DevIDStore

/// Tenant limits of admin tokens on scopes and lists, for handlers. An unlimited token (and the authz token) passes
/// everything unchanged.
extension OpsRequestContext {
    /// Refuses a revocation or rotation scope that reaches beyond the token's tenants. An unknown device, lot,
    /// serial or claim token passes, so that the handler answers `404` for it as for any token.
    func require(scope: CredentialScope, store: any Store) async throws {
        guard tenantLimit != nil else { return }
        switch scope {
        case .device(let id):
            if let device = try await store.device(id) { try require(tenant: device.tenant) }
        case .lot(let id):
            if let lot = try await store.lot(id) { try require(tenant: lot.tenant) }
        case .tenant(let tenant):
            try require(tenant: tenant)
        case .serial(let serial):
            guard let credential = try await store.credential(serial: serial) else { return }
            guard let device = try await store.device(credential.deviceID) else {
                return try requireAllTenants("a certificate of no tenant")
            }
            try require(tenant: device.tenant)
        case .token(let id):
            // A claim token belongs to one tenant, and so do the devices it enrolled.
            if let token = try await store.claimToken(id: id) { try require(tenant: token.tenant) }
        case .expiringBefore, .issuer:
            try requireAllTenants("a scope of every tenant")
        }
    }

    /// The claim tokens `filter` matches that the token may see, as ``devices(_:store:)`` does for devices.
    func claimTokens(_ filter: ClaimTokenFilter, store: any Store) async throws -> [ClaimToken] {
        guard let tenants = tenantLimit else { return try await store.claimTokens(filter) }
        if let tenant = filter.tenant {
            try require(tenant: tenant)
            return try await store.claimTokens(filter)
        }
        var merged: [ClaimToken] = []
        for tenant in tenants {
            var own = filter
            own.tenant = tenant
            merged += try await store.claimTokens(own)
        }
        return Array(merged.sorted(by: ClaimTokenFilter.precedes).prefix(filter.limit))
    }

    /// The devices `filter` matches that the token may see: with `filter.tenant` set, that tenant (refused if the
    /// token is not limited to it); otherwise the first `filter.limit` devices of the token's tenants.
    func devices(_ filter: DeviceFilter, store: any Store) async throws -> [Device] {
        guard let tenants = tenantLimit else { return try await store.devices(filter) }
        if let tenant = filter.tenant {
            try require(tenant: tenant)
            return try await store.devices(filter)
        }
        var merged: [Device] = []
        for tenant in tenants {
            var own = filter
            own.tenant = tenant
            merged += try await store.devices(own)
        }
        return Array(merged.sorted { $0.id < $1.id }.prefix(filter.limit))
    }
}
