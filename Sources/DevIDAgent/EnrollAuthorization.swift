import Foundation

/// How a `/simpleenroll` request proves who the device is.
///
/// The description never shows a token or password.
public enum EnrollAuthorization: Sendable, Hashable, CustomStringConvertible {
    /// The TLS client certificate the ``ESTClient`` was created with (an IDevID); no `Authorization` header.
    case clientCertificate
    /// `Authorization: Bearer <claim token>`.
    case bearer(String)
    /// `Authorization: Basic base64(user:password)` (RFC 7030 §3.2.3); DevID reads the user as the device id and
    /// the password as the claim token.
    case basic(user: String, password: String)

    /// The `Authorization` header value, if this method sends one.
    var headerValue: String? {
        switch self {
        case .clientCertificate:
            return nil
        case .bearer(let token):
            return "Bearer \(token)"
        case .basic(let user, let password):
            return "Basic " + Data("\(user):\(password)".utf8).base64EncodedString()
        }
    }

    public var description: String {
        switch self {
        case .clientCertificate: "client certificate"
        case .bearer: "bearer token"
        case .basic(let user, _): "basic (user \(user))"
        }
    }
}
