import DevIDCore
import HTTPTypes

/// Which roles may call which route: the one place that decides it. Keys are `METHOD /path` with the router's
/// path pattern (`{id}` for a parameter), as Hummingbird reports it in `context.endpointPath`.
///
/// A route that is not listed is `admin` only. `AdminAccessTableTests` fails when a registered `/v1/admin` or
/// `/v1/authz` route is missing here, so a new route gets a deliberate entry. An `admin` token may call every
/// route. Tenant limits are checked by the handlers (``OpsRequestContext/require(tenant:)``), except on the routes
/// that change what every tenant depends on (``everyTenant``).
enum AdminAccessTable {
    /// Reading: lists, details, the CA, the profile, the audit trail.
    static let readers: Set<AdminRole> = [.admin, .operator, .auditor]
    /// Changing devices, claim tokens, rotation and revocation.
    static let operators: Set<AdminRole> = [.admin, .operator]
    static let adminOnly: Set<AdminRole> = [.admin]
    static let brokers: Set<AdminRole> = [.admin, .broker]

    static let rules: [String: Set<AdminRole>] = [
        // The CA hierarchy and the tenants (factory tokens read them to check an import).
        "GET /v1/admin/ca": readers.union([.factory]),
        "GET /v1/admin/tenants": readers.union([.factory]),
        "POST /v1/admin/tenants": adminOnly,
        "PUT /v1/admin/tenants/{id}/policy": adminOnly,
        "GET /v1/admin/tenants/{id}/topic-policy": readers,
        "PUT /v1/admin/tenants/{id}/topic-policy": adminOnly,
        "DELETE /v1/admin/tenants/{id}/topic-policy": adminOnly,
        // Issuing CAs: listing is reading; every change of state is a CA ceremony.
        "GET /v1/admin/ca/issuing": readers,
        "POST /v1/admin/ca/issuing/register": adminOnly,
        "POST /v1/admin/ca/issuing/{id}/activate": adminOnly,
        "POST /v1/admin/ca/issuing/{id}/taint": adminOnly,
        "POST /v1/admin/ca/issuing/{id}/revoke": adminOnly,
        "POST /v1/admin/ca/issuing/{id}/emergency": adminOnly,
        "GET /v1/admin/ca/roots": readers,
        "POST /v1/admin/ca/roots/{id}/activate": adminOnly,
        "POST /v1/admin/ca/roots/{id}/retire": adminOnly,
        // Devices.
        "GET /v1/admin/devices": readers,
        "GET /v1/admin/devices/{id}": readers,
        "POST /v1/admin/devices/import": operators.union([.factory]),
        "POST /v1/admin/devices/{id}/approve": operators,
        "POST /v1/admin/devices/{id}/suspend": operators,
        "POST /v1/admin/devices/{id}/resume": operators,
        "POST /v1/admin/devices/{id}/reprovision": operators,
        // Claim tokens.
        "GET /v1/admin/tokens": readers,
        "POST /v1/admin/tokens": operators,
        "POST /v1/admin/tokens/{id}/revoke": operators,
        // Rotation and revocation.
        "GET /v1/admin/profile": readers,
        // The live settings kept in the registry (rotation policy, rate limits, anomaly thresholds).
        "GET /v1/admin/settings": readers,
        "PUT /v1/admin/settings": adminOnly,
        "POST /v1/admin/rotate": operators,
        "GET /v1/admin/rotate/status": readers,
        "POST /v1/admin/revoke": operators,
        "GET /v1/admin/certificates/{serial}": readers,
        // Broker files and the broker's TLS certificate; the broker certificates issued so far.
        "POST /v1/admin/exports/mosquitto": adminOnly,
        "GET /v1/admin/service-certificates": readers,
        // The audit trail.
        "GET /v1/admin/audit": readers,
        "GET /v1/admin/audit/verify": readers,
        // Admin tokens themselves.
        "GET /v1/admin/admin-tokens": adminOnly,
        "POST /v1/admin/admin-tokens": adminOnly,
        "POST /v1/admin/admin-tokens/{id}/revoke": adminOnly,
        // Policy decisions (the authz token from `secrets/authz-token` is accepted there too).
        "POST /v1/authz/mqtt": brokers,
        "POST /v1/authz/http": brokers,
        "GET /v1/authz/stats": brokers.union([.auditor]),
        "GET /v1/authz/rabbitmq/{token}/user": brokers,
        "POST /v1/authz/rabbitmq/{token}/user": brokers,
        "GET /v1/authz/rabbitmq/{token}/vhost": brokers,
        "POST /v1/authz/rabbitmq/{token}/vhost": brokers,
        "GET /v1/authz/rabbitmq/{token}/resource": brokers,
        "POST /v1/authz/rabbitmq/{token}/resource": brokers,
        "GET /v1/authz/rabbitmq/{token}/topic": brokers,
        "POST /v1/authz/rabbitmq/{token}/topic": brokers,
        "POST /v1/authz/emqx/authn": brokers,
        "POST /v1/authz/emqx/authz": brokers,
        // Prometheus scrapes (every tenant's numbers: a token limited to tenants is refused by the handler).
        "GET /metrics": [.admin, .auditor],
        // Identity health: the history and the anomaly checks (a tenant-limited token sees its tenants).
        "GET /v1/health/series": readers,
        "GET /v1/health/anomalies": readers,
    ]

    /// Routes that change what every tenant depends on, by what they change: a token limited to tenants is refused
    /// them whatever its role (``AdminAuthMiddleware``), as `/revoke` refuses it a scope of every tenant. An issuing
    /// CA revoked by a token of acme would revoke beta's LDevIDs too.
    static let everyTenant: [String: String] = [
        "POST /v1/admin/ca/issuing/register": "an issuing CA of every tenant",
        "POST /v1/admin/ca/issuing/{id}/activate": "an issuing CA of every tenant",
        "POST /v1/admin/ca/issuing/{id}/taint": "an issuing CA of every tenant",
        "POST /v1/admin/ca/issuing/{id}/revoke": "an issuing CA of every tenant",
        "POST /v1/admin/ca/issuing/{id}/emergency": "an issuing CA of every tenant",
        "POST /v1/admin/ca/roots/{id}/activate": "a root CA of every tenant",
        "POST /v1/admin/ca/roots/{id}/retire": "a root CA of every tenant",
        "PUT /v1/admin/settings": "the settings of every tenant",
    ]

    /// What a route changes for every tenant, if it does (``everyTenant``).
    static func everyTenant(method: HTTPRequest.Method, endpoint: String?) -> String? {
        endpoint.flatMap { everyTenant[key(method: method, endpoint: $0)] }
    }

    /// The roles allowed on a route; `admin` only for a route that is not listed (or not known).
    static func roles(method: HTTPRequest.Method, endpoint: String?) -> Set<AdminRole> {
        guard let endpoint else { return adminOnly }
        return rules[key(method: method, endpoint: endpoint)] ?? adminOnly
    }

    static func key(method: HTTPRequest.Method, endpoint: String) -> String {
        "\(method.rawValue) \(endpoint)"
    }

    /// Whether `role` may call the route.
    static func allows(_ role: AdminRole, method: HTTPRequest.Method, endpoint: String?) -> Bool {
        role == .admin || roles(method: method, endpoint: endpoint).contains(role)
    }
}
