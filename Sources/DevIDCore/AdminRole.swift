/// What an admin API token may do. The route table of the server (`AdminAccessTable`) maps every route to the
/// roles allowed on it; a route missing from it is `admin` only.
public enum AdminRole: String, Sendable, Hashable, Codable, CaseIterable, CustomStringConvertible {
    /// Everything, including managing admin tokens.
    case admin
    /// Devices, claim tokens, rotation, revocation, and reading what an auditor reads.
    case `operator`
    /// Importing lots of factory manifests into its tenants (it must be limited to tenants).
    case factory
    /// Read-only: the audit trail, lists and details, the CA, the profile, decision statistics.
    case auditor
    /// The policy-decision APIs (`/v1/authz/...`) only.
    case broker

    public var description: String { rawValue }
}
