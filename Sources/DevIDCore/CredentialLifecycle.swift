public import Foundation

/// Why DevID refused a device: a closed set of stable snake_case codes.
///
/// They travel on the wire next to the human message (the `DevID-Refusal` header on EST and the device check-in,
/// `code` in JSON errors), so that agents and relying parties switch on the code, never on the message text.
/// A code, once shipped, keeps its meaning; new refusals get new codes.
public enum RefusalCode: String, Sendable, Codable, Hashable, CaseIterable {
    // The presented LDevID.
    /// The certificate is not one DevID issued to this device.
    case credentialUnknown = "credential_unknown"
    case credentialRevoked = "credential_revoked"
    /// Expired beyond the grace window (or expired and not the newest credential, which alone may renew late).
    case credentialExpired = "credential_expired"
    case credentialNotYetValid = "credential_not_yet_valid"
    /// Superseded, and its overlap window has ended.
    case credentialSuperseded = "credential_superseded"
    /// A superseded credential tried to renew again after its successor was seen in use.
    case successorInUse = "successor_in_use"
    // The device.
    case deviceUnknown = "device_unknown"
    case deviceSuspended = "device_suspended"
    case deviceRevoked = "device_revoked"
    case deviceDecommissioned = "device_decommissioned"
    case devicePendingApproval = "device_pending_approval"
    /// Neither active nor in a state the request can move it out of.
    case deviceNotActive = "device_not_active"
    case wrongTenant = "wrong_tenant"
    // Bootstrap credentials.
    case tokenInvalid = "token_invalid"
    case tokenRevoked = "token_revoked"
    case tokenExpired = "token_expired"
    case tokenUsedUp = "token_used_up"
    /// The token is bound to another device.
    case tokenOtherDevice = "token_other_device"
    /// A token that names no device tried to enroll a device that already exists (takeover attempt).
    case tokenNotForExistingDevice = "token_not_for_existing_device"
    /// The requested device id is outside the token's lot or name pattern.
    case tokenOutOfScope = "token_out_of_scope"
    /// An IDevID that is not in the allowlist (and the tenant does not register unknown devices).
    case idevidNotAllowed = "idevid_not_allowed"
    /// An IDevID that does not match what the registry bound to the device (serial, issuer or fingerprint).
    case idevidMismatch = "idevid_mismatch"
    case idevidRevoked = "idevid_revoked"
    // The request.
    case authenticationRequired = "authentication_required"
    /// Right credential, wrong endpoint (an LDevID at simpleenroll, an IDevID at simplereenroll).
    case wrongEndpoint = "wrong_endpoint"
    case badRequest = "bad_request"
    /// The CSR asks for names the device may not have.
    case nameNotAllowed = "name_not_allowed"
    /// Re-enrollment with a key the device used before.
    case keyReused = "key_reused"
    /// A concurrent change won; retrying may succeed.
    case conflict
    case internalError = "internal_error"
    // Back-pressure.
    /// Over a per-client limit (source address, device, claim token, tenant): `429`, retry after `Retry-After`.
    case rateLimited = "rate_limited"
    /// The server is saturated (too many enrollments in flight): `503`, retry after `Retry-After`.
    case overloaded
    /// The registry's disk is full: nothing was issued or changed; `503`, retry after `Retry-After`.
    case storageFull = "storage_full"
    /// The CA key's hardware token is unavailable (removed, failing, PIN refused): nothing was issued; `503`, retry
    /// after `Retry-After`.
    case caKeyUnavailable = "ca_key_unavailable"
    /// The registry's database cannot be reached (a PostgreSQL registry down, failing over, or refusing): nothing was
    /// issued; `503`, retry after `Retry-After`.
    case registryUnavailable = "registry_unavailable"
}

/// A refusal as a value: a stable code and a one-line, secret-free message.
public struct LifecycleRefusal: Error, Sendable, Hashable, CustomStringConvertible {
    public var code: RefusalCode
    public var message: String

    public init(_ code: RefusalCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(code.rawValue): \(message)" }
}

/// The credential rules in one place: where a presented LDevID stands (current, superseded within its overlap,
/// expired within grace, or done), what it may still do, and which way back a device has. Every caller asks this
/// type — the EST service, the device check-in and the policy decisions — so that a rule changes in one place.
///
/// Pure value logic, no I/O: callers pass snapshots read from the registry and the time from their clock.
public struct CredentialLifecycle: Sendable, Hashable {
    /// Where a credential stands at a given time.
    public enum Standing: Sendable, Hashable {
        /// Active and within its validity.
        case current
        /// Superseded, still valid until the overlap deadline.
        case overlap(until: Date)
        /// The newest credential, expired less than the grace period ago: it may renew late, nothing else.
        case withinGrace
        case notYetValid
        case revoked
        /// Expired beyond grace, or expired while not the newest credential.
        case expired
        /// Superseded, and the overlap has ended.
        case superseded
    }

    public var policy: RotationPolicy

    public init(policy: RotationPolicy) { self.policy = policy }

    public func standing(_ credential: CredentialSnapshot, at now: Date) -> Standing {
        if credential.status == .revoked { return .revoked }
        if credential.status == .expired { return .expired }
        if credential.notBefore > now { return .notYetValid }
        if credential.notAfter <= now {
            if credential.status == .active, withinGrace(notAfter: credential.notAfter, at: now) { return .withinGrace }
            return .expired
        }
        if credential.status == .superseded {
            guard let deadline = credential.overlapDeadline, now < deadline else { return .superseded }
            return .overlap(until: deadline)
        }
        return .current
    }

    /// Whether a certificate that expired at `notAfter` is, at `now`, still within the grace window in which the
    /// newest credential may renew late (and do nothing else). The TLS handshake and the agent ask this too.
    public func withinGrace(notAfter: Date, at now: Date) -> Bool {
        now >= notAfter && now < notAfter.addingTimeInterval(policy.grace)
    }

    /// The refusal for a standing that may not authenticate at all (EST and the check-in); nil for current, overlap
    /// and within grace (which only re-enrollment then accepts).
    public static func refusal(_ standing: Standing) -> LifecycleRefusal? {
        switch standing {
        case .current, .overlap, .withinGrace: nil
        case .revoked: LifecycleRefusal(.credentialRevoked, "credential is revoked")
        case .expired: LifecycleRefusal(.credentialExpired, "credential has expired")
        case .notYetValid: LifecycleRefusal(.credentialNotYetValid, "credential is not valid yet")
        case .superseded: LifecycleRefusal(.credentialSuperseded, "credential superseded and its overlap has ended")
        }
    }

    /// May this credential authenticate a device request (EST, check-in) at `now`?
    public func authenticate(_ credential: CredentialSnapshot, at now: Date) -> LifecycleRefusal? {
        Self.refusal(standing(credential, at: now))
    }

    /// The device check-in answers only a credential that is valid now: within grace it must renew first.
    public func checkIn(_ credential: CredentialSnapshot, at now: Date) -> LifecycleRefusal? {
        let standing = standing(credential, at: now)
        if standing == .withinGrace { return LifecycleRefusal(.credentialExpired, "credential has expired") }
        return Self.refusal(standing)
    }

    /// What a re-enrollment with `presented` replaces.
    public struct Renewal: Sendable, Hashable {
        /// Credentials that become `superseded` by the new one (oldest last).
        public var supersede: [SerialNumber]
        /// The presented credential had expired within grace (audited as a late renewal).
        public var late: Bool

        public init(supersede: [SerialNumber], late: Bool) {
            self.supersede = supersede
            self.late = late
        }
    }

    /// Re-enrollment (`simplereenroll`) with `presented`: the current credential renews; the newest one renews late
    /// within grace; a superseded one within its overlap may retry only while its successor was never seen (the
    /// successor is then given up). `successor` is the credential `presented.replacedBy` names, if any.
    public func reenrollment(
        _ presented: CredentialSnapshot, successor: CredentialSnapshot?, at now: Date
    ) -> Result<Renewal, LifecycleRefusal> {
        let standing = standing(presented, at: now)
        switch standing {
        case .current:
            return .success(Renewal(supersede: [presented.serial], late: false))
        case .withinGrace:
            return .success(Renewal(supersede: [presented.serial], late: true))
        case .overlap:
            guard let successor, successor.status == .active, !successor.confirmed else {
                return .failure(LifecycleRefusal(.successorInUse, "credential superseded and its successor is in use"))
            }
            return .success(Renewal(supersede: [successor.serial, presented.serial], late: false))
        case .revoked, .expired, .notYetValid, .superseded:
            return .failure(Self.refusal(standing)!)
        }
    }

    /// The device-state half of a device request: nil when the device is `active`.
    public static func deviceRefusal(_ state: DeviceState) -> LifecycleRefusal? {
        switch state {
        case .active: nil
        case .revoked: LifecycleRefusal(.deviceRevoked, "device is revoked")
        case .suspended: LifecycleRefusal(.deviceSuspended, "device is suspended")
        case .decommissioned: LifecycleRefusal(.deviceDecommissioned, "device is decommissioned")
        case .pendingApproval: LifecycleRefusal(.devicePendingApproval, "device is waiting for operator approval")
        case .manufactured: LifecycleRefusal(.deviceNotActive, "device is manufactured")
        }
    }

    // MARK: - Ways back in

    /// What a claim token allows, as far as the rules need it.
    public struct TokenGrant: Sendable, Hashable {
        public var tenant: TenantID
        /// The one device the token is bound to (`devid token create --device`, `devid device reprovision`).
        public var device: DeviceID?
        /// New devices enrolled with the token join this lot, and the token enrolls no other.
        public var lot: LotID?
        /// New device ids must match this pattern (`*` any run of characters, `?` one).
        public var namePattern: String?

        public init(tenant: TenantID, device: DeviceID? = nil, lot: LotID? = nil, namePattern: String? = nil) {
            self.tenant = tenant
            self.device = device
            self.lot = lot
            self.namePattern = namePattern
        }
    }

    /// May a claim token enroll `requested`, which the registry holds as `existing` (nil: a new device)?
    ///
    /// A token bound to a device enrolls that device only (new, or existing: re-provisioning). A token that names
    /// no device creates **new** devices only: an existing device re-enrolls with its IDevID, its current LDevID, or
    /// a token bound to it, never with a tenant-wide token — otherwise anyone holding a bulk token could take over
    /// every device of the tenant. Lot and name-pattern bindings narrow which new devices it creates.
    public static func claimTokenEnrollment(
        _ token: TokenGrant, requested: DeviceID, existing: DeviceSnapshot?
    ) -> LifecycleRefusal? {
        if let bound = token.device {
            guard bound == requested else { return LifecycleRefusal(.tokenOtherDevice, "claim token is for another device") }
        }
        if let existing {
            guard existing.tenant == token.tenant else {
                return LifecycleRefusal(.wrongTenant, "device belongs to another tenant")
            }
            guard token.device != nil else {
                return LifecycleRefusal(
                    .tokenNotForExistingDevice,
                    "device \(requested) is already registered: a claim token that names no device enrolls new "
                        + "devices only (re-enroll with its IDevID or LDevID, or devid device reprovision \(requested))")
            }
            return nil
        }
        if let pattern = token.namePattern, !NamePattern.matches(pattern, requested.rawValue) {
            return LifecycleRefusal(.tokenOutOfScope, "device id \(requested) does not match the claim token's pattern")
        }
        return nil
    }
}

/// Glob-style device-name patterns for claim tokens: `*` matches any run of characters (also none), `?` one
/// character, everything else itself. Patterns use the identifier alphabet plus `*` and `?`.
public enum NamePattern {
    public static func isValid(_ pattern: String) -> Bool {
        guard !pattern.isEmpty, pattern.utf8.count <= IdentifierRules.maximumLength else { return false }
        let stripped = pattern.replacingOccurrences(of: "*", with: "a").replacingOccurrences(of: "?", with: "a")
        return IdentifierRules.isValid(stripped)
    }

    public static func matches(_ pattern: String, _ value: String) -> Bool {
        let p = Array(pattern.utf8)
        let v = Array(value.utf8)
        var pi = 0
        var vi = 0
        var star = -1
        var mark = 0
        while vi < v.count {
            if pi < p.count, p[pi] == UInt8(ascii: "?") || p[pi] == v[vi] {
                pi += 1
                vi += 1
            } else if pi < p.count, p[pi] == UInt8(ascii: "*") {
                star = pi
                mark = vi
                pi += 1
            } else if star >= 0 {
                pi = star + 1
                mark += 1
                vi = mark
            } else {
                return false
            }
        }
        while pi < p.count, p[pi] == UInt8(ascii: "*") { pi += 1 }
        return pi == p.count
    }
}
