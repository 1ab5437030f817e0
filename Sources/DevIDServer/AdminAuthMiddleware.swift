import DevIDCore
import DevIDStore
import Foundation
import HTTPTypes
import Hummingbird

/// Requires `Authorization: Bearer <admin token>`, checks the token's role against ``AdminAccessTable``, and
/// audits every grant and denial (`admin.auth`): a missing or unknown token, which names nobody, in aggregate
/// through ``AnonymousFailures``; every other denial and every grant individually.
///
/// Tokens come from the in-memory ``AdminTokenCache`` (no database read per request): the presented token is hashed
/// with SHA-256 and compared in constant time with every cached hash. A revoked or expired token is `401`; a role
/// that does not allow the route is `403`, and so is a route that changes what every tenant depends on
/// (``AdminAccessTable/everyTenant``) for a token limited to tenants. So is a tenant the token is not limited to:
/// handlers throw ``AdminAccessError`` (through `context.require(tenant:)`), and this middleware, the route edge,
/// turns it into `403` with its one-line reason and audits it.
struct AdminAuthMiddleware: RouterMiddleware {
    typealias Context = OpsRequestContext
    let tokens: AdminTokenCache<ContinuousClock>
    let clock: any WallClock
    let auditor: Auditor
    let failures: AnonymousFailures

    init(state: ServerState) {
        self.tokens = state.adminTokens
        self.clock = state.clock
        self.auditor = state.auditor
        self.failures = state.anonymousFailures
    }

    func handle(
        _ request: Request, context: OpsRequestContext,
        next: @concurrent (Request, OpsRequestContext) async throws -> Response
    ) async throws -> Response {
        let what = Self.describe(request)
        guard let presented = Self.bearerToken(request.headers[.authorization]) else {
            await failures.record(
                action: "admin.auth", reason: "missing admin token: \(what)", source: context.remoteAddress)
            throw HTTPError(
                .unauthorized, headers: [.wwwAuthenticate: "Bearer realm=\"devid-admin\""],
                message: "missing admin token")
        }
        let now = clock.now()
        let token: AdminToken
        switch try await tokens.authenticate(presented, now: now) {
        case .valid(let valid):
            token = valid
        case .unknown:
            await failures.record(
                action: "admin.auth", reason: "invalid admin token: \(what)", source: context.remoteAddress)
            throw Self.invalidToken("invalid admin token")
        case .revoked(let revoked):
            await auditor.record(
                actor: "admin:\(revoked.id)", action: "admin.auth", outcome: .denied,
                reason: "revoked admin token \(revoked.name): \(what)")
            throw Self.invalidToken("admin token is revoked")
        case .expired(let expired):
            await auditor.record(
                actor: "admin:\(expired.id)", action: "admin.auth", outcome: .denied,
                reason: "expired admin token \(expired.name): \(what)")
            throw Self.invalidToken("admin token has expired")
        }
        var context = context
        context.adminToken = token
        guard AdminAccessTable.allows(token.role, method: request.method, endpoint: context.endpointPath) else {
            let reason = "role \(token.role) may not \(what)"
            await auditor.record(actor: context.actor, action: "admin.auth", outcome: .denied, reason: reason)
            throw HTTPError(.forbidden, message: reason)
        }
        if let scope = AdminAccessTable.everyTenant(method: request.method, endpoint: context.endpointPath) {
            do throws(AdminAccessError) {
                try context.requireAllTenants(scope)
            } catch {
                await auditor.record(
                    actor: context.actor, action: "admin.auth", outcome: .denied, reason: "\(error.reason): \(what)")
                throw HTTPError(.forbidden, message: error.reason)
            }
        }
        await tokens.recordUse(id: token.id, at: now)
        await auditor.record(actor: context.actor, action: "admin.auth", outcome: .success, reason: what)
        do {
            return try await next(request, context)
        } catch let error as AdminAccessError {
            await auditor.record(
                actor: context.actor, action: "admin.auth", outcome: .denied, reason: "\(error.reason): \(what)",
                tenant: error.tenant)
            throw HTTPError(.forbidden, message: error.reason)
        }
    }

    static func invalidToken(_ message: String) -> HTTPError {
        HTTPError(
            .unauthorized, headers: [.wwwAuthenticate: "Bearer realm=\"devid-admin\", error=\"invalid_token\""],
            message: message)
    }

    /// Longest path the audit trail records; a longer one is cut and marked with `...`.
    static let maximumPathInReason = 200

    /// `METHOD /path` for the audit trail: bounded in length, printable ASCII only (anything else becomes `?`), so a
    /// request cannot write unbounded or control characters into the trail.
    static func describe(_ request: Request) -> String {
        "\(printable(request.method.rawValue, limit: 16)) \(printable(request.uri.path, limit: maximumPathInReason))"
    }

    static func printable(_ text: String, limit: Int) -> String {
        var result = String.UnicodeScalarView()
        var count = 0
        for scalar in text.unicodeScalars {
            guard count < limit else { return String(result) + "..." }
            result.append((0x20...0x7E).contains(scalar.value) ? scalar : "?")
            count += 1
        }
        return String(result)
    }

    static func bearerToken(_ header: String?) -> String? {
        guard let header else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : String(token)
    }
}
