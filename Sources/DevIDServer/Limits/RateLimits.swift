/// Back-pressure: token buckets per client and a cap on enrollments in flight (docs/operations.md, "Back-pressure").
///
/// A request over a per-client bucket is `429 Too Many Requests` with `Retry-After` and `DevID-Refusal:
/// rate_limited`; an enrollment while `maxEnrollmentsInFlight` are being worked on is `503 Service Unavailable` with
/// `Retry-After` and `DevID-Refusal: overloaded`. Both are decided before the body is read and before any CSR check
/// or signature. Renewals (`simplereenroll`) of LDevIDs in their renewal window (``RenewalPriority``) may use the
/// `renewalReserve` slots that first enrollments and early renewals may not, and OCSP, CRLs and the decision API are
/// never limited here.
///
/// The defaults are sized for a 2-core server and far above what one honest device or operator sends; a rate of 0
/// turns a bucket off.
public struct RateLimits: Sendable, Hashable {
    /// A token bucket: `perSecond` tokens refill each second, up to `burst`; a request takes one.
    public struct Rate: Sendable, Hashable {
        public var perSecond: Double
        public var burst: Double

        public init(perSecond: Double, burst: Double) {
            self.perSecond = perSecond
            self.burst = burst
        }

        /// No limit.
        public static let unlimited = Rate(perSecond: 0, burst: 0)
        public var isEnabled: Bool { perSecond > 0 && burst >= 1 }
    }

    /// Each IP address, on EST, the check-in and the admin API (each counted separately).
    public var perSource = Rate(perSecond: 50, burst: 500)
    /// Each device (by LDevID or IDevID), on EST and the check-in.
    public var perDevice = Rate(perSecond: 2, burst: 30)
    /// Each presented claim token, on EST.
    public var perClaimToken = Rate(perSecond: 2, burst: 30)
    /// Each tenant (by EST label or LDevID), on EST and the check-in.
    public var perTenant = Rate(perSecond: 100, burst: 2_000)
    /// All of EST together, and all check-ins together.
    public var global = Rate(perSecond: 300, burst: 5_000)
    /// Enrollments (both kinds) being verified and signed at once; more is `503`. 0 = no cap.
    public var maxEnrollmentsInFlight = 64
    /// Of those, slots only renewals of credentials about to expire may take, so first enrollments (and early
    /// renewals) cannot starve devices that must renew.
    public var renewalReserve = 16
    /// `Retry-After` on a `503`, in seconds.
    public var overloadRetryAfterSeconds = 5
    /// Most buckets kept in memory; when full, buckets that have refilled are dropped first.
    public var maximumBuckets = 100_000

    public init() {}

    /// Every bucket and the in-flight cap off (benchmarks).
    public static let unlimited: RateLimits = {
        var limits = RateLimits()
        limits.perSource = .unlimited
        limits.perDevice = .unlimited
        limits.perClaimToken = .unlimited
        limits.perTenant = .unlimited
        limits.global = .unlimited
        limits.maxEnrollmentsInFlight = 0
        limits.renewalReserve = 0
        return limits
    }()
}
