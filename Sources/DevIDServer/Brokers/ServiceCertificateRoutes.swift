import DevIDCore
import DevIDPKI
import DevIDStore
import Foundation
import Hummingbird
import Logging
import SwiftASN1
import X509

/// A broker's certificate (of the services CA) as the admin API shows it: what `devid cert status` and
/// `devid cert services` print. `kind` is always `service`.
struct ServiceCertificateView: Codable, Sendable {
    var serial: SerialNumber
    var kind: String = "service"
    var service: String
    var names: [String]
    var status: CredentialStatus
    var notBefore: Date
    var notAfter: Date
    var sha256: String
    var revokedAt: Date?
    var revocationReason: RevocationReason?

    init(_ certificate: ServiceCertificate) {
        serial = certificate.serial
        service = certificate.service
        names = certificate.names
        status = certificate.status
        notBefore = certificate.notBefore
        notAfter = certificate.notAfter
        sha256 = certificate.certificateSHA256
        revokedAt = certificate.revokedAt
        revocationReason = certificate.revocationReason
    }
}

/// `GET /v1/admin/service-certificates`, and the broker-certificate branches of `POST /v1/admin/revoke` and
/// `GET /v1/admin/certificates/:serial`.
enum ServiceCertificateRoutes {
    struct List: Codable, Sendable {
        var certificates: [ServiceCertificateView]
    }

    static func register(_ admin: RouterGroup<OpsRequestContext>, state: ServerState) {
        admin.get("/service-certificates") { _, context -> JSONBody<List> in
            try context.requireAllTenants("the broker certificates")
            let all = try await state.store.serviceCertificates()
            return JSONBody(List(certificates: all.map(ServiceCertificateView.init)))
        }
    }

    /// Revokes a broker certificate (or, for a dry run, says whether it would): the services CA's CRL lists it and
    /// OCSP answers `revoked` once the revocation is published.
    static func revoke(
        _ certificate: ServiceCertificate, reason: RevocationReason, dryRun: Bool, actor: String, state: ServerState
    ) async throws -> RevokeResult {
        let now = state.clock.now()
        var changed = certificate.status != .revoked
        if !dryRun, changed {
            changed = try await state.store.revokeServiceCertificate(
                serial: certificate.serial, reason: reason, at: now,
                audit: state.auditor.event(
                    actor: actor, action: "revoke", outcome: .success,
                    reason: "revoked broker certificate \(certificate.serial) (\(reason.rawValue))",
                    serial: certificate.serial))
            state.metrics.revoked(scope: .service, reason: reason, credentials: changed ? 1 : 0)
            state.logger.notice(
                "revoked", metadata: ["serial": "\(certificate.serial)", "reason": "\(reason.rawValue)", "kind": "service"])
        }
        let current = try await state.store.serviceCertificate(serial: certificate.serial) ?? certificate
        return RevokeResult(
            dryRun: dryRun, reason: reason, blastRadius: BlastRadius(devices: 0, credentials: changed ? 1 : 0),
            serviceCertificate: ServiceCertificateView(current))
    }

    /// The registry's record of a broker certificate and what relying parties see in the services CRL and from OCSP.
    static func status(_ certificate: ServiceCertificate, state: ServerState) async -> CertificateStatusView {
        var view = CertificateStatusView(credential: ServiceCertificateView(certificate))
        if let parsed = try? Certificate(derEncoded: certificate.der) {
            view.relyingParty = await state.revocation.relyingPartyView(of: parsed)
        }
        return view
    }
}
