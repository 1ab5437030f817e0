public import DevIDCore
import DevIDStore
import Foundation

/// Decisions about an identified device that repeat, audited in aggregate: a device (or its broker) that keeps asking
/// for what it may not have, or keeps reconnecting, cannot turn each request into an audit row. One instance counts
/// denials (`outcome` `.denied`), another the `connect` grants (`.success`, one per broker session, which a device in
/// a reconnect loop repeats as fast as it can).
///
/// A device publishing to a forbidden topic in a loop makes its broker ask `POST /v1/authz/mqtt` once per message,
/// and the decision API has no rate limit (it keeps priority under load): one synced row per denial let one device
/// fill the disk. Denials are grouped by (actor, action, decision, tenant, device, serial) over a window. The first of
/// each group in a window is written at once, with its full reason (the topic), exactly as before; the rest are
/// counted, and ``flush()`` (run with ``AnonymousFailures/flush()`` every minute and at graceful shutdown) writes one
/// row per group that repeated, with the same actor, tenant, device and serial: `412 in 60 s (first recorded alone):
/// publish: topic_not_allowed`. At most `maximumKeys` groups are kept per window; denials beyond them are counted per
/// action and summarized in one row. So a window writes at most `2 × maximumKeys + actions` rows.
public actor RepeatedDecisions {
    struct Key: Hashable {
        var actor: String
        var action: String
        var group: String
        var tenant: TenantID?
        var device: DeviceID?
        var serial: SerialNumber?
    }

    private let auditor: Auditor
    private let clock: any WallClock
    /// Most groups kept per window.
    public nonisolated let maximumKeys: Int
    /// The outcome of every row written: `.denied` for denials, `.success` for grants.
    public nonisolated let outcome: AuditEvent.Outcome
    private var window: FailureWindow<Key>

    public init(
        auditor: Auditor, clock: any WallClock, maximumKeys: Int = 1_000, outcome: AuditEvent.Outcome = .denied
    ) {
        self.auditor = auditor
        self.clock = clock
        self.maximumKeys = max(1, maximumKeys)
        self.outcome = outcome
        self.window = FailureWindow(maximumKeys: max(1, maximumKeys))
    }

    /// Counts one decision of group `group` (e.g. `publish: topic_not_allowed`); writes it with its full `reason`
    /// only if it is the first of its group in this window.
    public func record(
        actor: String, action: String, reason: String, group: String, tenant: TenantID?, device: DeviceID?,
        serial: SerialNumber?
    ) async {
        let key = Key(actor: actor, action: action, group: group, tenant: tenant, device: device, serial: serial)
        guard window.count(key, action: action, now: clock.now()) else { return }
        await auditor.record(
            actor: actor, action: action, outcome: outcome, reason: reason, tenant: tenant, device: device,
            serial: serial)
    }

    /// Decisions counted in this window and not yet written (tests and metrics).
    public var pending: Int { window.pending }

    /// Writes one row per group that repeated in this window, and one per action for the overflow; starts a new
    /// window. Returns how many rows it wrote.
    @discardableResult
    public func flush() async -> Int {
        guard let (seconds, groups, others) = window.drain(now: clock.now()) else { return 0 }
        for (key, count) in groups {
            await auditor.record(
                actor: key.actor, action: key.action, outcome: outcome,
                reason: "\(count) in \(seconds) s (first recorded alone): \(key.group)", tenant: key.tenant,
                device: key.device, serial: key.serial)
        }
        let (plural, singular) = outcome == .denied ? ("denials", "denial") : ("grants", "grant")
        for (action, count) in others {
            await auditor.record(
                actor: "anonymous", action: action, outcome: outcome,
                reason: "\(count) \(plural) of other devices in \(seconds) s (over \(maximumKeys) kinds of \(singular))")
        }
        return groups.count + others.count
    }
}
