/// Errors of the PKCS#11 layer: one line each, safe to show (never a PIN, never key bytes).
public struct PKCS11Error: Error, Hashable, Sendable, CustomStringConvertible {
    public enum Code: String, Hashable, Sendable {
        /// The `pkcs11:` URI does not parse, or names something DevID refuses (pin-value).
        case invalidURI
        /// The module (module-path) cannot be loaded or initialised.
        case moduleUnavailable
        /// No token in the module matches the URI.
        case tokenNotFound
        /// The token refused the PIN (CKR_PIN_INCORRECT), or the PIN is locked.
        case wrongPIN
        /// The pin-source cannot be read.
        case pinUnavailable
        /// No key object in the token matches the URI.
        case keyNotFound
        /// The token does not do what DevID asks (ECDSA over P-256/P-384, EC key generation).
        case mechanismUnsupported
        /// The token went away or failed while in use (removed, device error, sessions closed): retryable.
        case tokenUnavailable
        /// An object with that label already exists (DevID never overwrites a key).
        case alreadyExists
        /// Any other PKCS#11 failure.
        case failed
    }

    public let code: Code
    public let reason: String
    /// The PKCS#11 return value (CKR_*), when the failure came from the module.
    public let returnValue: UInt?

    public init(_ code: Code, _ reason: String, returnValue: UInt? = nil) {
        self.code = code
        self.reason = reason
        self.returnValue = returnValue
    }

    public var description: String { reason }
}
