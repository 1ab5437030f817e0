import DevIDCore
import Foundation

/// Why a claim token cannot be used; shared by the backends so they refuse with the same reasons.
enum ClaimTokenRules {
    static func isUsable(_ token: ClaimToken, now: Date) -> Bool {
        token.usesRemaining > 0 && !token.revoked
            && StoreTime.milliseconds(token.expiresAt) > StoreTime.milliseconds(now)
    }

    static func unusable(_ token: ClaimToken, now: Date, _ operation: String = "consume claim token") -> StoreError {
        if token.revoked { return StoreError(.conflict, "\(operation): token is revoked") }
        if StoreTime.milliseconds(token.expiresAt) <= StoreTime.milliseconds(now) {
            return StoreError(.conflict, "\(operation): token has expired")
        }
        return StoreError(.conflict, "\(operation): token is used up")
    }

    /// A token only ever vouches for devices of its own tenant, and, when bound, for its one device.
    static func mismatch(_ token: ClaimToken, device: Device, _ operation: String) -> StoreError? {
        if token.tenant != device.tenant {
            return StoreError(.conflict, "\(operation): claim token belongs to another tenant than the device")
        }
        if let bound = token.device, bound != device.id {
            return StoreError(.conflict, "\(operation): claim token is bound to another device")
        }
        return nil
    }
}
