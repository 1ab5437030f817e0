public import DevIDCore
import Foundation

/// Token buckets keyed by what a request names (its source address, device, claim token, tenant), on the injected
/// wall clock, so tests move time instead of sleeping. See ``RateLimits``.
public actor RateLimiter {
    /// What a bucket counts.
    public enum Scope: String, Sendable, Hashable {
        case source, device, claimToken = "claim_token", tenant, global
    }

    public struct Key: Sendable, Hashable {
        public var scope: Scope
        /// Which listener or API the bucket belongs to (`est`, `checkin`, `admin`).
        public var area: String
        public var value: String

        public init(_ scope: Scope, area: String, _ value: String) {
            self.scope = scope
            self.area = area
            self.value = value
        }
    }

    struct Bucket {
        var tokens: Double
        var updated: Date
    }

    private let clock: any WallClock
    private let maximumBuckets: Int
    private var buckets: [Key: Bucket] = [:]
    /// Refusals by scope since start (metrics and tests).
    public private(set) var refusals: [Scope: Int] = [:]

    public init(clock: any WallClock, maximumBuckets: Int = 100_000) {
        self.clock = clock
        self.maximumBuckets = max(16, maximumBuckets)
    }

    /// Takes one token from every enabled bucket in `requests`, or none: returns nil when the request may go on,
    /// else the seconds until the emptiest bucket has a token again (at least 1) and the scope that refused.
    public func admit(_ requests: [(Key, RateLimits.Rate)]) -> (retryAfter: Int, scope: Scope)? {
        let now = clock.now()
        var refused: (retryAfter: Int, scope: Scope)?
        var refilled: [(Key, Bucket)] = []
        for (key, rate) in requests where rate.isEnabled {
            var bucket = buckets[key] ?? Bucket(tokens: rate.burst, updated: now)
            // A clock set back rebases the bucket (no refill, but no lock-out until the clock catches up either).
            let elapsed = now.timeIntervalSince(bucket.updated)
            if elapsed > 0 { bucket.tokens = min(rate.burst, bucket.tokens + elapsed * rate.perSecond) }
            bucket.updated = now
            if bucket.tokens < 1 {
                let wait = max(1, Int(((1 - bucket.tokens) / rate.perSecond).rounded(.up)))
                if wait > refused?.retryAfter ?? 0 { refused = (wait, key.scope) }
            }
            refilled.append((key, bucket))
        }
        if let refused {
            refusals[refused.scope, default: 0] += 1
            for (key, bucket) in refilled where buckets[key] != nil { buckets[key] = bucket }
            return refused
        }
        if buckets.count + refilled.count > maximumBuckets { prune(now: now) }
        for (key, var bucket) in refilled {
            bucket.tokens -= 1
            buckets[key] = bucket
        }
        return nil
    }

    /// Drops buckets that are (nearly) full again: forgetting them changes nothing. If that is not enough, the least
    /// recently used half goes (never a global bucket): churning made-up keys evicts idle buckets, which are full
    /// anyway, and never resets everybody's limits at once.
    private func prune(now: Date) {
        let idle = buckets.filter { now.timeIntervalSince($0.value.updated) > 3_600 }
        for key in idle.keys { buckets[key] = nil }
        guard buckets.count >= maximumBuckets else { return }
        let evictable = buckets.filter { $0.key.scope != .global }.sorted { $0.value.updated < $1.value.updated }
        for (key, _) in evictable.prefix(max(1, buckets.count / 2)) { buckets[key] = nil }
    }

    /// Buckets held (tests).
    public var count: Int { buckets.count }
}

/// At most `capacity` enrollments verified and signed at once; the last `reserve` slots only for priority requests
/// (renewals of credentials about to expire, ``RenewalPriority``).
public actor EnrollmentGate {
    public let capacity: Int
    public let reserve: Int
    public private(set) var inFlight = 0
    /// Enrollments turned away with `503` since start.
    public private(set) var refusals = 0

    public init(capacity: Int, reserve: Int) {
        self.capacity = max(0, capacity)
        self.reserve = min(max(0, reserve), max(0, capacity))
    }

    /// Takes a slot, or returns false when the server is saturated for this kind of request. Only a `priority`
    /// request may take the reserved slots.
    public func enter(priority: Bool) -> Bool {
        guard capacity > 0 else { return true }
        let limit = priority ? capacity : capacity - reserve
        guard inFlight < limit else {
            refusals += 1
            return false
        }
        inFlight += 1
        return true
    }

    public func leave() {
        if capacity > 0, inFlight > 0 { inFlight -= 1 }
    }
}
