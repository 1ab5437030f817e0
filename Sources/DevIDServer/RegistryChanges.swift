import DevIDCore
import DevIDStore
import Foundation
import Logging
import ServiceLifecycle

/// Brings every cache and publisher of a server in step with the registry's change stream (``ChangeFeed``), so a
/// route handler only changes the registry:
/// - the decision index (`/v1/authz/*`): the devices of device and credential changes, the tenants of tenant
///   changes, everything after an issuing CA changed;
/// - the CRLs and OCSP answers: a credential, service certificate or IDevID revoked, an issuing CA changed;
/// - the admin token cache: any admin token change;
/// - the brokers (Mosquitto files, RabbitMQ sessions): devices created or changing state, tenants' topic policies,
///   revocations (whose devices' sessions end), issuing CAs;
/// - the issuing CAs' signing and trust: an issuing CA's state changed.
///
/// On SQLite a change made by this server reaches every subscriber before the write returns (the store delivers
/// it); one made by another process on the same file, within about a quarter second (``RegistryChangePoller``).
enum RegistryChangeRouter {
    struct Plan: Equatable {
        var devices: Set<DeviceID> = []
        var tenants: Set<TenantID> = []
        var everyDecision = false
        var revocation = false
        var adminTokens = false
        var issuingCAs = false
        var brokers = false
        var settings = false
        /// The job-lease holder stored new CRLs: every other server serves them.
        var storedCRLs = false
        /// Devices whose broker sessions end (revoked, suspended).
        var endSessions: Set<DeviceID> = []

        init() {}

        init(_ changes: [RegistryChange]) {
            for change in changes { add(change) }
        }

        mutating func add(_ change: RegistryChange) {
            switch change.kind {
            case .device:
                if let device = change.device { devices.insert(device) }
                switch change.detail {
                case "idevid":
                    revocation = true
                case DeviceState.revoked.rawValue, DeviceState.suspended.rawValue:
                    brokers = true
                    if let device = change.device { endSessions.insert(device) }
                default:
                    brokers = true
                }
            case .credential:
                if let device = change.device { devices.insert(device) }
                if change.detail == "revoked:superseded" {
                    // Retired by the rotation: the CRLs change (and reach the brokers when re-signed, through
                    // the publisher), but the grants do not, and the device is connected with its successor.
                    revocation = true
                } else if change.detail == CredentialStatus.revoked.rawValue || change.detail == "deleted" {
                    revocation = true
                    brokers = true
                    if let device = change.device { endSessions.insert(device) }
                }
            case .tenant:
                if let tenant = change.tenant { tenants.insert(tenant) }
                brokers = true
            case .issuingCA:
                issuingCAs = true
                everyDecision = true
                revocation = true
            case .serviceCertificate:
                if change.detail != "active" { revocation = true }
            case .adminToken:
                adminTokens = true
            case .setting:
                settings = true
                everyDecision = true
            case .crl:
                storedCRLs = true
            case .missed:
                settings = true
                everyDecision = true
                revocation = true
                adminTokens = true
                issuingCAs = true
                brokers = true
            case .lot, .claimToken:
                break
            }
        }
    }

    /// Subscribes `state`'s caches to its store's feed; ``DevIDServerApp`` does it when it starts serving and
    /// unsubscribes when it stops (the subscriber holds the state, and with it the store).
    static func subscribe(_ state: ServerState) -> Int {
        state.store.changeFeed.subscribe { changes in
            await apply(Plan(changes), state: state)
        }
    }

    static func apply(_ plan: Plan, state: ServerState) async {
        if plan.settings { await applySettings(state) }
        if plan.issuingCAs {
            do {
                try await IssuingCARoutes.refresh(state)
            } catch {
                state.logger.error(
                    "issuing CAs changed in the registry, but this server cannot follow",
                    metadata: ["error": "\(error)"])
            }
        }
        // Each device's entry, however many (a lot import): emptying the whole index would make every device's
        // next decision read the registry.
        if plan.everyDecision {
            state.authz.invalidateAll()
        } else {
            for device in plan.devices { state.authz.invalidate(device: device) }
            for tenant in plan.tenants { state.authz.invalidate(tenant: tenant) }
        }
        if plan.revocation { await state.revocation.invalidate() }
        if plan.storedCRLs { await state.revocation.storedCRLsChanged() }
        if plan.adminTokens { await state.adminTokens.invalidate() }
        if plan.brokers {
            await state.brokers.mosquitto?.changed()
            // Closing RabbitMQ sessions is HTTP to the broker (seconds when it is slow): never inside the write
            // that made the change, nor holding up the next batch.
            if let rabbitMQ = state.brokers.rabbitMQ, !plan.endSessions.isEmpty {
                let devices = plan.endSessions
                Task { await rabbitMQ.endSessions(devices: devices, reason: "identity changed in DevID") }
            }
        }
    }
}

extension RegistryChangeRouter {
    /// Applies every change recorded after `sequence` (up to 100,000; beyond, everything is reloaded).
    static func replay(_ state: ServerState, after sequence: Int64) async {
        do {
            let limit = 100_000
            let changes = try await state.store.changes(after: sequence, limit: limit)
            guard !changes.isEmpty else { return }
            var plan = Plan(changes)
            if changes.count == limit {
                plan.add(RegistryChange(sequence: 0, kind: .missed, subject: "replay", detail: "more than \(limit)"))
            }
            await apply(plan, state: state)
        } catch {
            state.logger.error("reading the registry's changes at start failed", metadata: ["error": "\(error)"])
        }
    }

    /// Applies the registry's settings to the live configuration; settings that would make it invalid (the file
    /// changed under them) are logged and left out, and what was in effect stays.
    static func applySettings(_ state: ServerState) async {
        do {
            let settings = try await state.store.settings()
            let before = state.live.registrySettings
            try state.live.apply(registry: settings)
            guard settings != before else { return }
            state.logger.notice(
                "settings from the registry in effect",
                metadata: ["settings": "\(settings.keys.sorted().map { "\($0)=\(settings[$0] ?? "")" }.joined(separator: " "))"])
        } catch {
            state.logger.error("the registry's settings were not applied", metadata: ["error": "\(error)"])
        }
    }
}

/// Reads the changes other writers committed (another process on the same SQLite file, other servers on
/// PostgreSQL) when the store nudges the feed and at least every `interval` (a quarter second: one indexed read
/// that finds nothing, most of the time), and prunes the recorded changes to the
/// newest `keep` every `pruneInterval`.
struct RegistryChangePoller: Service {
    let store: any Store
    let logger: Logger
    var interval: Duration = .milliseconds(250)
    var keep = 100_000
    var pruneInterval: Duration = .seconds(600)

    func run() async throws {
        await cancelWhenGracefulShutdown {
            await loop()
        }
    }

    private func loop() async {
        let clock = ContinuousClock()
        var nextPrune = clock.now.advanced(by: pruneInterval)
        while !Task.isCancelled {
            do {
                try await store.changeFeed.catchUp(from: store)
                if clock.now >= nextPrune {
                    nextPrune = clock.now.advanced(by: pruneInterval)
                    _ = try await store.pruneChanges(keepingLatest: keep)
                }
            } catch {
                logger.warning("reading the registry's changes failed", metadata: ["error": "\(error)"])
            }
            // PostgreSQL nudges the feed when another server commits (LISTEN/NOTIFY), so a change arrives in
            // milliseconds; the interval is the fallback (SQLite, or notifications lost while reconnecting).
            await store.changeFeed.sleep(upTo: interval)
        }
    }
}
