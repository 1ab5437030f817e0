public import DevIDCore

/// Errors of the device agent: a code, one secret-free line, and what the EST server said when it answered.
///
/// Descriptions never include keys, tokens, passwords or CSR bytes. The server's `text/plain` reason is kept
/// (cut to one printable line) because it is what an operator needs to fix a refusal. Equality compares the code only.
public struct AgentError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Backing: Hashable, Sendable {
            case refused(status: Int)
            case pending
            case tlsFailure
            case connectionFailed
            case badResponse
            case untrustedCertificate
            case invalidArgument
            case invalidState
            case io
            case needsEnrollment
        }
        private let backing: Backing
        private init(_ backing: Backing) { self.backing = backing }

        /// The server answered with an error status (4xx, 5xx); ``AgentError/serverReason`` says why.
        public static func refused(status: Int) -> Code { Code(.refused(status: status)) }
        /// The server accepted the request for later (HTTP 202, e.g. waiting for operator approval);
        /// retry after ``AgentError/retryAfter`` seconds.
        public static let pending = Code(.pending)
        /// The TLS handshake failed: the server's certificate does not chain to the trust bundle (or names another
        /// host), or the server refused the client certificate.
        public static let tlsFailure = Code(.tlsFailure)
        /// The server could not be reached, or the connection broke or timed out.
        public static let connectionFailed = Code(.connectionFailed)
        /// The server answered 2xx with something that is not what EST promises (media type, base64, CMS).
        public static let badResponse = Code(.badResponse)
        /// The issued certificate is not for the agent's key, or does not chain to the trust bundle.
        public static let untrustedCertificate = Code(.untrustedCertificate)
        /// A caller's input is unusable (URL, trust bundle, key file, device id).
        public static let invalidArgument = Code(.invalidArgument)
        /// The state directory holds something unreadable or inconsistent.
        public static let invalidState = Code(.invalidState)
        /// A file could not be read or written.
        public static let io = Code(.io)
        /// The identity is beyond repair (expired beyond the grace period, revoked, superseded past its overlap, or
        /// lost) and there is no IDevID to bootstrap with: a new claim token is needed.
        public static let needsEnrollment = Code(.needsEnrollment)

        /// The HTTP status, for ``refused(status:)``.
        public var httpStatus: Int? {
            if case .refused(let status) = backing { return status }
            return nil
        }

        public var description: String {
            switch backing {
            case .refused(let status): "refused(\(status))"
            default: String(describing: backing)
            }
        }
    }

    public let code: Code
    /// One line, safe to show an operator.
    public let reason: String
    /// The HTTP status of the response this error comes from, if there was one.
    public let status: Int?
    /// The server's `text/plain` reason, made one printable line of at most 200 characters.
    public let serverReason: String?
    /// The refusal's stable code (the server's `DevID-Refusal` header), which the agent decides on; nil when the
    /// server sent none or one this agent does not know.
    public let serverCode: RefusalCode?
    /// Seconds the server asked the agent to wait (`Retry-After` on 202 and 503).
    public let retryAfter: Int?
    /// For ``Code/tlsFailure``: the server ended the handshake with an alert about the client's certificate
    /// (`bad_certificate`, `certificate_unknown`, `certificate_revoked`, `unknown_ca`, `access_denied`, ...): it
    /// refused the certificate, as opposed to a connection that broke or a handshake that failed otherwise.
    public let certificateAlert: Bool
    public let file: String
    public let line: UInt

    public init(
        _ code: Code, _ reason: String, status: Int? = nil, serverReason: String? = nil,
        serverCode: RefusalCode? = nil, retryAfter: Int? = nil, certificateAlert: Bool = false,
        file: String = #fileID, line: UInt = #line
    ) {
        self.code = code
        self.reason = reason
        self.status = status
        self.serverReason = serverReason.map(Self.oneLine)
        self.serverCode = serverCode
        self.retryAfter = retryAfter
        self.certificateAlert = certificateAlert
        self.file = file
        self.line = line
    }

    public var description: String {
        var text = reason
        if let serverReason, !serverReason.isEmpty { text += ": \(serverReason)" }
        if let retryAfter { text += " (retry after \(retryAfter) s)" }
        return text
    }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }

    /// Printable ASCII on one line, at most 200 characters: a server's reason may not smuggle in control characters.
    static func oneLine(_ text: String) -> String {
        let trimmed = text.trimmingWhitespaceAndNewlines
        let printable = trimmed.unicodeScalars.map { scalar -> Character in
            (0x20...0x7E).contains(scalar.value) ? Character(scalar) : " "
        }
        return String(printable.prefix(200))
    }
}

extension String {
    fileprivate var trimmingWhitespaceAndNewlines: Substring {
        let isSpace: (Character) -> Bool = { $0.isWhitespace || $0.isNewline }
        guard let first = firstIndex(where: { !isSpace($0) }), let last = lastIndex(where: { !isSpace($0) }) else {
            return ""
        }
        return self[first...last]
    }
}
