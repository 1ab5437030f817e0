import DevIDCore
import DevIDStore
import Foundation
import HTTPTypes
import SwiftASN1
import X509
import Logging
import Hummingbird

/// What `devid revoke` sends: exactly one scope, an RFC 5280 reason, optionally a dry run.
struct RevokeRequest: Decodable {
    var device: String?
    var lot: String?
    var tenant: String?
    var serial: String?
    /// A claim token's public id (`ct_...`): every device that first enrolled with it.
    var token: String?
    var reason: String?
    var dryRun: Bool?

    func scope() throws -> CredentialScope {
        // Counted before any is parsed: two of device, lot and tenant would otherwise get the rotation's message,
        // which names expiringBefore and neither serial nor token.
        guard [device, lot, tenant, serial, token].compactMap({ $0 }).count == 1 else {
            throw HTTPError(.badRequest, message: "give exactly one of device, lot, tenant, serial, token")
        }
        var scopes: [CredentialScope] = []
        if device != nil || lot != nil || tenant != nil {
            scopes.append(try RotateRequest(device: device, lot: lot, tenant: tenant).scope())
        }
        if let serial {
            guard let value = SerialNumber(rawValue: serial.replacingOccurrences(of: ":", with: "")) else {
                throw HTTPError(.badRequest, message: "invalid serial (hex expected)")
            }
            scopes.append(.serial(value))
        }
        if let token {
            guard !token.isEmpty, token.count <= 64, !token.contains("/") else {
                throw HTTPError(.badRequest, message: "invalid claim token id")
            }
            scopes.append(.token(token))
        }
        guard scopes.count == 1, let scope = scopes.first else {
            throw HTTPError(.badRequest, message: "give exactly one of device, lot, tenant, serial, token")
        }
        return scope
    }

    func revocationReason() throws -> RevocationReason {
        guard let name = reason else { return .unspecified }
        guard let value = RevocationReason(rawValue: name), value != .removeFromCRL, value != .certificateHold else {
            throw HTTPError(
                .badRequest,
                message: "reason must be one of: "
                    + RevocationReason.allCases.filter { $0 != .removeFromCRL && $0 != .certificateHold }
                    .map(\.rawValue).joined(separator: ", "))
        }
        return value
    }
}

/// `GET /v1/admin/certificates/:serial`: the registry's record, and what relying parties see in the CRL and
/// from OCSP.
struct CertificateStatusView: Encodable, Sendable {
    /// A ``CredentialView``, or a ``ServiceCertificateView`` for a broker's certificate.
    var credential: any Encodable & Sendable
    var relyingParty: RelyingPartyView?

    func encode(to encoder: any Encoder) throws {
        // The credential's fields at the top level, as before; `crl`, `ocsp` and `notes` beside them.
        try credential.encode(to: encoder)
        try relyingParty?.encode(to: encoder)
    }
}

struct RevokeResult: Codable, Sendable {
    var dryRun: Bool
    var reason: RevocationReason
    var blastRadius: BlastRadius
    /// Set when the serial was a broker's certificate (of the services CA), not a device's credential.
    var serviceCertificate: ServiceCertificateView?
}

/// Revocation (permanent, with a CRL entry) and suspension (a reversible hold, no CRL entry).
enum RevocationRoutes {
    static func register(_ admin: RouterGroup<OpsRequestContext>, state: ServerState) {
        admin.post("/revoke") { request, context -> JSONBody<RevokeResult> in
            let body = try await request.decode(as: RevokeRequest.self, context: context)
            let scope = try body.scope()
            try await context.require(scope: scope, store: state.store)
            let reason = try body.revocationReason()
            let now = state.clock.now()
            if case .serial(let serial) = scope, try await state.store.credential(serial: serial) == nil,
                let service = try await state.store.serviceCertificate(serial: serial)
            {
                try context.requireAllTenants("a broker certificate")
                return JSONBody(
                    try await ServiceCertificateRoutes.revoke(
                        service, reason: reason, dryRun: body.dryRun ?? false, actor: context.actor, state: state))
            }
            if body.dryRun ?? false {
                let radius = try await notFoundAs404 { try await state.store.blastRadius(scope, now: now) }
                return JSONBody(RevokeResult(dryRun: true, reason: reason, blastRadius: radius))
            }
            if case .token(let id) = scope, let token = try await state.store.claimToken(id: id), !token.revoked {
                // A leaked token first stops enrolling anything more, then what it let in is revoked.
                try await state.store.revokeClaimToken(
                    id: id,
                    audit: state.auditor.event(
                        actor: context.actor, action: "token.revoke", outcome: .success,
                        reason: "revoked claim token \(id) before revoking its enrollments", tenant: token.tenant))
            }
            // The event names the scope's tenant, so that an auditor limited to it sees the revocation.
            let scopeTenant = try await OpsRequestContext.tenant(of: scope, store: state.store)
            let radius = try await notFoundAs404 {
                try await state.store.revoke(
                    scope, reason: reason, at: now,
                    audit: state.auditor.event(
                        actor: context.actor, action: "revoke", outcome: .success,
                        reason: "revoked \(scope) (\(reason.rawValue))",
                        tenant: scopeTenant, device: scope.device, serial: scope.serial))
            }
            var tenant: TenantID?
            if case .tenant(let id) = scope { tenant = id }
            state.metrics.revoked(scope: .init(scope), reason: reason, credentials: radius.credentials, tenant: tenant)
            state.logger.notice(
                "revoked", metadata: ["scope": "\(scope)", "reason": "\(reason.rawValue)",
                    "credentials": "\(radius.credentials)", "devices": "\(radius.devices)"])
            return JSONBody(RevokeResult(dryRun: false, reason: reason, blastRadius: radius))
        }

        for (verb, done, event) in [("suspend", "suspended", DeviceEvent.suspend), ("resume", "resumed", .resume)] {
            admin.post("/devices/:id/\(verb)") { _, context -> JSONBody<Device> in
                let device = try await AdminRoutes.requireDevice(context, state.store)
                var lifecycle = DeviceLifecycle(state: device.state)
                let action =
                    event == .resume
                    ? lifecycle.resume(
                        holdsCredential: !(try await state.store.activeCredentials(device: device.id).isEmpty))
                    : lifecycle.apply(event)
                guard case .transition(let next) = action else {
                    throw HTTPError(.conflict, message: "device \(device.id) is \(device.state.rawValue); cannot \(verb)")
                }
                try await state.store.updateDeviceState(
                    device.id, from: device.state, to: next,
                    audit: state.auditor.event(
                        actor: context.actor, action: "device.\(verb)", outcome: .success,
                        reason: "\(done) device \(device.id)", tenant: device.tenant, device: device.id))
                return JSONBody(try await AdminRoutes.requireDevice(context, state.store))
            }
        }

        // Compromise response: a revoked (or suspended) device gets a fresh start through a new claim token.
        admin.post("/devices/:id/reprovision") { request, context -> EditedResponse<JSONBody<TokenCreated>> in
            let device = try await AdminRoutes.requireDevice(context, state.store)
            var lifecycle = DeviceLifecycle(state: device.state)
            guard case .transition(let next) = lifecycle.reprovision() else {
                throw HTTPError(.conflict, message: "device \(device.id) is \(device.state.rawValue); cannot reprovision")
            }
            let now = state.clock.now()
            // Nothing the device held before stays valid.
            let radius = try await state.store.revoke(
                .device(device.id), reason: .keyCompromise, at: now,
                audit: state.auditor.event(
                    actor: context.actor, action: "revoke", outcome: .success,
                    reason: "reprovision: revoked every credential of \(device.id)", tenant: device.tenant,
                    device: device.id))
            state.metrics.revoked(
                scope: .reprovision, reason: .keyCompromise, credentials: radius.credentials, tenant: device.tenant)
            try await state.store.updateDeviceState(
                device.id, from: .revoked, to: next,
                audit: state.auditor.event(
                    actor: context.actor, action: "device.reprovision", outcome: .success,
                    reason: "re-provisioned device \(device.id) for a new enrollment", tenant: device.tenant,
                    device: device.id))
            let generated = ClaimTokens.generate()
            let token = ClaimToken(
                id: generated.id, secretHash: generated.hash, tenant: device.tenant, device: device.id,
                expiresAt: now.addingTimeInterval(24 * 3_600), usesRemaining: 1, createdAt: now)
            try await state.store.insertClaimToken(
                token,
                audit: state.auditor.event(
                    actor: context.actor, action: "token.create", outcome: .success,
                    reason: "created claim token \(generated.id) for re-provisioning", tenant: device.tenant,
                    device: device.id))
            return EditedResponse(
                status: .created,
                response: JSONBody(
                    TokenCreated(
                        id: generated.id, token: generated.secret, tenant: device.tenant, device: device.id,
                        expiresAt: token.expiresAt, uses: 1)))
        }

        admin.get("/certificates/:serial") { _, context -> JSONBody<CertificateStatusView> in
            let text = try context.parameters.require("serial").replacingOccurrences(of: ":", with: "")
            guard let serial = SerialNumber(rawValue: text) else {
                throw HTTPError(.badRequest, message: "invalid serial (hex expected)")
            }
            guard let credential = try await state.store.credential(serial: serial) else {
                if let service = try await state.store.serviceCertificate(serial: serial) {
                    try context.requireAllTenants("a broker certificate")
                    return JSONBody(await ServiceCertificateRoutes.status(service, state: state))
                }
                throw HTTPError(.notFound, message: "unknown serial \(serial)")
            }
            try await context.require(scope: .serial(serial), store: state.store)
            var view = CertificateStatusView(credential: CredentialView(credential))
            if let certificate = try? Certificate(derEncoded: credential.der) {
                view.relyingParty = await state.revocation.relyingPartyView(of: certificate)
            }
            return JSONBody(view)
        }
    }

    /// Turns a store `.notFound` into a 404 with its one-line reason.
    /// With `operation`, the reason names it instead of the registry's own operation (`"preview rotation: no such
    /// lot"` rather than `"preview revocation: no such lot"` for a rotation dry run).
    static func notFoundAs404<T>(operation: String? = nil, _ body: () async throws -> T) async throws -> T {
        do {
            return try await body()
        } catch {
            if let error = error as? StoreError, error.code == .notFound {
                var reason = error.reason
                if let operation, let colon = reason.range(of: ": ") {
                    reason = operation + reason[colon.lowerBound...]
                }
                throw HTTPError(.notFound, message: reason)
            }
            throw error
        }
    }
}

extension CredentialScope {
    var device: DeviceID? { if case .device(let id) = self { id } else { nil } }
    var serial: SerialNumber? { if case .serial(let serial) = self { serial } else { nil } }
}
