public import Foundation

/// How an operational identity rotates (issue "rotation without downtime"). Pure data and arithmetic.
///
/// Defaults: renewal starts at 2/3 of the lifetime, ±10 % jitter of the renewal window, 7 days of overlap in which
/// old and new certificate both work, 1 hour of confidence after the new one is first seen before the old one is
/// revoked, 30 days of grace after expiry in which the newest credential may still renew, and 5 minutes of clock
/// skew tolerated.
public struct RotationPolicy: Sendable, Hashable, Codable {
    /// Fraction of the validity after which renewal starts.
    public var renewalFraction: Double
    /// Jitter as a fraction of the renewal window (`notAfter - renewal start`), applied ±.
    public var jitterFraction: Double
    /// How long a superseded credential keeps working after its successor was issued.
    public var overlap: TimeInterval
    /// How long after the successor is first seen the old credential is revoked.
    public var confidence: TimeInterval
    /// How long after expiry the newest credential may still re-enroll (late renewal).
    public var grace: TimeInterval
    /// Clock skew the agent tolerates before it distrusts its own clock.
    public var maxClockSkew: TimeInterval

    public init(
        renewalFraction: Double = 2.0 / 3.0, jitterFraction: Double = 0.1, overlap: TimeInterval = 7 * 86_400,
        confidence: TimeInterval = 3_600, grace: TimeInterval = 30 * 86_400, maxClockSkew: TimeInterval = 300
    ) {
        self.renewalFraction = renewalFraction
        self.jitterFraction = jitterFraction
        self.overlap = overlap
        self.confidence = confidence
        self.grace = grace
        self.maxClockSkew = maxClockSkew
    }

    /// Refuses settings that cannot work; the reason is one line.
    public func validate() throws(DevIDCoreError) {
        guard renewalFraction > 0, renewalFraction < 1 else {
            throw DevIDCoreError(code: .invalidPolicy, reason: "renewal fraction must be between 0 and 1")
        }
        guard jitterFraction >= 0, jitterFraction < 1 else {
            throw DevIDCoreError(code: .invalidPolicy, reason: "jitter fraction must be 0 or more and below 1")
        }
        guard overlap > 0, confidence >= 0, grace >= 0, maxClockSkew >= 0 else {
            throw DevIDCoreError(code: .invalidPolicy, reason: "overlap must be positive; confidence, grace and skew not negative")
        }
    }

    /// When renewal starts for a certificate valid from `notBefore` to `notAfter`, before jitter.
    public func renewalStart(notBefore: Date, notAfter: Date) -> Date {
        notBefore.addingTimeInterval(notAfter.timeIntervalSince(notBefore) * renewalFraction)
    }

    /// Renewal start with jitter drawn from `[-j, +j]` of the renewal window, never after `notAfter`.
    public func scheduledRenewal(
        notBefore: Date, notAfter: Date, using generator: inout some RandomNumberGenerator
    ) -> Date {
        let start = renewalStart(notBefore: notBefore, notAfter: notAfter)
        let window = notAfter.timeIntervalSince(start)
        let jitter = jitterFraction > 0 ? Double.random(in: -jitterFraction...jitterFraction, using: &generator) : 0
        return min(start.addingTimeInterval(window * jitter), notAfter)
    }
}

/// Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"), capped,
/// honouring a server's `Retry-After` as a floor.
public struct Backoff: Sendable, Hashable, Codable {
    public var base: TimeInterval
    public var cap: TimeInterval

    public init(base: TimeInterval = 30, cap: TimeInterval = 6 * 3_600) {
        self.base = base
        self.cap = cap
    }

    /// The longest `Retry-After` honoured: a server that asks for more (a misconfigured approval wait, an overload
    /// answer of years) would take its devices off line for that long.
    public static let maximumRetryAfter: TimeInterval = 7 * 86_400

    /// The delay before retry number `attempt` (0 for the first retry): uniform in `[0, min(cap, base·2^attempt)]`,
    /// but when the server asked for `retryAfter` (a `429`, `503` or `202`), never less: at least `retryAfter` (up to
    /// ``maximumRetryAfter``, whatever the backoff's cap) plus a jitter of up to a fifth of it, so devices told the
    /// same wait do not all come back in the same second.
    public func delay(attempt: Int, retryAfter: TimeInterval? = nil, using generator: inout some RandomNumberGenerator)
        -> TimeInterval
    {
        let ceiling = min(cap, base * pow(2, Double(min(attempt, 40))))
        let drawn = Double.random(in: 0...ceiling, using: &generator)
        if let retryAfter, retryAfter > 0 {
            let floor = min(retryAfter, Self.maximumRetryAfter)
            return max(drawn, floor + Double.random(in: 0...(floor / 5), using: &generator))
        }
        return drawn
    }
}

/// What a device should do about its identity right now (issue "devices that were away").
public enum IdentityAction: Sendable, Hashable {
    /// Valid and not due: keep using it; check again at `next`.
    case keep(until: Date)
    /// Valid and in the renewal window (or the server asked): re-enroll with the current LDevID.
    case renew
    /// Expired, but within the grace window: re-enroll with it (audited as late renewal).
    case lateRenewal
    /// Beyond grace, revoked, or lost: bootstrap again with the IDevID (or a new claim token).
    case bootstrap(reason: String)

    /// Decides from the certificate's validity, the device's best estimate of the true time, and what the server
    /// last said. `scheduledRenewal` is the jittered renewal time the agent picked for this certificate.
    public static func decide(
        notBefore: Date, notAfter: Date, scheduledRenewal: Date, now: Date, policy: RotationPolicy,
        serverWantsRotation: Bool = false, revoked: Bool = false
    ) -> IdentityAction {
        if revoked { return .bootstrap(reason: "the current LDevID is revoked") }
        if now >= notAfter {
            if CredentialLifecycle(policy: policy).withinGrace(notAfter: notAfter, at: now) { return .lateRenewal }
            return .bootstrap(reason: "the LDevID expired more than the grace period ago")
        }
        if serverWantsRotation || now >= scheduledRenewal { return .renew }
        return .keep(until: scheduledRenewal)
    }
}
