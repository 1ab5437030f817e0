import Crypto
import Foundation
import DevIDCore
import DevIDStore
import Hummingbird
import HTTPTypes

/// Requires `Authorization: Bearer <admin token>` and audits every grant and denial.
///
/// The token is hashed with SHA-256 and compared in constant time against every stored admin token hash.
struct AdminAuthMiddleware: RouterMiddleware {
    typealias Context = OpsRequestContext
    let store: any Store
    let auditor: Auditor

    func handle(
        _ request: Request, context: OpsRequestContext,
        next: @concurrent (Request, OpsRequestContext) async throws -> Response
    ) async throws -> Response {
        let what = "\(request.method.rawValue) \(request.uri.path)"
        guard let token = Self.bearerToken(request.headers[.authorization]) else {
            await auditor.record(
                actor: "anonymous", action: "admin.auth", outcome: .denied, reason: "missing admin token: \(what)")
            throw HTTPError(
                .unauthorized, headers: [.wwwAuthenticate: "Bearer realm=\"devid-admin\""],
                message: "missing admin token")
        }
        let presented = Array(AdminTokens.hash(token).utf8)
        var matched: AdminToken?
        for candidate in try await store.adminTokens() {
            // Visit every token so the time taken does not depend on which one matched.
            if constantTimeEquals(Array(candidate.secretHash.utf8), presented) { matched = candidate }
        }
        guard let matched else {
            await auditor.record(
                actor: "anonymous", action: "admin.auth", outcome: .denied, reason: "invalid admin token: \(what)")
            throw HTTPError(
                .unauthorized, headers: [.wwwAuthenticate: "Bearer realm=\"devid-admin\", error=\"invalid_token\""],
                message: "invalid admin token")
        }
        var context = context
        context.adminTokenID = matched.id
        await auditor.record(actor: context.actor, action: "admin.auth", outcome: .success, reason: what)
        return try await next(request, context)
    }

    static func bearerToken(_ header: String?) -> String? {
        guard let header else { return nil }
        let parts = header.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        let token = parts[1].trimmingCharacters(in: .whitespaces)
        return token.isEmpty ? nil : String(token)
    }
}
