import Foundation

/// What the HTTP `Authorization` header of an EST request carries.
///
/// RFC 7030 §3.2.3 allows HTTP Basic; DevID also takes `Bearer <claim token>`. An empty Basic credential
/// (some clients send `Basic Og==` after a challenge) counts as no credential, so it never spoils a request
/// that a client certificate already authenticates.
enum ESTHTTPCredential: Equatable {
    case none
    case bearer(token: String)
    case basic(user: String, password: String)
    /// Present but unreadable.
    case malformed

    init(header: String?) {
        guard let header, !header.trimmingCharacters(in: .whitespaces).isEmpty else {
            self = .none
            return
        }
        let parts = header.split(separator: " ", maxSplits: 1, omittingEmptySubsequences: true)
        let scheme = parts.first.map { $0.lowercased() } ?? ""
        let value = parts.count > 1 ? parts[1].trimmingCharacters(in: .whitespaces) : ""
        switch scheme {
        case "bearer":
            self = value.isEmpty ? .none : .bearer(token: value)
        case "basic":
            if value.isEmpty {
                self = .none
                return
            }
            guard let data = Data(base64Encoded: value), let decoded = String(data: data, encoding: .utf8),
                let colon = decoded.firstIndex(of: ":")
            else {
                self = .malformed
                return
            }
            let user = String(decoded[..<colon])
            let password = String(decoded[decoded.index(after: colon)...])
            self = user.isEmpty && password.isEmpty ? .none : .basic(user: user, password: password)
        default:
            self = .malformed
        }
    }
}
