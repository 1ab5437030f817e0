/// Why an OCSP request was refused. Every case is answered with a `malformedRequest` response (RFC 6960 §2.3);
/// the code is for logs and metrics. Descriptions never include the request's bytes.
public struct OCSPRequestError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Backing: Hashable, Sendable {
            case empty
            case tooLarge
            case malformed
            case noCertificateIDs
            case tooManyCertificateIDs
            case unsupportedVersion
            case unsupportedCriticalExtension
        }
        private let backing: Backing
        private init(_ backing: Backing) { self.backing = backing }

        /// No bytes at all.
        public static let empty = Code(.empty)
        /// More bytes than the parser accepts.
        public static let tooLarge = Code(.tooLarge)
        /// Not DER, or not an OCSPRequest.
        public static let malformed = Code(.malformed)
        /// An empty requestList.
        public static let noCertificateIDs = Code(.noCertificateIDs)
        /// More CertIDs in one request than the parser accepts.
        public static let tooManyCertificateIDs = Code(.tooManyCertificateIDs)
        /// A TBSRequest version other than v1.
        public static let unsupportedVersion = Code(.unsupportedVersion)
        /// A critical request extension DevID does not implement.
        public static let unsupportedCriticalExtension = Code(.unsupportedCriticalExtension)

        public var description: String { String(describing: backing) }
    }

    public let code: Code
    /// One line, safe to log.
    public let reason: String
    public let file: String
    public let line: UInt

    public init(_ code: Code, _ reason: String, file: String = #fileID, line: UInt = #line) {
        self.code = code
        self.reason = reason
        self.file = file
        self.line = line
    }

    public var description: String { "\(code): \(reason)" }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
