public import Foundation

/// Key algorithms a profile may allow.
public enum KeyAlgorithm: String, Sendable, Codable, CaseIterable, Hashable {
    case p256 = "ecdsa-p256"
    case p384 = "ecdsa-p384"
    case ed25519
    case rsa2048 = "rsa-2048"
    case rsa3072 = "rsa-3072"
    case rsa4096 = "rsa-4096"
}

/// The data half of a certificate profile: how long, which keys, how far back.
/// The PKI layer turns it into extensions; nothing here is a code path.
public struct ProfilePolicy: Sendable, Hashable, Codable {
    public var name: String
    /// Validity from notBefore (before backdating) to notAfter, in seconds. `nil` means 99991231235959Z (802.1AR).
    public var lifetime: TimeInterval?
    /// How far notBefore is set in the past so that a slightly slow clock still accepts the certificate.
    public var backdate: TimeInterval
    public var allowedKeyAlgorithms: Set<KeyAlgorithm>
    /// Re-enrollment must present a key the device never used before (key rotation, not only renewal).
    public var requireNewKeyOnReenroll: Bool
    /// When and how identities of this profile rotate.
    public var rotation: RotationPolicy

    public init(
        name: String, lifetime: TimeInterval?, backdate: TimeInterval, allowedKeyAlgorithms: Set<KeyAlgorithm>,
        requireNewKeyOnReenroll: Bool = true, rotation: RotationPolicy = RotationPolicy()
    ) {
        self.name = name
        self.lifetime = lifetime
        self.backdate = backdate
        self.allowedKeyAlgorithms = allowedKeyAlgorithms
        self.requireNewKeyOnReenroll = requireNewKeyOnReenroll
        self.rotation = rotation
    }

    public static let day: TimeInterval = 86_400

    private enum CodingKeys: String, CodingKey {
        case name, lifetime, backdate, allowedKeyAlgorithms, requireNewKeyOnReenroll, rotation
    }

    /// As synthesized, but `allowedKeyAlgorithms` in a fixed order (by name): the same policy always reads the same
    /// (`GET /v1/admin/profile`, `devid profile show --json`).
    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(name, forKey: .name)
        try container.encodeIfPresent(lifetime, forKey: .lifetime)
        try container.encode(backdate, forKey: .backdate)
        try container.encode(allowedKeyAlgorithms.sorted { $0.rawValue < $1.rawValue }, forKey: .allowedKeyAlgorithms)
        try container.encode(requireNewKeyOnReenroll, forKey: .requireNewKeyOnReenroll)
        try container.encode(rotation, forKey: .rotation)
    }

    /// Operational identity: 30 days, P-256 (and P-384), backdated 5 minutes.
    public static let ldevid = ProfilePolicy(
        name: "ldevid", lifetime: 30 * day, backdate: 300, allowedKeyAlgorithms: [.p256, .p384])
    /// Factory identity: never expires (802.1AR), P-256.
    public static let idevid = ProfilePolicy(
        name: "idevid", lifetime: nil, backdate: 300, allowedKeyAlgorithms: [.p256, .p384])
    /// The listeners' TLS certificate: one year.
    public static let serverTLS = ProfilePolicy(
        name: "server-tls", lifetime: 365 * day, backdate: 300, allowedKeyAlgorithms: [.p256])
    /// Root CA: 20 years, P-384.
    public static let rootCA = ProfilePolicy(
        name: "root-ca", lifetime: 20 * 365 * day, backdate: 300, allowedKeyAlgorithms: [.p384])
    /// Issuing and manufacturer CAs: 5 years, P-256.
    public static let intermediateCA = ProfilePolicy(
        name: "intermediate-ca", lifetime: 5 * 365 * day, backdate: 300, allowedKeyAlgorithms: [.p256])
}
