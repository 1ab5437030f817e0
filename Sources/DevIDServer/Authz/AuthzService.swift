import Crypto
public import DevIDCore
import DevIDPKI
import DevIDStore
import Foundation
import Logging
import SwiftASN1
import X509

/// Makes policy decisions for the `/v1/authz/*` routes: resolves the presented identity, asks the
/// ``DecisionEngine`` (filling a miss from the store), confirms a credential seen for the first time, counts the
/// decision and audits it.
///
/// Audit: every denial is audited; of the grants, `connect` is audited (one event per broker session) while
/// publish, subscribe and scope grants are counted only, as they come at message rate. Both are bounded per device
/// (``RepeatedDecisions``): the first of a kind in a minute is written at once, repeats as one count a minute.
public struct AuthzService: Sendable {
    /// How the client presented itself.
    public enum Presented: Sendable, Hashable {
        /// The client certificate, PEM.
        case pem(String)
        /// SHA-256 of the client certificate's DER, hex (colons allowed).
        case fingerprint(String)
        /// A device id, when the broker verified the certificate itself and passes its CN.
        case device(DeviceID)
    }

    /// A request that cannot be decided because it is malformed; the reason is one line.
    public struct BadRequest: Error, Sendable, Hashable {
        public var reason: String
        public init(_ reason: String) { self.reason = reason }
    }

    let state: ServerState

    public init(state: ServerState) {
        self.state = state
    }

    var engine: DecisionEngine { state.authz }

    /// Decides, counts and audits. Throws ``BadRequest`` for malformed input (nothing is counted then), and store
    /// errors.
    public func decide(
        _ presented: Presented, action: AuthzAction, claimedTenant: TenantID? = nil,
        encoding: DecisionEngine.TopicEncoding = .mqtt, auditGrant: Bool = true, peer: String? = nil
    ) async throws -> AuthzDecision {
        let now = state.clock.now()
        let subject: DecisionEngine.Subject
        switch presented {
        case .device(let id):
            subject = .device(id)
        case .fingerprint(let text):
            subject = .fingerprint(try Self.fingerprint(text))
        case .pem(let text):
            let certificate: Certificate
            do {
                certificate = try Certificate(pemEncoded: text)
            } catch {
                throw BadRequest("certificate is not a PEM X.509 certificate")
            }
            let fingerprint = certificate.sha256Fingerprint
            subject = .fingerprint(fingerprint)
            // A certificate the index knows is one DevID recorded, byte for byte; any other must at least be
            // signed by the issuing CA before the store is asked about it.
            if case .missingFingerprint = engine.decide(.init(subject: subject, action: .connect), now: now),
                state.issuers.snapshot.trustedIssuer(of: certificate) == nil
            {
                return await finish(
                    .deny(.unknownIssuer, serial: certificate.devidSerial), action: action, auditGrant: auditGrant, peer: peer)
            }
        }
        let query = DecisionEngine.Query(
            subject: subject, action: action, claimedTenant: claimedTenant, encoding: encoding)
        let lookup = try await lookup(query, now: now)
        guard case .decided(let decision, let confirm) = lookup else {
            return await finish(.deny(.unknownCertificate), action: action, auditGrant: auditGrant, peer: peer)
        }
        if let confirm, case .fingerprint(let fingerprint) = subject {
            await self.confirm(confirm, fingerprint: fingerprint, decision: decision, now: now)
        }
        return await finish(decision, action: action, auditGrant: auditGrant, peer: peer)
    }

    /// Asks the engine; on a miss loads the missing entry from the store and installs it, then asks again. When an
    /// invalidation races the load (the entry is not installed), decides directly on freshly loaded state.
    func lookup(_ query: DecisionEngine.Query, now: Date) async throws -> DecisionEngine.Lookup {
        do {
            return try await reloadingLookup(query, now: now)
        } catch let error as StoreError where error.code == .unavailable {
            // The registry cannot be reached: what the index holds answers, up to DecisionEngine.outageMaximumAge
            // old. The change stream resumes (and reloads what changed) once the registry is back.
            if case .decided(let decision, _) = engine.decide(query, now: now, maximumAge: DecisionEngine.outageMaximumAge) {
                return .decided(decision, confirm: nil)
            }
            throw error
        }
    }

    private func reloadingLookup(_ query: DecisionEngine.Query, now: Date) async throws -> DecisionEngine.Lookup {
        for _ in 0..<3 {
            let generation = engine.generation
            let installed: Bool
            switch engine.decide(query, now: now) {
            case .decided(let decision, let confirm):
                return .decided(decision, confirm: confirm)
            case .missingFingerprint(let fingerprint):
                guard let entry = try await loadDevice(fingerprint: fingerprint, now: now) else {
                    return .decided(.deny(.unknownCertificate), confirm: nil)
                }
                installed = engine.install(entry, generation: generation)
            case .missingDevice(let id):
                guard let entry = try await DecisionEngine.loadDevice(id, store: state.store, now: now) else {
                    return .decided(.deny(.unknownDevice, device: id), confirm: nil)
                }
                installed = engine.install(entry, generation: generation)
            case .missingTenant(let id):
                let entry = try await DecisionEngine.loadTenant(id, store: state.store, now: now)
                installed = engine.install(entry, tenant: id, generation: generation)
            case .missingDottedIdentifiers:
                // The first time a full scan; then only the tenants are re-read when they age out.
                let tenantsOnly = engine.dottedIdentifiers != nil
                engine.install(
                    dotted: try await DecisionEngine.scanDottedIdentifiers(store: state.store, tenantsOnly: tenantsOnly),
                    now: now)
                installed = true
            }
            if !installed { break }
        }
        return try await direct(query, now: now)
    }

    /// A decision on state read from the store now, bypassing the index.
    func direct(_ query: DecisionEngine.Query, now: Date) async throws -> DecisionEngine.Lookup {
        let entry: DecisionEngine.DeviceEntry?
        var fingerprint: String?
        switch query.subject {
        case .fingerprint(let value):
            fingerprint = value
            entry = try await loadDevice(fingerprint: value, now: now)
            guard entry != nil else { return .decided(.deny(.unknownCertificate), confirm: nil) }
        case .device(let id):
            entry = try await DecisionEngine.loadDevice(id, store: state.store, now: now)
            guard entry != nil else { return .decided(.deny(.unknownDevice, device: id), confirm: nil) }
        }
        guard let entry else { return .decided(.deny(.unknownCertificate), confirm: nil) }
        let tenant = try await DecisionEngine.loadTenant(entry.device.tenant, store: state.store, now: now)
        var dotted = DottedIdentifiers()
        if query.encoding == .amqp, query.action.isTopic {
            if let known = engine.dottedIdentifiers {
                dotted = known
            } else {
                dotted = try await DecisionEngine.scanDottedIdentifiers(store: state.store)
                engine.install(dotted: dotted, now: now)
            }
            if entry.device.tenant.hasDot { dotted.tenants.insert(entry.device.tenant) }
            if entry.device.id.hasDot { dotted.devices.insert(entry.device.id) }
        }
        return DecisionEngine.evaluate(
            query, entry: entry, fingerprint: fingerprint, tenant: tenant, dotted: dotted, now: now)
    }

    private func loadDevice(fingerprint: String, now: Date) async throws -> DecisionEngine.DeviceEntry? {
        guard let credential = try await state.store.credential(certificateSHA256: fingerprint) else { return nil }
        return try await DecisionEngine.loadDevice(credential.deviceID, store: state.store, now: now)
    }

    /// Rotation step 3: the first authentication seen with a new credential confirms it.
    private func confirm(_ serial: SerialNumber, fingerprint: String, decision: AuthzDecision, now: Date) async {
        do {
            _ = try await state.store.confirmCredential(
                serial: serial, at: now,
                audit: state.auditor.event(
                    actor: decision.device.map { "device:\($0)" } ?? "anonymous", action: "rotation.confirm",
                    outcome: .success, reason: "credential \(serial) seen in use for the first time (policy decision)",
                    tenant: decision.tenant, device: decision.device, serial: serial))
            engine.markConfirmed(fingerprint: fingerprint)
        } catch {
            state.logger.error(
                "confirming a credential failed", metadata: ["serial": "\(serial)", "error": "\(error)"])
        }
    }

    /// Counts, audits (denials and connect grants, each through its ``RepeatedDecisions``) and returns the decision.
    private func finish(
        _ decision: AuthzDecision, action: AuthzAction, auditGrant: Bool, peer: String? = nil
    ) async -> AuthzDecision {
        engine.counters.record(decision, action: action.name)
        watch(decision, action: action, peer: peer)
        guard !decision.allowed || (action == .connect && auditGrant) else { return decision }
        var what = action.name
        switch action {
        case .publish(let topic), .subscribe(let topic): what += " " + Self.printable(topic)
        case .scope(let scope): what += " " + Self.printable(scope)
        case .connect: break
        }
        let actor = decision.device.map { "device:\($0)" } ?? "anonymous"
        let reason = "\(what): \(decision.reason.rawValue)"
        if decision.allowed {
            // A device reconnecting in a loop writes its first connect, then one count a minute.
            await state.repeatedConnects.record(
                actor: actor, action: "authz.\(action.name)", reason: reason,
                group: "\(action.name): \(decision.reason.rawValue)", tenant: decision.tenant, device: decision.device,
                serial: decision.serial)
        } else {
            // A device that keeps asking for what it may not have writes its first denial, then one count a minute.
            await state.repeatedDenials.record(
                actor: actor, action: "authz.\(action.name)", reason: reason,
                group: "\(action.name): \(decision.reason.rawValue)", tenant: decision.tenant, device: decision.device,
                serial: decision.serial)
        }
        return decision
    }

    /// What the anomaly checks see of a decision: a denial's reason in the health history, a revoked or
    /// superseded credential presented (`revoked_credential_in_use`), and every connect of a device
    /// (`conflicting_client_id`).
    private func watch(_ decision: AuthzDecision, action: AuthzAction, peer: String?) {
        if !decision.allowed, let reason = AuthFailureReason(decision.reason) {
            state.metrics.authzDenied(reason, tenant: decision.tenant)
        }
        guard let device = decision.device else { return }
        let now = state.clock.now()
        if decision.reason == .revoked || decision.reason == .superseded {
            state.watch.suspect(
                device: device, tenant: decision.tenant, serial: decision.serial, stage: AuthStage.authz.rawValue,
                reason: decision.reason.rawValue, source: peer, at: now)
        }
        if action == .connect, decision.allowed {
            state.watch.connect(device: device, tenant: decision.tenant, serial: decision.serial, peer: peer, at: now)
        }
    }

    /// A SHA-256 fingerprint as lowercase hex: 64 hex digits, colons and case ignored (`openssl x509 -fingerprint`
    /// prints `AB:CD:...`).
    static func fingerprint(_ text: String) throws -> String {
        var value = text.lowercased().trimmingCharacters(in: .whitespaces)
        if value.hasPrefix("sha256:") { value.removeFirst("sha256:".count) }
        value = value.replacingOccurrences(of: ":", with: "")
        guard value.utf8.count == 64, value.utf8.allSatisfy({ (48...57).contains($0) || (97...102).contains($0) })
        else {
            throw BadRequest("fingerprint must be the certificate's SHA-256 (64 hex digits, colons allowed)")
        }
        return value
    }

    /// A topic or scope as it may appear in an audit line: control characters replaced, at most 200 characters.
    static func printable(_ text: String) -> String {
        let cleaned = String(
            String.UnicodeScalarView(
                text.unicodeScalars.map {
                    $0.properties.generalCategory == .control ? "?" : $0
                }))
        return cleaned.count > 200 ? String(cleaned.prefix(200)) + "…" : cleaned
    }
}
