public import DevIDCore
public import Foundation
import X509

/// Which re-enrollments may take the enrollment gate's reserved slots (``EnrollmentGate``): only the renewal of an
/// LDevID that is about to expire, so a fleet renewing early, or devices re-enrolling at will after an outage, queue
/// with first enrollments and cannot crowd out a device whose certificate is running out.
///
/// "About to expire" is derived from the rotation policy: from the earliest moment an agent renews on its own (the
/// renewal start at `renewalFraction` of the lifetime, less the policy's jitter of the renewal window) until the end
/// of the late-renewal grace. Time is the server's injected clock.
public enum RenewalPriority {
    /// The earliest moment a certificate valid from `notBefore` to `notAfter` is renewed without being asked:
    /// `renewalStart − jitterFraction × (notAfter − renewalStart)`.
    public static func priorityStart(notBefore: Date, notAfter: Date, policy: RotationPolicy) -> Date {
        let start = policy.renewalStart(notBefore: notBefore, notAfter: notAfter)
        let window = notAfter.timeIntervalSince(start)
        return start.addingTimeInterval(-window * max(0, policy.jitterFraction))
    }

    /// True when a renewal of this certificate at `now` is urgent: in its renewal window, or expired (the TLS
    /// layer has already refused one expired beyond the grace).
    public static func isUrgent(notBefore: Date, notAfter: Date, now: Date, policy: RotationPolicy) -> Bool {
        now >= priorityStart(notBefore: notBefore, notAfter: notAfter, policy: policy)
    }
}

extension Backpressure {
    /// A `simplereenroll` presenting an LDevID (any IDevID also chains, and it is not a renewal) that is in its
    /// renewal window at the server's time: it may use the reserved slots. Everything else queues with first
    /// enrollments.
    static func isPriorityRenewal(
        _ kind: EnrollmentService.Kind, peerChain: [Certificate]?, identity: PeerIdentity?, state: ServerState
    ) -> Bool {
        guard kind == .reenroll, let leaf = peerChain?.first, case .ldevid = identity else { return false }
        return RenewalPriority.isUrgent(
            notBefore: leaf.notValidBefore, notAfter: leaf.notValidAfter, now: state.clock.now(),
            policy: state.configuration.ldevidPolicy.rotation)
    }
}
