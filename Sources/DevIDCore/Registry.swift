public import Foundation

/// How a tenant treats devices that are not in its allowlist yet. The default is closed: only devices imported
/// from a factory manifest enroll, and they enroll without waiting for an operator.
public struct TenantPolicy: Sendable, Hashable, Codable {
    /// An IDevID from a trusted manufacturer CA that is not in the allowlist registers itself on first enrollment.
    public var autoRegister: Bool
    /// Unknown devices' first enrollment is parked until `devid device approve`.
    public var manualApproval: Bool
    /// The tenant's own MQTT topic rules and API scopes; nil means ``TopicPolicy/default``. Set through
    /// `PUT /v1/admin/tenants/:id/topic-policy`, which validates it first.
    public var topics: TopicPolicy?
    /// The most uses a claim token that names no device may have. A bulk token (more than one use) is an explicit
    /// choice: raise this first (`devid tenant policy T --max-token-uses N`).
    public var maxUnboundTokenUses: Int
    /// The longest lifetime, in seconds, of a claim token that names no device.
    public var maxUnboundTokenTTL: Int

    public static let defaultMaxUnboundTokenUses = 1
    public static let defaultMaxUnboundTokenTTL = 86_400

    public init(
        autoRegister: Bool = false, manualApproval: Bool = false, topics: TopicPolicy? = nil,
        maxUnboundTokenUses: Int = TenantPolicy.defaultMaxUnboundTokenUses,
        maxUnboundTokenTTL: Int = TenantPolicy.defaultMaxUnboundTokenTTL
    ) {
        self.autoRegister = autoRegister
        self.manualApproval = manualApproval
        self.topics = topics
        self.maxUnboundTokenUses = maxUnboundTokenUses
        self.maxUnboundTokenTTL = maxUnboundTokenTTL
    }

    /// The topic policy in force: the tenant's own, or the default.
    public var effectiveTopics: TopicPolicy { topics ?? .default }

    private enum CodingKeys: String, CodingKey {
        case autoRegister, manualApproval, topics, maxUnboundTokenUses, maxUnboundTokenTTL
    }

    /// Missing fields take their defaults, so a policy written before a field existed still decodes.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.autoRegister = try container.decodeIfPresent(Bool.self, forKey: .autoRegister) ?? false
        self.manualApproval = try container.decodeIfPresent(Bool.self, forKey: .manualApproval) ?? false
        self.topics = try container.decodeIfPresent(TopicPolicy.self, forKey: .topics)
        self.maxUnboundTokenUses =
            try container.decodeIfPresent(Int.self, forKey: .maxUnboundTokenUses) ?? Self.defaultMaxUnboundTokenUses
        self.maxUnboundTokenTTL =
            try container.decodeIfPresent(Int.self, forKey: .maxUnboundTokenTTL) ?? Self.defaultMaxUnboundTokenTTL
    }
}

/// A customer or site.
public struct Tenant: Sendable, Hashable, Codable {
    public var id: TenantID
    public var displayName: String
    public var createdAt: Date
    /// How this tenant's unknown devices enroll.
    public var policy: TenantPolicy

    public init(id: TenantID, displayName: String, createdAt: Date, policy: TenantPolicy = TenantPolicy()) {
        self.id = id
        self.displayName = displayName
        self.createdAt = createdAt
        self.policy = policy
    }

    private enum CodingKeys: String, CodingKey {
        case id, displayName, createdAt, policy
    }

    /// Decodes tenants written before tenants had a policy: a missing `policy` is the default (closed) one.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.id = try container.decode(TenantID.self, forKey: .id)
        self.displayName = try container.decode(String.self, forKey: .displayName)
        self.createdAt = try container.decode(Date.self, forKey: .createdAt)
        self.policy = try container.decodeIfPresent(TenantPolicy.self, forKey: .policy) ?? TenantPolicy()
    }
}

/// A manufacturing batch.
public struct Lot: Sendable, Hashable, Codable {
    public var id: LotID
    public var tenant: TenantID
    public var createdAt: Date

    public init(id: LotID, tenant: TenantID, createdAt: Date) {
        self.id = id
        self.tenant = tenant
        self.createdAt = createdAt
    }
}

/// A registry entry for one device.
public struct Device: Sendable, Hashable, Codable {
    public var id: DeviceID
    public var tenant: TenantID
    public var hardwareSerial: String
    public var lot: LotID?
    public var state: DeviceState
    public var createdAt: Date
    public var lastSeen: Date?
    /// The serial of the device's IDevID when DevID's own manufacturer CA issued it (from the lot manifest, or
    /// from the certificate an unlisted device enrolled with); nil for external manufacturers and claim tokens.
    /// DevID publishes revocation status (CRL, OCSP) for these IDevIDs only.
    public var idevidSerial: SerialNumber?
    /// When the IDevID was revoked (revoking the device, its lot or its tenant). Never cleared: re-provisioning
    /// gives the device a claim token, not its factory identity back.
    public var idevidRevokedAt: Date?
    public var idevidRevocationReason: RevocationReason?
    /// SHA-256 (lowercase hex) of the manufacturer CA certificate that issued the device's IDevID: only an IDevID
    /// from that CA enrolls as this device. Set by a manifest import or a self-registration; nil for devices
    /// registered before this binding existed and for claim-token devices.
    public var idevidIssuerSHA256: String?
    /// SHA-256 (lowercase hex) of the IDevID certificate itself, when the manifest gives it: only that exact
    /// certificate enrolls as this device.
    public var idevidSHA256: String?
    /// The claim token (its public id) the device first enrolled with, so that a leaked token's enrollments can be
    /// revoked together (`devid revoke --token`).
    public var enrolledWithToken: String?

    public init(
        id: DeviceID, tenant: TenantID, hardwareSerial: String, lot: LotID?, state: DeviceState,
        createdAt: Date, lastSeen: Date? = nil, idevidSerial: SerialNumber? = nil, idevidRevokedAt: Date? = nil,
        idevidRevocationReason: RevocationReason? = nil, idevidIssuerSHA256: String? = nil,
        idevidSHA256: String? = nil, enrolledWithToken: String? = nil
    ) {
        self.id = id
        self.tenant = tenant
        self.hardwareSerial = hardwareSerial
        self.lot = lot
        self.state = state
        self.createdAt = createdAt
        self.lastSeen = lastSeen
        self.idevidSerial = idevidSerial
        self.idevidRevokedAt = idevidRevokedAt
        self.idevidRevocationReason = idevidRevocationReason
        self.idevidIssuerSHA256 = idevidIssuerSHA256
        self.idevidSHA256 = idevidSHA256
        self.enrolledWithToken = enrolledWithToken
    }
}

/// A bootstrap secret for devices without an IDevID. Only the hash of the secret is ever stored.
public struct ClaimToken: Sendable, Hashable, Codable {
    /// A public handle for the token (safe to log and to pass to `devid token revoke`).
    public var id: String
    /// SHA-256 of the secret, lowercase hex.
    public var secretHash: String
    public var tenant: TenantID
    public var device: DeviceID?
    public var expiresAt: Date
    public var usesRemaining: Int
    public var revoked: Bool
    public var createdAt: Date
    /// New devices enrolled with the token join this lot (a token that names no device only).
    public var lot: LotID?
    /// New device ids must match this pattern (see ``NamePattern``).
    public var namePattern: String?

    public init(
        id: String, secretHash: String, tenant: TenantID, device: DeviceID?, expiresAt: Date,
        usesRemaining: Int, revoked: Bool = false, createdAt: Date, lot: LotID? = nil, namePattern: String? = nil
    ) {
        self.id = id
        self.secretHash = secretHash
        self.tenant = tenant
        self.device = device
        self.expiresAt = expiresAt
        self.usesRemaining = usesRemaining
        self.revoked = revoked
        self.createdAt = createdAt
        self.lot = lot
        self.namePattern = namePattern
    }

    /// What the token allows, for ``CredentialLifecycle/claimTokenEnrollment(_:requested:existing:)``.
    public var grant: CredentialLifecycle.TokenGrant {
        CredentialLifecycle.TokenGrant(tenant: tenant, device: device, lot: lot, namePattern: namePattern)
    }
}

/// A named credential for the admin API, with a role and optionally a list of tenants. Only the hash of the secret
/// is stored; the secret is shown once, when the token is created.
public struct AdminToken: Sendable, Hashable, Codable {
    /// A public handle (safe to log, the audit actor is `admin:<id>`).
    public var id: String
    /// What the operator calls it (`bootstrap`, `ci-deploy`); unique among tokens that are not revoked.
    public var name: String
    /// SHA-256 of the whole token, lowercase hex.
    public var secretHash: String
    public var role: AdminRole
    /// The tenants the token may act on; nil means every tenant.
    public var tenants: [TenantID]?
    public var createdAt: Date
    /// After this the token is refused; nil means it does not expire.
    public var expiresAt: Date?
    /// The last time the token authenticated a request, as far as the registry knows (written back coalesced).
    public var lastUsedAt: Date?
    public var revoked: Bool

    public init(
        id: String, name: String? = nil, secretHash: String, role: AdminRole = .admin, tenants: [TenantID]? = nil,
        createdAt: Date, expiresAt: Date? = nil, lastUsedAt: Date? = nil, revoked: Bool = false
    ) {
        self.id = id
        self.name = name ?? id
        self.secretHash = secretHash
        self.role = role
        self.tenants = tenants
        self.createdAt = createdAt
        self.expiresAt = expiresAt
        self.lastUsedAt = lastUsedAt
        self.revoked = revoked
    }

    /// Not revoked and not expired at `now`.
    public func isUsable(at now: Date) -> Bool {
        !revoked && (expiresAt.map { now < $0 } ?? true)
    }

    /// Whether the token may act on `tenant`'s objects.
    public func allows(tenant: TenantID) -> Bool {
        tenants.map { $0.contains(tenant) } ?? true
    }

    /// Names of tokens: 1-64 characters of `A-Z a-z 0-9 . _ -`, not starting with `.` or `-` (like ids).
    public static func isValidName(_ name: String) -> Bool { IdentifierRules.isValid(name) }
}

/// One entry of the audit trail: every decision that grants or denies, and every change.
///
/// The store chains entries with SHA-256 (`hash = SHA-256(previousHash ‖ canonical entry)`), so editing or
/// deleting an entry in the middle breaks the chain and `verifyAuditChain` reports where.
public struct AuditEvent: Sendable, Hashable, Codable {
    public enum Outcome: String, Sendable, Codable, Hashable {
        case success, denied, failure
    }

    /// Position in the trail, assigned by the store (0 until stored).
    public var sequence: Int64
    public var time: Date
    /// Who acted: `admin:<token id>`, `device:<id>`, `system`, `anonymous`.
    public var actor: String
    /// What happened, dotted: `ca.init`, `admin.auth`, `est.enroll`, ...
    public var action: String
    public var outcome: Outcome
    /// One line, secret-free.
    public var reason: String
    public var tenant: TenantID?
    public var device: DeviceID?
    public var serial: SerialNumber?
    /// Hash of the previous entry (hex), assigned by the store.
    public var previousHash: String
    /// Hash of this entry (hex), assigned by the store.
    public var hash: String

    public init(
        time: Date, actor: String, action: String, outcome: Outcome, reason: String = "",
        tenant: TenantID? = nil, device: DeviceID? = nil, serial: SerialNumber? = nil
    ) {
        self.sequence = 0
        self.time = time
        self.actor = actor
        self.action = action
        self.outcome = outcome
        self.reason = reason
        self.tenant = tenant
        self.device = device
        self.serial = serial
        self.previousHash = ""
        self.hash = ""
    }

    /// The bytes the chain hash covers: every field but the hashes, in a fixed order, unambiguously separated.
    public var canonicalContent: String {
        let millis = Int64((time.timeIntervalSince1970 * 1000).rounded())
        return [
            String(sequence), String(millis), actor, action, outcome.rawValue, reason,
            tenant?.rawValue ?? "", device?.rawValue ?? "", serial?.rawValue ?? "",
        ].map { "\($0.utf8.count):\($0)" }.joined(separator: "|")
    }
}
