public import DevIDCore
public import DevIDStore
public import Logging

/// Records every grant and denial in the audit trail and the log.
public struct Auditor: Sendable {
    let store: any Store
    let clock: any WallClock
    let logger: Logger
    /// Raised while the registry's disk is full; shared by every copy of this auditor.
    public let storage: StorageAlarm

    public init(store: any Store, clock: any WallClock, logger: Logger) {
        self.store = store
        self.clock = clock
        self.logger = logger
        self.storage = StorageAlarm()
    }

    /// Appends an event. An audit failure is logged loudly but does not turn a denial into a crash; on a full disk
    /// it is counted and logged once for the whole episode (``StorageAlarm``), not once per event.
    public func record(
        actor: String, action: String, outcome: AuditEvent.Outcome, reason: String,
        tenant: TenantID? = nil, device: DeviceID? = nil, serial: SerialNumber? = nil
    ) async {
        let event = event(
            actor: actor, action: action, outcome: outcome, reason: reason, tenant: tenant, device: device,
            serial: serial)
        do {
            try await store.appendAudit(event)
            storage.clear(logger: logger)
        } catch where error.code == .storageFull {
            storage.auditLost(error, logger: logger)
        } catch {
            logger.error("audit append failed", metadata: ["action": "\(event.action)", "error": "\(error)"])
        }
    }

    /// An event stamped with the injected clock, for methods that store it in the same transaction as a change.
    ///
    /// `actor`, `action` and `reason` may carry what a peer sent (certificate names, request fields): they are
    /// bounded and made one line here (``AuditChain/normalized(_:)``, which the store applies again), so the log
    /// line says exactly what the trail will.
    public func event(
        actor: String, action: String, outcome: AuditEvent.Outcome, reason: String,
        tenant: TenantID? = nil, device: DeviceID? = nil, serial: SerialNumber? = nil
    ) -> AuditEvent {
        let event = AuditChain.normalized(
            AuditEvent(
                time: clock.now(), actor: actor, action: action, outcome: outcome, reason: reason,
                tenant: tenant, device: device, serial: serial))
        var metadata: Logger.Metadata = [
            "actor": "\(event.actor)", "action": "\(event.action)", "outcome": "\(outcome.rawValue)",
        ]
        if let device { metadata["device"] = "\(device)" }
        if let tenant { metadata["tenant"] = "\(tenant)" }
        if let serial { metadata["serial"] = "\(serial)" }
        logger.debug("\(event.reason)", metadata: metadata)
        return event
    }
}
