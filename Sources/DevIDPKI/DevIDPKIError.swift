/// Errors of the PKI layer. Descriptions never include key material, passphrases or CSR bytes.
public struct DevIDPKIError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Backing: Hashable, Sendable {
            case malformed
            case wrongPassphrase
            case unsupportedAlgorithm
            case policyViolation
            case invalidSignature
            case untrusted
            case io
            case notFound
            case alreadyExists
            case keyUnavailable
        }
        private let backing: Backing
        private init(_ backing: Backing) { self.backing = backing }

        /// Bytes that do not parse as what they claim to be (PEM, DER, PKCS#8, PKCS#10, ...).
        public static let malformed = Code(.malformed)
        /// An encrypted key could not be opened with the passphrase given.
        public static let wrongPassphrase = Code(.wrongPassphrase)
        /// A key or signature algorithm DevID (or the profile) does not support.
        public static let unsupportedAlgorithm = Code(.unsupportedAlgorithm)
        /// A request that parses but breaks the profile's rules.
        public static let policyViolation = Code(.policyViolation)
        /// A signature that does not verify (proof of possession, chain).
        public static let invalidSignature = Code(.invalidSignature)
        /// A certificate that does not chain to a trusted CA at the validation time.
        public static let untrusted = Code(.untrusted)
        /// A file could not be read or written.
        public static let io = Code(.io)
        /// A file or object that should exist does not.
        public static let notFound = Code(.notFound)
        /// Something that must be created once already exists.
        public static let alreadyExists = Code(.alreadyExists)
        /// A CA key in a PKCS#11 token cannot be used now (token removed, device error, PIN refused): nothing was
        /// signed; retry when the token is back.
        public static let keyUnavailable = Code(.keyUnavailable)

        public var description: String { String(describing: backing) }
    }

    public let code: Code
    /// One line, safe to show an operator or a client.
    public let reason: String
    public let file: String
    public let line: UInt

    public init(_ code: Code, _ reason: String, file: String = #fileID, line: UInt = #line) {
        self.code = code
        self.reason = reason
        self.file = file
        self.line = line
    }

    public var description: String { reason }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
