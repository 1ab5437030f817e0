import DevIDCore
import DevIDStore
import Foundation
import HTTPTypes
import Hummingbird

/// What `devid rotate` sends: exactly one scope, optionally a dry run.
struct RotateRequest: Decodable {
    var device: String?
    var lot: String?
    var tenant: String?
    var expiringBefore: Date?
    var dryRun: Bool?

    init(device: String? = nil, lot: String? = nil, tenant: String? = nil, expiringBefore: Date? = nil, dryRun: Bool? = nil) {
        self.device = device
        self.lot = lot
        self.tenant = tenant
        self.expiringBefore = expiringBefore
        self.dryRun = dryRun
    }

    /// The one scope given, or a one-line reason why not.
    func scope() throws -> CredentialScope {
        var scopes: [CredentialScope] = []
        if let device {
            guard let id = DeviceID(rawValue: device) else { throw HTTPError(.badRequest, message: "invalid device id") }
            scopes.append(.device(id))
        }
        if let lot {
            guard let id = LotID(rawValue: lot) else { throw HTTPError(.badRequest, message: "invalid lot") }
            scopes.append(.lot(id))
        }
        if let tenant {
            guard let id = TenantID(rawValue: tenant) else { throw HTTPError(.badRequest, message: "invalid tenant") }
            scopes.append(.tenant(id))
        }
        if let expiringBefore { scopes.append(.expiringBefore(expiringBefore)) }
        guard scopes.count == 1, let scope = scopes.first else {
            throw HTTPError(.badRequest, message: "give exactly one of device, lot, tenant, expiringBefore")
        }
        return scope
    }
}

struct RotateResult: Codable, Sendable {
    var dryRun: Bool
    /// Active LDevIDs in scope (dry run) or marked rotation-due.
    var credentials: Int
    var blastRadius: BlastRadius?
}

/// Rotation campaigns and the effective profile.
enum RotationRoutes {
    static func register(_ admin: RouterGroup<OpsRequestContext>, state: ServerState) {
        admin.post("/rotate") { request, context -> JSONBody<RotateResult> in
            let body = try await request.decode(as: RotateRequest.self, context: context)
            let scope = try body.scope()
            try await context.require(scope: scope, store: state.store)
            let now = state.clock.now()
            if body.dryRun ?? false {
                // The registry previews what a scope holds for both: say which preview an unknown scope was refused in.
                let (radius, candidates) = try await RevocationRoutes.notFoundAs404(operation: "preview rotation") {
                    (
                        try await state.store.blastRadius(scope, now: now),
                        try await state.store.rotationCandidates(scope, now: now)
                    )
                }
                return JSONBody(RotateResult(dryRun: true, credentials: candidates, blastRadius: radius))
            }
            let count = try await markDue(scope, state: state, actor: context.actor)
            return JSONBody(RotateResult(dryRun: false, credentials: count, blastRadius: nil))
        }

        admin.get("/rotate/status") { request, context -> JSONBody<RotationProgress> in
            let query = request.uri.queryParameters
            var scope: CredentialScope?
            if let text = query["issuingCA"] {
                guard query["device"] == nil, query["lot"] == nil, query["tenant"] == nil else {
                    throw HTTPError(.badRequest, message: "give exactly one of device, lot, tenant, issuingCA")
                }
                guard let id = Int(text), let ca = try await state.store.issuingCAs().first(where: { $0.id == id })
                else { throw HTTPError(.notFound, message: "no issuing CA \(text)") }
                scope = .issuer(ca.subject)
            } else if query["device"] != nil || query["lot"] != nil || query["tenant"] != nil {
                scope = try RotateRequest(
                    device: query["device"].map(String.init), lot: query["lot"].map(String.init),
                    tenant: query["tenant"].map(String.init)
                ).scope()
            }
            if let scope {
                try await context.require(scope: scope, store: state.store)
            } else {
                try context.requireAllTenants("the rotation status of every tenant")
            }
            return JSONBody(
                try await RevocationRoutes.notFoundAs404 {
                    try await state.store.rotationProgress(
                        scope, now: state.clock.now(), unreachableAfter: state.configuration.unreachableAfter)
                })
        }

        admin.get("/profile") { _, _ -> JSONBody<ProfilePolicy> in
            JSONBody(state.configuration.ldevidPolicy)
        }
    }
}

/// Marks a scope rotation-due; an unknown device, lot or tenant is a 404.
private func markDue(_ scope: CredentialScope, state: ServerState, actor: String) async throws -> Int {
    do {
        return try await state.store.markRotationDue(
            scope, at: state.clock.now(),
            audit: state.auditor.event(
                actor: actor, action: "rotation.campaign", outcome: .success,
                reason: "marked rotation-due: \(scope)"))
    } catch {
        if error.code == .notFound { throw HTTPError(.notFound, message: error.reason) }
        throw error
    }
}
