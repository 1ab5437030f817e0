import DevIDCore
import DevIDPKI
import DevIDStore
import Foundation
import HTTPTypes
import Hummingbird
import Logging

/// One issuing CA as `GET /v1/admin/ca/issuing` lists it.
struct IssuingCAView: Codable, Sendable {
    var id: Int
    var state: IssuingCAState
    var subject: String
    var sha256: String
    var serial: String
    var notBefore: Date
    var notAfter: Date
    var stateChangedAt: Date
    var revocationReason: String?
    /// Its CRL's name (`/crl/<name>.crl`).
    var crl: String
    /// Current LDevIDs it signed, and how many of them devices seen recently hold.
    var ldevids: IssuerLDevIDCounts
}

/// What `activate`, `taint`, `revoke` and `emergency` send.
struct IssuingCAChangeRequest: Decodable {
    var dryRun: Bool?
    /// `revoke`: go ahead although online devices still hold its LDevIDs.
    var force: Bool?
    /// `revoke`: the RFC 5280 reason name; `keyCompromise` by default.
    var reason: String?
}

/// What a change did, or (dry run) would do.
struct IssuingCAChangeResult: Codable, Sendable {
    var dryRun: Bool
    var action: String
    /// The state moves, in order.
    var changes: [IssuingCATransitions.Change]
    /// `taint`, `emergency`: LDevIDs newly marked rotation-due (dry run: that would be).
    var rotationDue: Int?
    /// `revoke`: what revoking the CA's LDevIDs changes (dry run: would change).
    var blastRadius: BlastRadius?
    /// `revoke`: online devices that still held its LDevIDs.
    var onlineHolders: Int?
    /// What remains to do, one line each (e.g. re-signing the root's CRL).
    var notes: [String]
}

/// `devid ca issuing ...`: several issuing CAs and their states (prepare → activate → taint → revoke).
enum IssuingCARoutes {
    static func register(_ admin: RouterGroup<OpsRequestContext>, state: ServerState) {
        admin.get("/ca/issuing") { _, _ -> ListResponse<IssuingCAView> in
            ListResponse(items: try await views(state))
        }

        // After `devid ca issuing prepare` wrote a CA into the data directory: load it, record it as prepared,
        // publish it in /cacerts and trust it for mTLS. Also after a ceremony re-signed the root's CRLs: they are
        // served from the next request.
        admin.post("/ca/issuing/register") { _, context -> ListResponse<IssuingCAView> in
            state.rootCRLs.reloadNow()
            state.otherRootCRLs.reloadNow()
            let layout = CALayout(dataDirectory: state.configuration.dataDirectory)
            let (passphrase, _) = try DataDirectory.resolvePassphrase(state.configuration, creating: false)
            let roots = try CAStore.loadRoots(layout: layout)
            let loaded = try CAStore.loadIssuingAuthorities(
                layout: layout, passphrase: passphrase, roots: roots,
                first: state.issuers.snapshot.loaded.first { $0.id == 1 }?.ca)
            _ = try await IssuingAuthorities.register(
                loaded, store: state.store, auditor: state.auditor, now: state.clock.now(), actor: context.actor)
            try await refresh(state, authorities: loaded, roots: roots)
            return ListResponse(items: try await views(state))
        }

        for action in ["activate", "taint", "revoke", "emergency"] {
            admin.post("/ca/issuing/:id/\(action)") { request, context -> JSONBody<IssuingCAChangeResult> in
                guard let id = Int(try context.parameters.require("id")), id > 0 else {
                    throw HTTPError(.badRequest, message: "an issuing CA id is a whole number (devid ca issuing list)")
                }
                let body = try await request.decode(as: IssuingCAChangeRequest.self, context: context)
                return JSONBody(try await change(action, id: id, body: body, actor: context.actor, state: state))
            }
        }
    }

    static func views(_ state: ServerState) async throws -> [IssuingCAView] {
        let now = state.clock.now()
        let records = try await state.store.issuingCAs()
        let counts = try await state.store.ldevidCountsByIssuer(
            now: now, seenSince: now.addingTimeInterval(-state.configuration.unreachableAfter))
        return records.map { record in
            IssuingCAView(
                id: record.id, state: record.state, subject: record.subject, sha256: record.sha256,
                serial: record.serial, notBefore: record.notBefore, notAfter: record.notAfter,
                stateChangedAt: record.stateChangedAt, revocationReason: record.revocationReason,
                crl: IssuingAuthority.crlName(id: record.id), ldevids: counts[record.subject] ?? IssuerLDevIDCounts())
        }
    }

    /// Decides with ``IssuingCATransitions``, then (not a dry run) applies: the states in one transaction with
    /// their audit event, then what follows from them (rotation-due marks, revocations, caches, brokers).
    private static func change(
        _ action: String, id: Int, body: IssuingCAChangeRequest, actor: String, state: ServerState
    ) async throws -> IssuingCAChangeResult {
        let now = state.clock.now()
        let dryRun = body.dryRun ?? false
        let records = try await state.store.issuingCAs()
        guard let target = records.first(where: { $0.id == id }) else {
            throw HTTPError(.notFound, message: "no issuing CA \(id) (devid ca issuing list)")
        }
        let counts = try await state.store.ldevidCountsByIssuer(
            now: now, seenSince: now.addingTimeInterval(-state.configuration.unreachableAfter))
        let held = counts[target.subject] ?? IssuerLDevIDCounts()
        var reason = RevocationReason.keyCompromise
        if let name = body.reason {
            guard let value = RevocationReason(rawValue: name), value != .removeFromCRL, value != .certificateHold else {
                throw HTTPError(
                    .badRequest,
                    message: "reason must be one of: "
                        + RevocationReason.allCases.filter { $0 != .removeFromCRL && $0 != .certificateHold }
                        .map(\.rawValue).joined(separator: ", "))
            }
            reason = value
        }

        let decision: IssuingCATransitions.Decision
        switch action {
        case "activate":
            decision = IssuingCATransitions.activate(id, in: records)
        case "taint":
            decision = IssuingCATransitions.taint(id, in: records)
        case "revoke":
            decision = IssuingCATransitions.revoke(
                id, in: records, onlineHolders: held.online, force: body.force ?? false)
        default:
            // emergency: activate `id` (a CA just prepared) and taint the CA that was active, in one step.
            guard let old = records.first(where: { $0.state == .active }), old.id != id else {
                let why = "issuing CA \(id) is already active: prepare a new one first"
                await state.auditor.record(actor: actor, action: "ca.issuing.emergency", outcome: .denied, reason: why)
                throw HTTPError(.conflict, message: why)
            }
            guard case .apply(let activate) = IssuingCATransitions.activate(id, in: records) else {
                decision = IssuingCATransitions.activate(id, in: records)
                break
            }
            var after = records
            for change in activate { if let index = after.firstIndex(where: { $0.id == change.id }) { after[index].state = change.to } }
            switch IssuingCATransitions.taint(old.id, in: after) {
            case .apply(let taint):
                // The old CA goes active → tainted in one move (no stop at retiring).
                decision = .apply(
                    activate.filter { $0.id != old.id } + taint.map { .init(id: $0.id, from: .active, to: $0.to) })
            case .refuse(let why):
                decision = .refuse(reason: why)
            }
        }
        let changes: [IssuingCATransitions.Change]
        switch decision {
        case .refuse(let why):
            await state.auditor.record(actor: actor, action: "ca.issuing.\(action)", outcome: .denied, reason: why)
            throw HTTPError(.conflict, message: why)
        case .apply(let list):
            changes = list
        }
        let tainted = changes.filter { $0.to == .tainted }.compactMap { change in records.first { $0.id == change.id } }
        var result = IssuingCAChangeResult(dryRun: dryRun, action: action, changes: changes, notes: [])

        if dryRun {
            if !tainted.isEmpty {
                result.rotationDue = tainted.reduce(0) { $0 + (counts[$1.subject]?.current ?? 0) }
            }
            if action == "revoke" {
                result.blastRadius = try await state.store.blastRadius(.issuer(target.subject), now: now)
                result.onlineHolders = held.online
            }
            return result
        }

        let summary = changes.map { "CA \($0.id) \($0.from.rawValue) → \($0.to.rawValue)" }.joined(separator: ", ")
        do {
            try await state.store.changeIssuingCAStates(
                changes, at: now, revocationReason: action == "revoke" ? reason.rawValue : nil,
                audit: state.auditor.event(actor: actor, action: "ca.issuing.\(action)", outcome: .success, reason: summary))
        } catch {
            guard error.code == .conflict else { throw error }
            throw HTTPError(.conflict, message: "another change to the issuing CAs came first; list them and retry")
        }
        // Signing and trust switch now, on every listener of this server.
        try await refresh(state)

        for ca in tainted {
            result.rotationDue = (result.rotationDue ?? 0)
                + (try await state.store.markRotationDue(
                    .issuer(ca.subject), at: now,
                    audit: state.auditor.event(
                        actor: actor, action: "rotation.campaign", outcome: .success,
                        reason: "marked rotation-due: LDevIDs of tainted issuing CA \(ca.id)")))
        }
        if action == "revoke" {
            // The CA's LDevIDs: cACompromise when its key leaked, else the reason given.
            let credentialReason: RevocationReason = reason == .keyCompromise ? .caCompromise : reason
            let scope = CredentialScope.issuer(target.subject)
            let radius = try await state.store.revoke(
                scope, reason: credentialReason, at: now,
                audit: state.auditor.event(
                    actor: actor, action: "revoke", outcome: .success,
                    reason: "revoked the LDevIDs of issuing CA \(id) (\(credentialReason.rawValue))"))
            result.blastRadius = radius
            result.onlineHolders = held.online
            state.metrics.revoked(scope: .init(scope), reason: credentialReason, credentials: radius.credentials)
            result.notes.append(
                "the root's CRL lists issuing CA \(id) once re-signed with the root key: "
                    + "devid ca root-crl --root-key FILE (devid ca issuing revoke --root-key does it)")
        }
        if action == "activate" || action == "emergency" {
            result.notes.append("new LDevIDs and renewals are signed by issuing CA \(id)")
        }
        if !tainted.isEmpty {
            result.notes.append("devices rotate at their next check-in; follow with devid rotate status --issuing-ca ID")
        }
        state.logger.notice(
            "issuing CAs changed", metadata: ["action": "\(action)", "changes": "\(summary)"])
        return result
    }

    /// Rebuilds the server's view of the issuing CAs from the registry (and `authorities`, when the data
    /// directory was read again), then brings every consumer in step: CRL publication, verified-chain cache,
    /// broker trust files.
    static func refresh(_ state: ServerState, authorities: [IssuingAuthority]? = nil, roots: Roots? = nil) async throws {
        let before = state.issuers.snapshot
        let records = try await state.store.issuingCAs()
        try state.issuers.update(
            authorities: authorities ?? before.loaded, records: records, roots: roots ?? before.roots)
        let after = state.issuers.snapshot
        if Set(before.trusted.map(\.id)) != Set(after.trusted.map(\.id)) {
            state.verifiedLeaves.removeAll()
        }
        await state.revocation.setIssuing(after.entries.map(\.authority))
        await state.brokers.identityChanged(devices: [], endSessions: false, reason: "issuing CAs changed")
    }
}
