import DevIDCore
import DevIDPKI
import DevIDStore
import Foundation
import HTTPTypes
import Hummingbird
import Logging
import X509

/// One root as `GET /v1/admin/ca/roots` lists it.
struct RootView: Codable, Sendable {
    var id: Int
    /// `active` (signs new issuing CAs), `prepared` (trusted, signs nothing yet) or `retired` (devices drop it).
    var state: String
    var subject: String
    var sha256: String
    var notAfter: Date
    /// Its CRL's name (`/crl/<name>.crl`).
    var crl: String
    /// Roots that certify this one (cross-certificates): a device that trusts one of them can validate it.
    var certifiedBy: [Int]
}

/// `devid ca root ...`: the roots and their state (`DATA/ca/roots/state.json`). Preparing a root needs the active
/// root's key and runs where the data directory is (`devid ca root prepare`, then `register`); activating and
/// retiring go through the server, which checks the registry and brings every listener in step.
enum RootCARoutes {
    static func register(_ admin: RouterGroup<OpsRequestContext>, state: ServerState) {
        admin.get("/ca/roots") { _, _ -> ListResponse<RootView> in
            ListResponse(items: views(state.issuers.snapshot.roots))
        }
        for action in ["activate", "retire"] {
            admin.post("/ca/roots/:id/\(action)") { _, context -> ListResponse<RootView> in
                guard let id = Int(try context.parameters.require("id")), id > 0 else {
                    throw HTTPError(.badRequest, message: "a root id is a whole number (devid ca root list)")
                }
                let layout = CALayout(dataDirectory: state.configuration.dataDirectory)
                let roots: Roots
                do throws(DevIDPKIError) {
                    if action == "activate" {
                        roots = try CAStore.activateRoot(layout: layout, id: id)
                    } else {
                        let snapshot = state.issuers.snapshot
                        let root = snapshot.roots.certificates[id]
                        let under = snapshot.entries.filter { entry in
                            entry.record.state != .revoked && root.map { entry.authority.certificate.issuer == $0.subject } == true
                        }
                        roots = try CAStore.retireRoot(layout: layout, id: id, stillIssuing: under.map(\.record.id))
                    }
                } catch {
                    await state.auditor.record(
                        actor: context.actor, action: "ca.root.\(action)", outcome: .denied, reason: error.reason)
                    throw HTTPError(error.code == .notFound ? .notFound : .conflict, message: error.reason)
                }
                await state.auditor.record(
                    actor: context.actor, action: "ca.root.\(action)", outcome: .success,
                    reason: action == "activate"
                        ? "root \(id) signs new issuing CAs" : "root \(id) retired: devices stop trusting it")
                try await IssuingCARoutes.refresh(state, roots: roots)
                state.logger.notice("roots changed", metadata: ["action": "\(action)", "root": "\(id)"])
                return ListResponse(items: views(roots))
            }
        }
    }

    static func views(_ roots: Roots) -> [RootView] {
        roots.ids.compactMap { id in
            guard let certificate = roots.certificates[id] else { return nil }
            let state =
                roots.state.active == id ? "active" : roots.state.retired.contains(id) ? "retired" : "prepared"
            return RootView(
                id: id, state: state, subject: String(describing: certificate.subject),
                sha256: certificate.sha256Fingerprint, notAfter: certificate.notValidAfter, crl: Roots.crlName(id: id),
                certifiedBy: roots.cross.filter { $0.subjectID == id }.map(\.issuerID).sorted())
        }
    }
}
