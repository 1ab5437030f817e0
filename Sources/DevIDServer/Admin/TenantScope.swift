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
        case .expiringBefore, .issuer:
            try requireAllTenants("a scope of every tenant")
        case .serial(let serial):
            guard let credential = try await store.credential(serial: serial) else { return }
            guard let device = try await store.device(credential.deviceID) else {
                return try requireAllTenants("a certificate of no tenant")
            }
            try require(tenant: device.tenant)
        case .device, .lot, .tenant, .token:
            if let tenant = try await Self.tenant(of: scope, store: store) { try require(tenant: tenant) }
        }
    }

    /// The one tenant `scope` lies in: a device's, a lot's, a claim token's (and so the devices it enrolled), a
    /// certificate's device's. Nil for an object the registry does not know and for a scope of every tenant.
    static func tenant(of scope: CredentialScope, store: any Store) async throws -> TenantID? {
        switch scope {
        case .device(let id): try await store.device(id)?.tenant
        case .lot(let id): try await store.lot(id)?.tenant
        case .tenant(let tenant): tenant
        case .token(let id): try await store.claimToken(id: id)?.tenant
        case .serial(let serial):
            if let credential = try await store.credential(serial: serial) {
                try await store.device(credential.deviceID)?.tenant
            } else {
                nil
            }
        case .expiringBefore, .issuer: nil
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
