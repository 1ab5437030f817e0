public import DevIDStore
public import Logging
import Synchronization

/// Says once that the registry's disk is full, and once that it has space again: never a log line per refused
/// request or per lost audit event while the disk stays full.
///
/// Raised by whatever meets a ``StoreError`` with code `.storageFull` (an enrollment, an admin write, an audit
/// append); cleared by the next write that succeeds (``Auditor`` clears it on every audit append, which every grant
/// and denial makes). Nothing else changes: each write still tries the disk, so DevID recovers by itself as soon as
/// space returns, with no restart.
public final class StorageAlarm: Sendable {
    /// What a client is told to wait, in seconds, when a write was refused for lack of space.
    public static let retryAfterSeconds = 30

    private struct State {
        var full = false
        var refused = 0
        var auditLost = 0
    }

    private let state = Mutex(State())

    public init() {}

    public var isFull: Bool { state.withLock { $0.full } }

    /// A write was refused for lack of space; logs the first one only (error level).
    public func raise(_ error: StoreError, logger: Logger) {
        let first = state.withLock { state in
            defer { state.refused += 1 }
            if state.full { return false }
            state.full = true
            state.refused = 0
            state.auditLost = 0
            return true
        }
        if first {
            logger.error(
                "registry disk full: writes are refused (enrollments answer 503 with Retry-After) until space returns",
                metadata: ["error": "\(error)"])
        }
    }

    /// An audit event could not be appended for lack of space (counted, and reported when space returns).
    public func auditLost(_ error: StoreError, logger: Logger) {
        raise(error, logger: logger)
        state.withLock { $0.auditLost += 1 }
    }

    /// A write succeeded: if the alarm was raised, logs once that the disk has space again.
    public func clear(logger: Logger) {
        let summary: (refused: Int, auditLost: Int)? = state.withLock { state in
            guard state.full else { return nil }
            state.full = false
            return (state.refused, state.auditLost)
        }
        if let summary {
            logger.notice(
                "registry disk has space again: writes succeed",
                metadata: [
                    "refused_while_full": "\(summary.refused)", "audit_events_not_written": "\(summary.auditLost)",
                ])
        }
    }
}
