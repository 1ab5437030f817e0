import DevIDCore
import DevIDStore
import Foundation
import HTTPTypes
import Hummingbird

/// What `devid admin-token create` sends.
struct AdminTokenCreateRequest: Decodable {
    var name: String
    var role: String
    /// The tenants the token may act on; absent for every tenant.
    var tenants: [String]?
    /// Lifetime in seconds; absent for a token that does not expire.
    var expiresInSeconds: Int?
}

/// An admin token as listed: never the secret or its hash.
struct AdminTokenView: Codable, Sendable {
    var id: String
    var name: String
    var role: AdminRole
    var tenants: [TenantID]?
    var createdAt: Date
    var expiresAt: Date?
    var lastUsedAt: Date?
    var revoked: Bool
    /// `active`, `expired` or `revoked`, at the server's time.
    var status: String

    init(_ token: AdminToken, now: Date) {
        id = token.id
        name = token.name
        role = token.role
        tenants = token.tenants
        createdAt = token.createdAt
        expiresAt = token.expiresAt
        lastUsedAt = token.lastUsedAt
        revoked = token.revoked
        status = token.revoked ? "revoked" : token.isUsable(at: now) ? "active" : "expired"
    }
}

/// The one response that carries an admin token's secret.
struct AdminTokenCreated: Codable, Sendable {
    var id: String
    var token: String
    var name: String
    var role: AdminRole
    var tenants: [TenantID]?
    var createdAt: Date
    var expiresAt: Date?
}

/// `/v1/admin/admin-tokens`: named admin API tokens with a role and optionally a tenant limit. `admin` role only,
/// and only for a token that is not limited to tenants (otherwise it could make itself an unlimited token).
enum AdminTokenRoutes {
    static let maximumTenants = 100
    static let maximumLifetime = 10 * 365 * 86_400

    static func register(_ admin: RouterGroup<OpsRequestContext>, state: ServerState) {
        let store = state.store
        let auditor = state.auditor

        admin.post("/admin-tokens") { request, context -> EditedResponse<JSONBody<AdminTokenCreated>> in
            try context.requireAllTenants("admin tokens")
            let body = try await request.decode(as: AdminTokenCreateRequest.self, context: context)
            guard AdminToken.isValidName(body.name) else {
                throw HTTPError(.badRequest, message: DevIDCoreError.invalidIdentifier(kind: "name").reason)
            }
            guard let role = AdminRole(rawValue: body.role) else {
                throw HTTPError(
                    .badRequest,
                    message: "role must be one of: " + AdminRole.allCases.map(\.rawValue).joined(separator: ", "))
            }
            var tenants: [TenantID]?
            if let names = body.tenants {
                guard !names.isEmpty else {
                    throw HTTPError(.badRequest, message: "tenants must not be empty (leave it out for every tenant)")
                }
                guard names.count <= maximumTenants else {
                    throw HTTPError(.badRequest, message: "at most \(maximumTenants) tenants per token")
                }
                var ids: [TenantID] = []
                for name in names {
                    guard let id = TenantID(rawValue: name) else { throw HTTPError(.badRequest, message: "invalid tenant") }
                    guard try await store.tenant(id) != nil else {
                        throw HTTPError(.notFound, message: "unknown tenant \(id)")
                    }
                    if !ids.contains(id) { ids.append(id) }
                }
                tenants = ids.sorted()
            }
            guard role != .factory || tenants != nil else {
                throw HTTPError(.badRequest, message: "a factory token must be limited to tenants")
            }
            var expiresAt: Date?
            let now = state.clock.now()
            if let seconds = body.expiresInSeconds {
                guard (1...maximumLifetime).contains(seconds) else {
                    throw HTTPError(.badRequest, message: "expiresInSeconds must be 1-\(maximumLifetime)")
                }
                expiresAt = now.addingTimeInterval(TimeInterval(seconds))
            }
            let generated = AdminTokens.generate()
            let token = AdminToken(
                id: generated.id, name: body.name, secretHash: generated.hash, role: role, tenants: tenants,
                createdAt: now, expiresAt: expiresAt)
            let summary = describe(token)
            do {
                try await store.insertAdminToken(
                    token,
                    audit: auditor.event(
                        actor: context.actor, action: "admin.token.create", outcome: .success,
                        reason: "created admin token \(summary)"))
            } catch let error as StoreError where error.code == .duplicate {
                let reason = "an admin token named \(body.name) exists"
                await auditor.record(actor: context.actor, action: "admin.token.create", outcome: .denied, reason: reason)
                throw HTTPError(.conflict, message: reason)
            }
            return EditedResponse(
                status: .created,
                response: JSONBody(
                    AdminTokenCreated(
                        id: token.id, token: generated.secret, name: token.name, role: role, tenants: tenants,
                        createdAt: token.createdAt, expiresAt: token.expiresAt)))
        }

        admin.get("/admin-tokens") { _, context -> ListResponse<AdminTokenView> in
            try context.requireAllTenants("admin tokens")
            try? await state.adminTokens.flush()
            let now = state.clock.now()
            // By name (then creation, then id: a revoked token may share its name): the same list reads the same.
            let tokens = try await store.adminTokens().sorted {
                ($0.name, $0.createdAt, $0.id) < ($1.name, $1.createdAt, $1.id)
            }
            return ListResponse(items: tokens.map { AdminTokenView($0, now: now) })
        }

        admin.post("/admin-tokens/:id/revoke") { _, context -> JSONBody<AdminTokenView> in
            try context.requireAllTenants("admin tokens")
            let handle = try context.parameters.require("id")
            let all = try await store.adminTokens()
            // By id, or by the name of a token that is not revoked.
            guard let token = all.first(where: { $0.id == handle }) ?? all.first(where: { !$0.revoked && $0.name == handle })
            else { throw HTTPError(.notFound, message: "unknown admin token") }
            let now = state.clock.now()
            let revoked: AdminToken
            do {
                revoked = try await store.revokeAdminToken(
                    id: token.id, now: now,
                    audit: auditor.event(
                        actor: context.actor, action: "admin.token.revoke", outcome: .success,
                        reason: "revoked admin token \(token.id) (\(token.name), role \(token.role))"))
            } catch let error as StoreError where error.code == .conflict {
                await auditor.record(
                    actor: context.actor, action: "admin.token.revoke", outcome: .denied, reason: error.reason)
                throw HTTPError(.conflict, message: error.reason)
            }
            return JSONBody(AdminTokenView(revoked, now: now))
        }
    }

    /// `id (name, role R, tenants a b, expires T)` for the audit trail.
    static func describe(_ token: AdminToken) -> String {
        var parts = [token.name, "role \(token.role)"]
        if let tenants = token.tenants { parts.append("tenants " + tenants.map(\.rawValue).joined(separator: " ")) }
        if let expiresAt = token.expiresAt { parts.append("expires \(expiresAt.formatted(.iso8601))") }
        return "\(token.id) (\(parts.joined(separator: ", ")))"
    }
}
