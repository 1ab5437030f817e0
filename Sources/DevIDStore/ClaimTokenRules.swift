import DevIDCore
import Foundation

/// Why a claim token cannot be used; shared by the backends so they refuse with the same reasons.
enum ClaimTokenRules {
    static func isUsable(_ token: ClaimToken, now: Date) -> Bool {
        token.usesRemaining > 0 && !token.revoked
            && StoreTime.milliseconds(token.expiresAt) > StoreTime.milliseconds(now)
    }

    static func unusable(_ token: ClaimToken, now: Date) -> StoreError {
        if token.revoked { return StoreError(.conflict, "consume claim token: token is revoked") }
        if StoreTime.milliseconds(token.expiresAt) <= StoreTime.milliseconds(now) {
            return StoreError(.conflict, "consume claim token: token has expired")
        }
        return StoreError(.conflict, "consume claim token: token is used up")
    }
}
