public import DevIDCore

/// A refusal by an admin token's role or tenant limit. ``AdminAuthMiddleware`` (the route edge) audits it as
/// `admin.auth` denied and answers `403` with ``reason``.
public struct AdminAccessError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Backing: Hashable, Sendable {
            case role, tenant, allTenants
        }
        private let backing: Backing
        private init(_ backing: Backing) { self.backing = backing }

        /// The token's role does not allow the route.
        public static let role = Code(.role)
        /// The token is limited to tenants and the object belongs to another one.
        public static let tenant = Code(.tenant)
        /// The token is limited to tenants and the request covers every tenant.
        public static let allTenants = Code(.allTenants)

        public var description: String { String(describing: backing) }
    }

    public let code: Code
    /// One line, secret-free.
    public let reason: String
    /// Which tenant was refused, for the audit event.
    public let tenant: TenantID?
    public let file: String
    public let line: UInt

    public init(_ code: Code, _ reason: String, tenant: TenantID? = nil, file: String = #fileID, line: UInt = #line) {
        self.code = code
        self.reason = reason
        self.tenant = tenant
        self.file = file
        self.line = line
    }

    public var description: String { "admin access \(code): \(reason)" }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}

extension OpsRequestContext {
    /// The tenants this request may act on; nil means every tenant (an unlimited token, or the authz token).
    public var tenantLimit: [TenantID]? { adminToken?.tenants }

    /// Whether the request may see or change `tenant`'s objects.
    public func allows(tenant: TenantID) -> Bool {
        adminToken?.allows(tenant: tenant) ?? true
    }

    /// Refuses an object of a tenant the token is not limited to.
    public func require(tenant: TenantID) throws(AdminAccessError) {
        guard allows(tenant: tenant) else {
            throw AdminAccessError(
                .tenant, "admin token \(adminToken?.name ?? "-") may not act on tenant \(tenant)", tenant: tenant)
        }
    }

    /// Refuses a request that covers every tenant (a global scope, a tenant-wide export, managing tokens) when the
    /// token is limited to tenants. `what` says what was asked, e.g. "a rotation of every tenant".
    public func requireAllTenants(_ what: String) throws(AdminAccessError) {
        guard tenantLimit == nil else {
            throw AdminAccessError(
                .allTenants, "admin token \(adminToken?.name ?? "-") is limited to tenants and may not ask for \(what)")
        }
    }
}
