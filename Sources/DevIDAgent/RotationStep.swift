public import Foundation

/// The steps the agent takes, in the order a rotation takes them. Each is persisted before the next begins, so a
/// process killed between any two of them restarts into a working identity and finishes the rotation.
///
/// They double as crash points for tests (``RotationAgent/Options/crashAfter``): the agent stops right after the
/// step, writing nothing more, as `kill -9` would.
public enum RotationStep: String, Sendable, Hashable, CaseIterable, Codable {
    /// `GET /v1/device/status` with the current LDevID (learns the server's time, policy, and `rotateNow`).
    case checkIn = "check-in"
    /// (a) A new key is generated and staged in `next/key.pem`.
    case stageKey = "stage-key"
    /// (b) `simplereenroll` with the current LDevID answered with a certificate; nothing persisted yet.
    case reenroll
    /// (b) The certificate is checked and staged in `next/` (its `cert.pem` last).
    case stageCertificate = "stage-certificate"
    /// (c) The current identity is copied to `previous/`.
    case keepPrevious = "keep-previous"
    /// (c) `next/` is installed as the current identity (crash-safe install) and `next/` removed.
    case promote
    /// (d) The reload hook ran (success or not).
    case reload
    /// (e) The check-in with the new certificate succeeded: the server has confirmed it.
    case confirm
    /// (f) `previous/` is deleted.
    case forget
    /// A new identity was obtained with the IDevID (the old one was beyond repair or missing).
    case bootstrap
}

/// How the current identity was replaced during a step.
public enum IdentityChange: String, Sendable, Hashable, Codable {
    /// `simplereenroll` with a valid current LDevID (scheduled, or asked for by the server).
    case renewal
    /// `simplereenroll` with an LDevID that expired less than the grace period ago.
    case lateRenewal = "late-renewal"
    /// `simpleenroll` with the IDevID.
    case bootstrap
}

/// What ``RotationAgent/step()`` did and when it wants to run again.
public struct Wake: Sendable, Hashable, CustomStringConvertible {
    public enum Reason: String, Sendable, Hashable {
        /// Nothing is due before `at`: the planned renewal, or the next periodic check-in.
        case scheduled
        /// The step failed; retry after a backoff delay (``error`` says why).
        case retry
        /// A simulated crash (``RotationAgent/Options/crashAfter``): the agent must be discarded.
        case crashed
        /// The step was cancelled; nothing more happens.
        case stopped
    }

    public var reason: Reason
    /// Seconds to sleep before the next step.
    public var delay: TimeInterval
    /// When that is, in the agent's estimate of the server's time.
    public var at: Date
    /// The steps completed, in order.
    public var completed: [RotationStep]
    /// Set when the current identity was replaced.
    public var change: IdentityChange?
    /// The reload hook's outcome, if it ran.
    public var hook: ReloadHook.Outcome?
    /// The failure, for ``Reason/retry``.
    public var error: AgentError?
    /// The answer of the last successful check-in in this step.
    public var status: DeviceStatus?

    public init(
        reason: Reason, delay: TimeInterval, at: Date, completed: [RotationStep] = [], change: IdentityChange? = nil,
        hook: ReloadHook.Outcome? = nil, error: AgentError? = nil, status: DeviceStatus? = nil
    ) {
        self.reason = reason
        self.delay = delay
        self.at = at
        self.completed = completed
        self.change = change
        self.hook = hook
        self.error = error
        self.status = status
    }

    public var description: String {
        var text = "\(reason.rawValue) in \(Int(delay.rounded(.up))) s"
        if !completed.isEmpty { text += " after " + completed.map(\.rawValue).joined(separator: ",") }
        if let error { text += ": \(error)" }
        return text
    }
}
