/// Where a device is in its life.
public enum DeviceState: String, Sendable, Codable, CaseIterable, Hashable {
    /// Registered from a factory manifest (the allowlist); has not enrolled yet.
    case manufactured
    /// Asked to enroll under a tenant with manual approval; waits for `devid device approve`.
    case pendingApproval = "pending_approval"
    /// Holds an operational identity.
    case active
    /// A reversible hold: denied at enrollment and at the policy layer, no CRL entry.
    case suspended
    /// Compromised or removed: every credential revoked; enrollment refused until re-provisioned.
    case revoked
    /// Retired for good.
    case decommissioned
}

/// Events that move a device between states. One mutating method per event on ``DeviceLifecycle``.
public enum DeviceEvent: String, Sendable, Hashable, CaseIterable {
    case enroll, reenroll, suspend, resume, revoke, reprovision, decommission, approve, park
}

/// The device state machine: each event either moves the device or is refused with a reason.
///
/// Pure value logic, no I/O; the store applies the resulting transition atomically with its audit event.
public struct DeviceLifecycle: Sendable, Hashable {
    public enum Action: Sendable, Hashable {
        /// Apply the event; the device ends in `to` (which may equal the current state).
        case transition(to: DeviceState)
        /// Refuse the event; `reason` is one line, safe to show the caller.
        case refuse(reason: String)
    }

    public private(set) var state: DeviceState

    public init(state: DeviceState) { self.state = state }

    /// Applies `event` and returns what to do. The state only changes on `.transition`.
    public mutating func apply(_ event: DeviceEvent) -> Action {
        let action = Self.decide(event, in: state)
        if case .transition(let next) = action { state = next }
        return action
    }

    public mutating func enroll() -> Action { apply(.enroll) }
    public mutating func reenroll() -> Action { apply(.reenroll) }
    public mutating func suspend() -> Action { apply(.suspend) }
    /// Lifts a suspension. A device that holds no usable credential (`active` or `superseded`: suspended before it
    /// ever enrolled, or its credentials have all gone) has nothing to be `active` with: it goes back to
    /// `manufactured` and enrolls as any new device does.
    public mutating func resume(holdsCredential: Bool = true) -> Action {
        let action = apply(.resume)
        guard !holdsCredential, case .transition(.active) = action else { return action }
        state = .manufactured
        return .transition(to: .manufactured)
    }
    public mutating func revoke() -> Action { apply(.revoke) }
    public mutating func reprovision() -> Action { apply(.reprovision) }
    public mutating func decommission() -> Action { apply(.decommission) }

    static func decide(_ event: DeviceEvent, in state: DeviceState) -> Action {
        switch (event, state) {
        case (.enroll, .manufactured), (.enroll, .active):
            return .transition(to: .active)
        case (.enroll, .pendingApproval):
            return .refuse(reason: "device is waiting for operator approval")
        case (.reenroll, .active):
            return .transition(to: .active)
        case (.park, .manufactured), (.park, .pendingApproval):
            return .transition(to: .pendingApproval)
        case (.approve, .pendingApproval), (.approve, .manufactured):
            return .transition(to: .manufactured)
        case (.suspend, .active), (.suspend, .manufactured), (.suspend, .suspended):
            return .transition(to: .suspended)
        case (.suspend, .pendingApproval):
            // A parked device cannot enroll anyway; a hold would only forget that it was never approved (a resume
            // returns a device without credentials to `manufactured`). Decline or revoke it instead.
            return .refuse(reason: "device is waiting for operator approval")
        case (.resume, .suspended):
            return .transition(to: .active)
        case (.revoke, .decommissioned):
            return .refuse(reason: "device is decommissioned")
        case (.revoke, _):
            return .transition(to: .revoked)
        case (.reprovision, .revoked), (.reprovision, .suspended), (.reprovision, .active),
            (.reprovision, .manufactured):
            return .transition(to: .manufactured)
        case (.decommission, _):
            return .transition(to: .decommissioned)
        case (_, .suspended):
            return .refuse(reason: "device is suspended")
        case (_, .revoked):
            return .refuse(reason: "device is revoked")
        case (_, .decommissioned):
            return .refuse(reason: "device is decommissioned")
        default:
            return .refuse(reason: "device in state \(state.rawValue) cannot \(event.rawValue)")
        }
    }
}
