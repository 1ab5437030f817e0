import DevIDCore
import Foundation

/// The dashboard's login sessions, in memory only: a restart logs every browser out.
///
/// A session id is 32 random bytes (base64url in the `devid_session` cookie); only its SHA-256 is kept, with the
/// admin token's id, and the time the session ends. The token's role and tenant limit are not copied: every
/// request looks the token up again (``AdminTokenCache``), so revoking the token, or its expiry, ends its
/// sessions at once. Expired sessions are dropped whenever one is created.
actor DashboardSessions {
    /// How long a login lasts.
    static let lifetime: TimeInterval = 8 * 3_600
    /// At most this many live sessions; the oldest goes first.
    static let maximum = 1_000

    struct Session: Sendable {
        var tokenID: String
        var expiresAt: Date
    }

    private var sessions: [TokenDigest: Session] = [:]

    /// Starts a session for `tokenID`; returns the id to set in the cookie (shown nowhere else).
    func create(tokenID: String, now: Date) -> String {
        sessions = sessions.filter { $0.value.expiresAt > now }
        if sessions.count >= Self.maximum, let oldest = sessions.min(by: { $0.value.expiresAt < $1.value.expiresAt }) {
            sessions[oldest.key] = nil
        }
        var generator = SystemRandomNumberGenerator()
        let bytes = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
        let id = Data(bytes).base64EncodedString()
            .replacingOccurrences(of: "+", with: "-").replacingOccurrences(of: "/", with: "_")
            .replacingOccurrences(of: "=", with: "")
        sessions[TokenDigest(secret: id)] = Session(tokenID: tokenID, expiresAt: now.addingTimeInterval(Self.lifetime))
        return id
    }

    /// The admin token id of a live session; nil (and the session forgotten) when it has ended.
    func tokenID(session id: String, now: Date) -> String? {
        let key = TokenDigest(secret: id)
        guard let session = sessions[key] else { return nil }
        guard session.expiresAt > now else {
            sessions[key] = nil
            return nil
        }
        return session.tokenID
    }

    /// Ends a session (logout).
    func end(session id: String) {
        sessions[TokenDigest(secret: id)] = nil
    }

    /// Ends every session of a token (it was found revoked or expired).
    func end(tokenID: String) {
        sessions = sessions.filter { $0.value.tokenID != tokenID }
    }
}
