public import Crypto
public import DevIDPKI
public import DevIDStore
import Foundation

/// The secret behind the audit trail's keyed chain and its signed checkpoints: 32 random bytes in
/// `DATA/secrets/audit-key` (base64, 0600), created on the first start that lacks it. It is never in the registry,
/// so someone who can write `registry.sqlite` can neither recompute the chain nor sign a checkpoint.
///
/// Why a file of its own rather than a key derived from the CA passphrase: HMACs in the database would otherwise
/// let anyone who reads it test passphrase guesses at HMAC speed (the key files cost PBKDF2 rounds per guess), and
/// the audit key would change with the passphrase. Keep `secrets/` on storage the database's writers cannot reach
/// (or back it up with the CA keys): losing the file makes every keyed entry fail verification.
public struct AuditSecret: Sendable {
    /// Keys the chain (HMAC-SHA256).
    public let chainKey: AuditKey
    /// Signs checkpoints (Ed25519).
    let signingKey: Curve25519.Signing.PrivateKey

    init(secret: [UInt8]) throws {
        chainKey = AuditKey(secret: secret)
        let seed = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: secret), salt: Array("devid-audit".utf8),
            info: Array("audit-checkpoint-ed25519-v1".utf8), outputByteCount: 32)
        signingKey = try seed.withUnsafeBytes { try Curve25519.Signing.PrivateKey(rawRepresentation: $0) }
    }

    /// The checkpoint verification key.
    public var publicKey: Curve25519.Signing.PublicKey { signingKey.publicKey }

    /// `DATA/secrets/audit-key`.
    public static func path(_ configuration: ServerConfiguration) -> String {
        configuration.secretsDirectory + "/audit-key"
    }

    /// Reads the secret; with `creating`, makes a new one if the file does not exist. Returns whether it created.
    public static func load(_ configuration: ServerConfiguration, creating: Bool = false) throws -> (
        AuditSecret, created: Bool
    ) {
        let path = path(configuration)
        if !FileManager.default.fileExists(atPath: path) {
            guard creating else { throw DevIDPKIError(.notFound, "audit key \(path) is missing") }
            var generator = SystemRandomNumberGenerator()
            let secret = (0..<32).map { _ in UInt8.random(in: .min ... .max, using: &generator) }
            try SecureFile.createDirectory(configuration.secretsDirectory)
            try SecureFile.write(Array(Data(secret).base64EncodedString().utf8), to: path, mode: 0o600)
            return (try AuditSecret(secret: secret), true)
        }
        let text = String(decoding: try SecureFile.read(path), as: UTF8.self)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        guard let secret = Data(base64Encoded: text), secret.count >= 32 else {
            throw DevIDPKIError(.malformed, "audit key \(path) is not 32 or more base64-encoded bytes")
        }
        return (try AuditSecret(secret: Array(secret)), false)
    }
}

extension AuditSecret: CustomStringConvertible {
    public var description: String { "AuditSecret(<redacted>)" }
}
