import Crypto
import DevIDCore
import Foundation

/// Claim tokens: `devid_ct_<32 base32 characters>` (160 random bits); only SHA-256 of the token is stored.
public enum ClaimTokens {
    public struct Generated: Sendable {
        /// Public handle, safe to log and to pass to `devid token revoke`.
        public let id: String
        /// The secret, shown once.
        public let secret: String
        public let hash: String
    }

    public static func generate() -> Generated {
        let secret = "devid_ct_" + AdminTokens.randomBase32(32)
        return Generated(id: "ct_" + AdminTokens.randomBase32(10), secret: secret, hash: hash(secret))
    }

    /// The hardware serial of a device a claim token registered: `claim:<device id>`. Never an IDevID's: a
    /// certificate whose serialNumber starts with it is not taken as an IDevID (``PeerIdentity``).
    public static let hardwareSerialPrefix = "claim:"

    public static func hash(_ secret: String) -> String {
        Hex.encode(SHA256.hash(data: Array(secret.utf8)))
    }

    /// Why a stored token cannot be used at `now`, or nil if it can.
    static func refusal(_ token: ClaimToken, now: Date) -> LifecycleRefusal? {
        if token.revoked { return LifecycleRefusal(.tokenRevoked, "claim token revoked") }
        if token.expiresAt <= now { return LifecycleRefusal(.tokenExpired, "claim token expired") }
        if token.usesRemaining <= 0 { return LifecycleRefusal(.tokenUsedUp, "claim token used up") }
        return nil
    }
}
