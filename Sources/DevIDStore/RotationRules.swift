import DevIDCore
import Foundation

/// The parts of staged rotation and bulk revocation the backends share, so that they decide and word their
/// refusals alike. The SQL backends express the same filters in SQL; ``MemoryStore`` calls these directly.
enum RotationRules {
    /// The deadline a credential keeps when it is superseded again: the earlier one, where nil means none.
    static func earlierDeadline(_ current: Date?, _ new: Date?) -> Date? {
        guard let current else { return new }
        guard let new else { return current }
        return min(current, new)
    }

    /// A time `interval` seconds before `now`, in the stores' milliseconds.
    static func milliseconds(_ now: Date, minus interval: TimeInterval) -> Int64 {
        StoreTime.milliseconds(now.addingTimeInterval(-interval))
    }

    /// Device states that revoking a device scope leaves as they are.
    static let finalDeviceStates: Set<DeviceState> = [.revoked, .decommissioned]

    /// Whether revoking `scope` at `now` revokes `credential` (which is in the scope).
    static func isRevocable(_ credential: Credential, in scope: CredentialScope, now: Date) -> Bool {
        guard StoreTime.milliseconds(credential.notAfter) > StoreTime.milliseconds(now) else { return false }
        if case .expiringBefore = scope { return credential.status == .active }
        return credential.status != .revoked
    }

    /// Whether a campaign at `now` flags `credential` (which is in the scope) `rotationDue`.
    static func isFlaggable(_ credential: Credential, now: Date) -> Bool {
        credential.kind == .ldevid && credential.status == .active && !credential.rotationDue
            && StoreTime.milliseconds(credential.notAfter) > StoreTime.milliseconds(now)
    }

    /// The status ``Store/credentialCounts(now:)`` counts `credential` under.
    static func effectiveStatus(_ credential: Credential, now: Date) -> CredentialStatus {
        if credential.status == .revoked { return .revoked }
        if StoreTime.milliseconds(credential.notAfter) <= StoreTime.milliseconds(now) { return .expired }
        return credential.status
    }

    static func missing(_ scope: CredentialScope, _ operation: String) -> StoreError {
        switch scope {
        case .device: StoreError(.notFound, "\(operation): no such device")
        case .lot: StoreError(.notFound, "\(operation): no such lot")
        case .tenant: StoreError(.notFound, "\(operation): no such tenant")
        case .token: StoreError(.notFound, "\(operation): no such claim token")
        case .serial: StoreError(.notFound, "\(operation): no such credential")
        case .expiringBefore, .issuer: StoreError(.notFound, "\(operation): nothing to look up")
        }
    }
}
