public import DevIDCore
import Synchronization

/// Counts every policy decision by action, result and reason: the raw material of identity-health reporting.
///
/// Exposed as JSON at `GET /v1/authz/stats`. To export through swift-metrics later, give it a
/// ``DecisionObserver`` that increments `devid_authz_decisions_total{action,result,reason}`; the counters here
/// stay the source of the JSON view.
public final class DecisionCounters: Sendable {
    public struct Key: Sendable, Hashable, Comparable {
        public var action: String
        public var allowed: Bool
        public var reason: AuthzReason

        public static func < (lhs: Key, rhs: Key) -> Bool {
            (lhs.action, lhs.allowed ? 0 : 1, lhs.reason.rawValue) < (
                rhs.action, rhs.allowed ? 0 : 1, rhs.reason.rawValue
            )
        }
    }

    private let counts = Mutex([Key: Int]())
    private let observer: (any DecisionObserver)?

    public init(observer: (any DecisionObserver)? = nil) {
        self.observer = observer
    }

    public func record(_ decision: AuthzDecision, action: String) {
        let key = Key(action: action, allowed: decision.allowed, reason: decision.reason)
        counts.withLock { $0[key, default: 0] += 1 }
        observer?.decided(action: action, allowed: decision.allowed, reason: decision.reason)
    }

    /// Every non-zero counter, in a stable order.
    public func snapshot() -> [(key: Key, count: Int)] {
        counts.withLock { $0 }.sorted { $0.key < $1.key }.map { (key: $0.key, count: $0.value) }
    }

    public func count(action: String? = nil, allowed: Bool? = nil, reason: AuthzReason? = nil) -> Int {
        counts.withLock { counts in
            counts.filter { key, _ in
                (action == nil || key.action == action) && (allowed == nil || key.allowed == allowed)
                    && (reason == nil || key.reason == reason)
            }.values.reduce(0, +)
        }
    }
}

/// Receives every decision as it is counted (a metrics exporter plugs in here).
public protocol DecisionObserver: Sendable {
    func decided(action: String, allowed: Bool, reason: AuthzReason)
}
