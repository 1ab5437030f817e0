public import DevIDCore
import DevIDStore
import Foundation

/// Failures by requesters with no authenticated identity (a client certificate refused at the handshake, a missing
/// or unknown admin, authz or claim token), audited in aggregate so strangers cannot turn requests into audit rows.
///
/// Failures are grouped by (action, reason, source address, serial) over a window. The first of each group in a
/// window is written at once, exactly as a single failure always was, so an attack shows in the trail as it starts;
/// the rest are only counted, and ``flush()`` (run by ``AnonymousFailureFlusher`` every minute and at graceful
/// shutdown) writes one summary row per group that repeated: `412 from 203.0.113.9 in 60 s (first recorded alone):
/// certificate does not chain to a trusted CA`. At most `maximumKeys` groups are kept per window; failures beyond
/// that are counted per action and summarized in one `other sources` row. So a window writes at most
/// `2 × maximumKeys + actions` rows, however many requests arrive.
///
/// Failures of an identified device or token (revoked, expired, wrong role, wrong tenant) are not anonymous: they
/// stay individually audited through ``Auditor``.
public actor AnonymousFailures {
    struct Key: Hashable {
        var action: String
        var reason: String
        var source: String
        var serial: SerialNumber?
    }

    private let auditor: Auditor
    private let clock: any WallClock
    /// Most groups kept per window.
    public nonisolated let maximumKeys: Int
    private var window: FailureWindow<Key>

    public init(auditor: Auditor, clock: any WallClock, maximumKeys: Int = 100) {
        self.auditor = auditor
        self.clock = clock
        self.maximumKeys = max(1, maximumKeys)
        self.window = FailureWindow(maximumKeys: max(1, maximumKeys))
    }

    /// Counts one anonymous failure; writes it only if it is the first of its group in this window.
    public nonisolated func record(
        action: String, reason: String, source: String?, serial: SerialNumber? = nil
    ) async {
        // The same bound and one-line form the trail applies, so near-identical reasons share a group.
        let normalized = AuditChain.normalized(
            AuditEvent(time: Date(timeIntervalSince1970: 0), actor: "anonymous", action: action, outcome: .denied,
                reason: reason))
        let key = Key(
            action: normalized.action, reason: normalized.reason, source: Self.source(source), serial: serial)
        guard await count(key) else { return }
        await auditor.record(actor: "anonymous", action: action, outcome: .denied, reason: reason, serial: serial)
    }

    /// Whether `key` is new in this window (and kept): the caller writes it.
    private func count(_ key: Key) -> Bool {
        window.count(key, action: key.action, now: clock.now())
    }

    /// Failures counted in this window and not yet written (tests and metrics).
    public var pending: Int { window.pending }

    /// Writes one row per group that repeated in this window, and one per action for the overflow; starts a new
    /// window. Returns how many rows it wrote.
    @discardableResult
    public func flush() async -> Int {
        guard let (seconds, groups, others) = window.drain(now: clock.now()) else { return 0 }
        for (key, count) in groups {
            await auditor.record(
                actor: "anonymous", action: key.action, outcome: .denied,
                reason: "\(count) from \(key.source) in \(seconds) s (first recorded alone): \(key.reason)",
                serial: key.serial)
        }
        for (action, count) in others {
            await auditor.record(
                actor: "anonymous", action: action, outcome: .denied,
                reason: "\(count) from other sources in \(seconds) s (over \(maximumKeys) kinds of failure)")
        }
        return groups.count + others.count
    }

    /// The peer address as the trail shows it: the IP without the port, bounded and printable.
    static func source(_ address: String?) -> String {
        guard let address, !address.isEmpty else { return "unknown" }
        let allowed = address.unicodeScalars.prefix(64).filter {
            ("0"..."9").contains($0) || ("a"..."f").contains($0) || ("A"..."F").contains($0) || $0 == ":"
                || $0 == "."
        }
        return allowed.isEmpty ? "unknown" : String(String.UnicodeScalarView(allowed))
    }
}

/// The IP address of the peer whose TLS client certificate is being verified: set by ``MTLSChannel`` around the
/// verification callback, which NIOSSL gives only the certificates.
public enum TLSPeerAddress {
    @TaskLocal public static var current: String?
}
