public import Foundation

/// Where an issuing CA is in its life (SPIRE's `prepare → activate → taint → revoke`).
public enum IssuingCAState: String, Sendable, Codable, CaseIterable, Hashable {
    /// Published (in `/cacerts`, trusted for mTLS), signs nothing yet.
    case prepared
    /// Signs every new LDevID. Exactly one CA is active.
    case active
    /// No longer signs; its LDevIDs stay valid and renew onto the active CA in their own time.
    case retiring
    /// Its LDevIDs must rotate now: each is rotation-due, and check-ins answer "rotate now".
    case tainted
    /// Its LDevIDs are revoked and no longer trusted; the root's CRL lists it once re-signed.
    case revoked
}

/// One issuing CA as the registry records it. Its certificate and key live with the CA hierarchy; the registry
/// holds what every server must agree on: which CA signs, and which must be left.
public struct IssuingCA: Sendable, Codable, Hashable {
    /// 1 for the CA `devid ca init` made, then 2, 3, ... in order of preparation.
    public var id: Int
    /// The CA certificate's subject as credentials record their issuer.
    public var subject: String
    /// SHA-256 of the CA certificate, lowercase hex.
    public var sha256: String
    /// The CA certificate's serial number, lowercase hex (what the root's CRL lists once it is revoked).
    public var serial: String
    public var notBefore: Date
    public var notAfter: Date
    public var state: IssuingCAState
    public var createdAt: Date
    /// When the CA entered its current state.
    public var stateChangedAt: Date
    /// Set once revoked: the reason given (RFC 5280 name, e.g. `keyCompromise`).
    public var revocationReason: String?

    public init(
        id: Int, subject: String, sha256: String, serial: String, notBefore: Date, notAfter: Date,
        state: IssuingCAState, createdAt: Date, stateChangedAt: Date, revocationReason: String? = nil
    ) {
        self.id = id
        self.subject = subject
        self.sha256 = sha256
        self.serial = serial
        self.notBefore = notBefore
        self.notAfter = notAfter
        self.state = state
        self.createdAt = createdAt
        self.stateChangedAt = stateChangedAt
        self.revocationReason = revocationReason
    }

    /// Whether devices may still authenticate with this CA's LDevIDs (every state but `revoked`).
    public var isTrusted: Bool { state != .revoked }
}

/// The rules of moving issuing CAs between states: pure, no I/O. Each event returns the state changes to apply
/// (the store applies them atomically, only if no CA changed meanwhile) or a one-line refusal, and changes nothing.
public enum IssuingCATransitions {
    /// One CA's move from one state to another.
    public struct Change: Sendable, Hashable, Codable {
        public var id: Int
        public var from: IssuingCAState
        public var to: IssuingCAState

        public init(id: Int, from: IssuingCAState, to: IssuingCAState) {
            self.id = id
            self.from = from
            self.to = to
        }
    }

    public enum Decision: Sendable, Hashable {
        case apply([Change])
        case refuse(reason: String)
    }

    /// Makes `id` the signing CA; the CA active until now becomes `retiring`. Refused for a tainted or revoked CA
    /// (a CA that must be left never signs again) and for the CA that is active already.
    public static func activate(_ id: Int, in cas: [IssuingCA]) -> Decision {
        guard let target = cas.first(where: { $0.id == id }) else { return .refuse(reason: "no issuing CA \(id)") }
        switch target.state {
        case .active:
            return .refuse(reason: "issuing CA \(id) is already active")
        case .tainted, .revoked:
            return .refuse(reason: "issuing CA \(id) is \(target.state.rawValue): it never signs again; prepare a new one")
        case .prepared, .retiring:
            var changes = [Change(id: id, from: target.state, to: .active)]
            for other in cas where other.state == .active {
                changes.append(Change(id: other.id, from: .active, to: .retiring))
            }
            return .apply(changes)
        }
    }

    /// Marks `id` tainted: its LDevIDs must move to the active CA now. Refused for the active CA (activate another
    /// one first, or nothing could sign the replacements), and for a CA that is tainted or revoked already.
    public static func taint(_ id: Int, in cas: [IssuingCA]) -> Decision {
        guard let target = cas.first(where: { $0.id == id }) else { return .refuse(reason: "no issuing CA \(id)") }
        switch target.state {
        case .active:
            return .refuse(
                reason: "issuing CA \(id) is the active CA: activate another one first (devid ca issuing activate)")
        case .tainted, .revoked:
            return .refuse(reason: "issuing CA \(id) is already \(target.state.rawValue)")
        case .prepared, .retiring:
            return .apply([Change(id: id, from: target.state, to: .tainted)])
        }
    }

    /// Revokes `id`. Refused for the active CA, for a revoked one, and while `onlineHolders` (devices seen recently
    /// that still hold a current LDevID of it) is above zero, unless `force`: revoking then would cut them off
    /// until they bootstrap again with their IDevIDs.
    public static func revoke(_ id: Int, in cas: [IssuingCA], onlineHolders: Int, force: Bool) -> Decision {
        guard let target = cas.first(where: { $0.id == id }) else { return .refuse(reason: "no issuing CA \(id)") }
        switch target.state {
        case .active:
            return .refuse(
                reason: "issuing CA \(id) is the active CA: activate another one and taint this one first")
        case .revoked:
            return .refuse(reason: "issuing CA \(id) is already revoked")
        case .prepared, .retiring, .tainted:
            if onlineHolders > 0, !force {
                return .refuse(
                    reason: "\(onlineHolders) online device(s) still hold LDevIDs of issuing CA \(id): taint it and "
                        + "wait for them to rotate (devid rotate status), or revoke with --force")
            }
            return .apply([Change(id: id, from: target.state, to: .revoked)])
        }
    }
}
