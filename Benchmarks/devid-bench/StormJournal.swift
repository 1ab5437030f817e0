import Foundation
import Synchronization

/// What the simulated devices saw, counted from every task at once.
final class StormJournal: Sendable {
    struct Snapshot: Codable, Sendable {
        /// Requests sent (every try).
        var attempts: Int
        /// Responses by HTTP status.
        var statuses: [String: Int]
        /// `DevID-Refusal` codes of the responses that were not accepted.
        var refusalCodes: [String: Int]
        /// `429` and `503` answers, and how many of them carried a readable `Retry-After`.
        var backPressure: Int
        var backPressureWithRetryAfter: Int
        /// `Retry-After` values seen, in seconds, with their counts.
        var retryAfterSeconds: [String: Int]
        /// Connections that failed before a whole response (refused, reset at a connection cap, timed out).
        var transportErrors: Int
        var firstTransportErrors: [String]
        /// Retries that followed a `Retry-After`; `early` were sent before it had passed (must be 0).
        var retriesAfterRetryAfter: Int
        var retriesEarly: Int
        /// The smallest time between a `Retry-After` running out and the retry (negative = too early), in seconds.
        var minimumRetrySlackSeconds: Double?
    }

    private struct Counts {
        var attempts = 0
        var statuses: [Int: Int] = [:]
        var refusalCodes: [String: Int] = [:]
        var backPressure = 0
        var backPressureWithRetryAfter = 0
        var retryAfter: [Int: Int] = [:]
        var transportErrors = 0
        var firstTransportErrors: [String] = []
        var retries = 0
        var early = 0
        var minimumSlack: Double?
    }

    private let counts = Mutex(Counts())

    func attempt() { counts.withLock { $0.attempts += 1 } }

    func answered(_ status: Int, code: String?) {
        counts.withLock {
            $0.statuses[status, default: 0] += 1
            if let code { $0.refusalCodes[code, default: 0] += 1 }
        }
    }

    func refused(status: Int, retryAfter: Int?) {
        counts.withLock {
            $0.backPressure += 1
            if let retryAfter {
                $0.backPressureWithRetryAfter += 1
                $0.retryAfter[retryAfter, default: 0] += 1
            }
        }
    }

    func transportError(_ error: any Error) {
        counts.withLock {
            $0.transportErrors += 1
            if $0.firstTransportErrors.count < 5 { $0.firstTransportErrors.append(String(describing: error)) }
        }
    }

    /// A retry sent `slack` seconds after the `Retry-After` it was given ran out.
    func retried(slack: Double) {
        counts.withLock {
            $0.retries += 1
            if slack < 0 { $0.early += 1 }
            $0.minimumSlack = min($0.minimumSlack ?? slack, slack)
        }
    }

    func snapshot() -> Snapshot {
        counts.withLock { counts in
            Snapshot(
                attempts: counts.attempts,
                statuses: Dictionary(uniqueKeysWithValues: counts.statuses.map { (String($0.key), $0.value) }),
                refusalCodes: counts.refusalCodes, backPressure: counts.backPressure,
                backPressureWithRetryAfter: counts.backPressureWithRetryAfter,
                retryAfterSeconds: Dictionary(uniqueKeysWithValues: counts.retryAfter.map { (String($0.key), $0.value) }),
                transportErrors: counts.transportErrors, firstTransportErrors: counts.firstTransportErrors,
                retriesAfterRetryAfter: counts.retries, retriesEarly: counts.early,
                minimumRetrySlackSeconds: counts.minimumSlack)
        }
    }
}
