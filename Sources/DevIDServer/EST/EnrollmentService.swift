import Crypto
import DevIDCore
import DevIDPKI
import DevIDStore
import Foundation
import HTTPTypes
import Logging
import SwiftASN1
import X509

/// EST enrollment and re-enrollment: authenticate, authorize, check the CSR, issue, record — in that order.
///
/// Every outcome is a value (`Verdict`); every refusal is audited with its reason before it is returned, and
/// nothing is stored on a refusal except that audit event. A certificate is recorded in the registry, in the
/// same transaction as its audit event, before its bytes leave this type.
struct EnrollmentService: Sendable {
    enum Kind: Sendable {
        case enroll, reenroll
        var action: String { self == .enroll ? "est.enroll" : "est.reenroll" }
        /// The metrics kind when nothing more is known.
        var metricKind: ServerMetrics.EnrollmentKind { self == .enroll ? .enroll : .reenroll }
    }

    struct Request: Sendable {
        var kind: Kind
        /// The `/.well-known/est/<label>/...` segment: selects a tenant.
        var label: String?
        var peerChain: [Certificate]?
        /// `peerChain` classified (``PeerIdentity/classify(chain:hierarchy:issuers:)``), once per request.
        var identity: PeerIdentity?
        var credential: ESTHTTPCredential
        /// The request body, base64 as sent.
        var body: [UInt8]
        /// The peer's IP address, for aggregated audit of anonymous failures.
        var source: String? = nil
    }

    enum Verdict: Sendable {
        /// The issued certificate's DER, as the registry stored it.
        case issued(der: [UInt8])
        case parked(retryAfter: Int, reason: String)
        case refused(status: HTTPResponse.Status, code: RefusalCode, reason: String, challenge: Bool)
    }

    /// Who the request proved to be, before the CSR is looked at.
    struct Subject {
        var actor: String
        var method: String
        var tenant: TenantID?
        var device: DeviceID?
        var serial: SerialNumber?
        /// The `kind` of `devid_enrollments_total` once known (a bootstrap, a late renewal); else from the endpoint.
        var kind: ServerMetrics.EnrollmentKind?
    }

    let state: ServerState

    private var store: any Store { state.store }
    private var hierarchy: CAHierarchy { state.hierarchy }
    private var profile: CertificateProfile { CertificateProfile(kind: .ldevid, policy: state.configuration.ldevidPolicy) }
    private var lifecycle: CredentialLifecycle { CredentialLifecycle(policy: profile.policy.rotation) }

    func handle(_ request: Request) async -> Verdict {
        watchPresented(request)
        do {
            let verdict = try await decide(request)
            if case .issued = verdict, request.kind == .reenroll,
                case .ldevid(let device, let tenant, let serial) = request.identity
            {
                state.watch.seen(device: device, tenant: tenant, serial: serial, source: request.source, at: state.clock.now())
            }
            return verdict
        } catch let refusal as Refusal {
            state.metrics.enrollment(
                tenant: refusal.subject?.tenant, kind: refusal.subject?.kind ?? request.kind.metricKind,
                result: refusal.parked ? .pending : .refused)
            if !refusal.parked, let reason = AuthFailureReason(refusal.code) {
                state.metrics.authFailure(.est, reason, tenant: refusal.subject?.tenant)
            }
            Self.watch(refusal.code, subject: refusal.subject, stage: .est, source: request.source, state: state)
            if refusal.isAnonymous {
                // No identity proven: counted and audited in aggregate, never a row per request.
                await state.anonymousFailures.record(
                    action: request.kind.action, reason: refusal.reason, source: request.source)
            } else {
                await audit(request, refusal.subject, outcome: .denied, reason: refusal.reason)
            }
            if refusal.parked {
                return .parked(retryAfter: state.configuration.approvalRetryAfterSeconds, reason: refusal.reason)
            }
            return .refused(
                status: refusal.status, code: refusal.code, reason: refusal.reason,
                challenge: refusal.status == .unauthorized)
        } catch let error as StoreError where error.code == .storageFull {
            // The issuance was rolled back: the certificate never leaves. One log line for the episode.
            state.auditor.storage.raise(error, logger: state.logger)
            state.metrics.enrollment(tenant: nil, kind: request.kind.metricKind, result: .refused)
            return .refused(
                status: .serviceUnavailable, code: .storageFull, reason: StorageAlarm.reason, challenge: false)
        } catch let error as StoreError where error.code == .unavailable {
            // The registry cannot be reached: whatever was signed was not recorded, so it never leaves. Nothing can be
            // audited either (the trail is in the registry); the log says it, once per refusal.
            state.logger.error("enrollment refused: the registry is unavailable", metadata: ["error": "\(error.reason)"])
            state.metrics.enrollment(tenant: nil, kind: request.kind.metricKind, result: .refused)
            return .refused(
                status: .serviceUnavailable, code: .registryUnavailable, reason: Self.registryUnavailable,
                challenge: false)
        } catch let error as DevIDPKIError where error.code == .keyUnavailable {
            // The token holding the CA key failed before anything was signed or recorded: the device retries.
            state.logger.error("enrollment refused: the CA key is unavailable", metadata: ["error": "\(error.reason)"])
            await audit(request, nil, outcome: .failure, reason: "CA key unavailable")
            state.metrics.enrollment(tenant: nil, kind: request.kind.metricKind, result: .refused)
            return .refused(
                status: .serviceUnavailable, code: .caKeyUnavailable, reason: Self.caKeyUnavailable, challenge: false)
        } catch {
            state.logger.error("enrollment failed", metadata: ["error": "\(error)"])
            await audit(request, nil, outcome: .failure, reason: "internal error")
            state.metrics.enrollment(tenant: nil, kind: request.kind.metricKind, result: .refused)
            return .refused(status: .internalServerError, code: .internalError, reason: "internal error", challenge: false)
        }
    }

    static let registryUnavailable = "the registry is unavailable; nothing was issued; retry later"
    static let caKeyUnavailable = "the CA key is unavailable (its hardware token failed); nothing was issued; retry later"

    /// An IDevID with a weak key or signature is noted for the `weak_key` check, whatever the outcome.
    private func watchPresented(_ request: Request) {
        guard request.kind == .enroll, let leaf = request.peerChain?.first, let weakness = KeyStrength.weakness(of: leaf),
            case .idevid(let hardwareSerial, let serial, _, _, _)? = request.identity
        else { return }
        state.watch.weakKey(hardwareSerial: hardwareSerial, serial: serial, weakness: weakness, at: state.clock.now())
    }

    /// Refusals the anomaly checks look at: a revoked or superseded credential (or a revoked device) presented
    /// again (`revoked_credential_in_use`), a claim token presented after it was used up or revoked
    /// (`bulk_token_overused`).
    static func watch(
        _ code: RefusalCode, subject: Subject?, stage: AuthStage, source: String?, state: ServerState
    ) {
        let now = state.clock.now()
        switch code {
        case .credentialRevoked, .deviceRevoked, .idevidRevoked, .credentialSuperseded:
            guard let device = subject?.device else { return }
            state.watch.suspect(
                device: device, tenant: subject?.tenant, serial: subject?.serial, stage: stage.rawValue,
                reason: code == .credentialSuperseded ? "superseded" : "revoked", source: source, at: now)
        case .tokenUsedUp, .tokenRevoked:
            guard let actor = subject?.actor, actor.hasPrefix("token:") else { return }
            state.watch.tokenOverused(
                token: String(actor.dropFirst("token:".count)), tenant: subject?.tenant,
                reason: code == .tokenUsedUp ? "used up" : "revoked", at: now)
        default:
            return
        }
    }

    // MARK: - Decision

    private func decide(_ request: Request) async throws -> Verdict {
        let labelTenant = try await tenant(forLabel: request.label)
        if let identity = request.identity {
            switch (identity, request.kind) {
            case (.ldevid(let device, let tenant, let serial), .reenroll):
                return try await reenroll(request, device: device, tenant: tenant, serial: serial, labelTenant: labelTenant)
            case (.idevid(let hardwareSerial, let serial, let ownManufacturer, let manufacturer, let fingerprint), .enroll):
                return try await enrollWithIDevID(
                    request,
                    PresentedIDevID(
                        hardwareSerial: hardwareSerial, serial: serial, ownManufacturer: ownManufacturer,
                        manufacturerSHA256: manufacturer, certificateSHA256: fingerprint),
                    labelTenant: labelTenant)
            case (.ldevid(let device, let tenant, let serial), .enroll):
                if case .bearer = request.credential { break }
                if case .basic = request.credential { break }
                throw Refusal(
                    .forbidden, .wrongEndpoint, "an LDevID renews with simplereenroll",
                    Subject(actor: "device:\(device)", method: "ldevid", tenant: tenant, device: device, serial: serial))
            case (.idevid(_, let serial, _, _, _), .reenroll):
                throw Refusal(
                    .forbidden, .wrongEndpoint, "simplereenroll needs the device's current LDevID, not its IDevID",
                    Subject(actor: "anonymous", method: "idevid", serial: serial))
            case (.unrecognized(let serial), _):
                throw Refusal(
                    .forbidden, .credentialUnknown, "client certificate is neither an IDevID nor an LDevID",
                    Subject(actor: "anonymous", method: "tls", serial: serial))
            }
        }
        if request.kind == .reenroll {
            throw Refusal(
                .unauthorized, .authenticationRequired,
                "simplereenroll requires the device's current LDevID as TLS client certificate")
        }
        switch request.credential {
        case .none:
            throw Refusal(
                .unauthorized, .authenticationRequired,
                "authentication required: an IDevID client certificate or a claim token")
        case .malformed:
            throw Refusal(.unauthorized, .authenticationRequired, "unreadable Authorization header")
        case .bearer(let token):
            return try await enrollWithToken(request, secret: token, deviceHint: nil, labelTenant: labelTenant)
        case .basic(let user, let password):
            return try await enrollWithToken(
                request, secret: password, deviceHint: user.isEmpty ? nil : user, labelTenant: labelTenant)
        }
    }

    private func tenant(forLabel label: String?) async throws -> Tenant? {
        guard let label else { return nil }
        guard let id = TenantID(rawValue: label), let tenant = try await store.tenant(id) else {
            throw Refusal(.notFound, .badRequest, "unknown EST label")
        }
        return tenant
    }

    /// A verified IDevID client certificate, as far as enrollment needs it.
    struct PresentedIDevID {
        var hardwareSerial: String
        var serial: SerialNumber
        var ownManufacturer: Bool
        var manufacturerSHA256: String
        var certificateSHA256: String
    }

    private func enrollWithIDevID(_ request: Request, _ idevid: PresentedIDevID, labelTenant: Tenant?) async throws
        -> Verdict
    {
        let hardwareSerial = idevid.hardwareSerial
        let serial = idevid.serial
        let ownManufacturer = idevid.ownManufacturer
        var subject = Subject(actor: "idevid:\(hardwareSerial)", method: "idevid", serial: serial)
        let now = state.clock.now()
        var registration: Device?
        let device: Device
        var prior: [Credential] = []
        if let (known, credentials) = try await store.deviceWithCredentials(hardwareSerial: hardwareSerial) {
            device = known
            prior = credentials.filter { $0.kind == .ldevid }
            subject.kind = prior.isEmpty ? .enroll : .bootstrap
        } else {
            guard let tenant = labelTenant, tenant.policy.autoRegister || tenant.policy.manualApproval else {
                throw Refusal(.forbidden, .idevidNotAllowed, "device \(hardwareSerial) is not in the allowlist", subject)
            }
            let id = DeviceID(derivedFromHardwareSerial: hardwareSerial)
            subject.tenant = tenant.id
            subject.device = id
            if tenant.policy.manualApproval {
                let parked = Device(
                    id: id, tenant: tenant.id, hardwareSerial: hardwareSerial, lot: nil, state: .pendingApproval,
                    createdAt: now, lastSeen: now, idevidSerial: ownManufacturer ? serial : nil,
                    idevidIssuerSHA256: idevid.manufacturerSHA256, idevidSHA256: idevid.certificateSHA256)
                guard try await insertIfNew(parked) else {
                    throw Refusal(
                        .conflict, .conflict, "device id \(id) is already registered with another hardware serial",
                        subject)
                }
                throw Refusal(parkedReason: "device \(id) is waiting for operator approval (devid device approve \(id))", subject)
            }
            registration = Device(
                id: id, tenant: tenant.id, hardwareSerial: hardwareSerial, lot: nil, state: .manufactured, createdAt: now,
                idevidSerial: ownManufacturer ? serial : nil, idevidIssuerSHA256: idevid.manufacturerSHA256,
                idevidSHA256: idevid.certificateSHA256)
            device = registration!
        }
        subject.tenant = device.tenant
        subject.device = device.id
        subject.actor = "device:\(device.id)"
        if let labelTenant, labelTenant.id != device.tenant {
            throw Refusal(.forbidden, .wrongTenant, "device belongs to another tenant", subject)
        }
        let next = try transition(device, event: .enroll, subject)
        if let refusal = Self.bindingRefusal(device, idevid) { throw Refusal(.forbidden, refusal, subject) }
        let csr = try checkedCSR(request.body, device: device.id, tenant: device.tenant, subject)
        return try await issue(
            request, subject: subject, device: device, registration: registration, next: next, csr: csr,
            consumeToken: nil, supersede: Self.activeSerials(prior))
    }

    /// Whether `idevid` is the factory identity the registry bound `device` to: issued by the manufacturer CA the
    /// device was imported (or registered) with, the exact certificate when the manifest named its fingerprint, the
    /// registered serial for DevID's own manufacturer CA, and never once that IDevID is revoked (also after a
    /// re-provisioning made the device enrollable again). The hardware serial alone proves nothing: two trusted
    /// manufacturers may both issue a certificate for serial `SN-1`.
    static func bindingRefusal(_ device: Device, _ idevid: PresentedIDevID) -> LifecycleRefusal? {
        // A device registered by a claim token has no factory identity: no IDevID enrolls as it, whatever its
        // subject says (a trusted manufacturer could otherwise mint serialNumber "claim:<id>").
        if device.hardwareSerial.hasPrefix(ClaimTokens.hardwareSerialPrefix) || device.enrolledWithToken != nil,
            device.idevidIssuerSHA256 == nil
        {
            return LifecycleRefusal(
                .idevidMismatch, "device \(device.id) enrolled with a claim token; no IDevID is registered for it")
        }
        if let issuer = device.idevidIssuerSHA256, issuer != idevid.manufacturerSHA256 {
            return LifecycleRefusal(
                .idevidMismatch,
                "IDevID of device \(device.id) is not from the manufacturer CA the device was registered with")
        }
        if let registered = device.idevidSerial {
            guard idevid.ownManufacturer, registered == idevid.serial else {
                return LifecycleRefusal(
                    .idevidMismatch, "IDevID serial \(idevid.serial) is not the one registered for device \(device.id)")
            }
            if device.idevidRevokedAt != nil {
                let reason = device.idevidRevocationReason ?? .unspecified
                return LifecycleRefusal(.idevidRevoked, "IDevID of device \(device.id) is revoked (\(reason.rawValue))")
            }
        }
        if let fingerprint = device.idevidSHA256, fingerprint != idevid.certificateSHA256 {
            return LifecycleRefusal(.idevidMismatch, "IDevID is not the certificate registered for device \(device.id)")
        }
        return nil
    }

    private func enrollWithToken(
        _ request: Request, secret: String, deviceHint: String?, labelTenant: Tenant?
    ) async throws -> Verdict {
        var subject = Subject(actor: "anonymous", method: "claim-token")
        let presented = ClaimTokens.hash(secret)
        guard let token = try await store.claimToken(secretHash: presented),
            constantTimeEquals(Array(token.secretHash.utf8), Array(presented.utf8))
        else {
            throw Refusal(.unauthorized, .tokenInvalid, "invalid claim token", subject)
        }
        subject.actor = "token:\(token.id)"
        subject.tenant = token.tenant
        let now = state.clock.now()
        let tokenRefusal = ClaimTokens.refusal(token, now: now)
        if tokenRefusal == nil || tokenRefusal?.code == .tokenUsedUp,
            let der = try await redelivery(request, token: token, deviceHint: deviceHint, subject: subject)
        {
            return .issued(der: der)
        }
        if let tokenRefusal { throw Refusal(.forbidden, tokenRefusal, subject) }
        if let labelTenant, labelTenant.id != token.tenant {
            throw Refusal(.forbidden, .wrongTenant, "claim token is for another tenant", subject)
        }
        let deviceID: DeviceID
        if let hint = deviceHint {
            guard let id = DeviceID(rawValue: hint) else {
                throw Refusal(.badRequest, .badRequest, "invalid device id", subject)
            }
            deviceID = id
        } else if let bound = token.device {
            deviceID = bound
        } else {
            let parsed = try parseCSR(request.body, subject)
            guard let cn = parsed.requestedCommonName, let id = DeviceID(rawValue: cn) else {
                throw Refusal(
                    .badRequest, .badRequest,
                    "device id required: give it as the Basic user name or the CSR common name", subject)
            }
            deviceID = id
        }
        subject.device = deviceID
        let known = try await store.device(deviceID)
        if let refusal = CredentialLifecycle.claimTokenEnrollment(
            token.grant, requested: deviceID, existing: known.map(DeviceSnapshot.init))
        {
            throw Refusal(.forbidden, refusal, subject)
        }
        var registration: Device?
        let device: Device
        var prior: [Credential] = []
        if let known {
            device = known
            prior = try await ldevids(known.id)
            subject.kind = prior.isEmpty ? .enroll : .bootstrap
        } else {
            guard !deviceID.hasDot else { throw Refusal(.badRequest, .badRequest, DevIDCoreError.dottedIdentifier(kind: "device id").reason, subject) }
            registration = Device(
                id: deviceID, tenant: token.tenant, hardwareSerial: ClaimTokens.hardwareSerialPrefix + deviceID.rawValue,
                lot: token.lot,
                state: .manufactured, createdAt: now, enrolledWithToken: token.id)
            device = registration!
        }
        let next = try transition(device, event: .enroll, subject)
        let csr = try checkedCSR(request.body, device: device.id, tenant: device.tenant, subject)
        return try await issue(
            request, subject: subject, device: device, registration: registration, next: next, csr: csr,
            consumeToken: token.id, supersede: Self.activeSerials(prior))
    }

    /// A claim token spent by a device whose answer was lost (the server was killed, or the connection dropped, after
    /// the issuance was committed and before the response arrived) would strand that device: its retry is "token used
    /// up". While the token is otherwise valid (not expired, not revoked), the same request again (a CSR for the same
    /// public key, whose signature proves possession of it, for a device this token registered) gets the certificate
    /// already issued for that key, as long as it is still the device's current LDevID. Nothing new is issued and no
    /// use is spent; the redelivery is audited. Any other request keeps the "used up" refusal.
    private func redelivery(_ request: Request, token: ClaimToken, deviceHint: String?, subject: Subject) async throws
        -> [UInt8]?
    {
        // Cheap checks first: a first enrollment (no such device yet) costs one registry read here.
        var csr: EnrollmentRequest?
        var candidate = deviceHint.flatMap(DeviceID.init(rawValue:)) ?? token.device
        if candidate == nil {
            csr = try? EnrollmentRequest(der: ESTBase64.decode(request.body) ?? [])
            candidate = csr?.requestedCommonName.flatMap(DeviceID.init(rawValue:))
        }
        guard let deviceID = candidate, let device = try await store.device(deviceID),
            device.enrolledWithToken == token.id, device.tenant == token.tenant, device.state == .active
        else { return nil }
        // The CSR's self-signature proves possession of the key the certificate was issued for.
        guard let csr = try csr ?? (try? EnrollmentRequest(der: ESTBase64.decode(request.body) ?? [])) else { return nil }
        let key = KeyMaterial.fingerprint(csr.publicKey)
        let now = state.clock.now()
        guard
            let credential = try await store.credentials(device: deviceID).first(where: {
                $0.kind == .ldevid && $0.status == .active && $0.publicKeySHA256 == key && $0.notAfter > now
            }),
            (try? Certificate(derEncoded: credential.der)) != nil
        else { return nil }
        // Its own action, so that `est.enroll` successes stay one per issued certificate.
        await state.auditor.record(
            actor: subject.actor, action: "est.redeliver", outcome: .success,
            reason: "re-delivered LDevID \(credential.serial) via \(subject.method): same key as its issuance, whose answer was lost",
            tenant: device.tenant, device: deviceID, serial: credential.serial)
        return credential.der
    }

    private func reenroll(
        _ request: Request, device deviceID: DeviceID, tenant: TenantID, serial: SerialNumber, labelTenant: Tenant?
    ) async throws -> Verdict {
        var subject = Subject(
            actor: "device:\(deviceID)", method: "ldevid", tenant: tenant, device: deviceID, serial: serial)
        let now = state.clock.now()
        let policy = profile.policy.rotation
        let current = try await requireUsableCredential(serial: serial, device: deviceID, now: now, subject)
        guard let device = try await store.device(deviceID), device.tenant == tenant else {
            throw Refusal(.forbidden, .deviceUnknown, "device is not in the registry", subject)
        }
        if let labelTenant, labelTenant.id != device.tenant {
            throw Refusal(.forbidden, .wrongTenant, "device belongs to another tenant", subject)
        }
        let next = try transition(device, event: .reenroll, subject)
        // A superseded certificate may retry during its overlap only while its successor has never been seen: the
        // successor is then given up, and the old credential re-pointed at the new one (keeping its earlier
        // overlap deadline). Late renewal is for the newest credential only. CredentialLifecycle decides.
        var successor: Credential?
        if current.status == .superseded, let next = current.replacedBy {
            successor = try await store.credential(serial: next)
        }
        let renewal: CredentialLifecycle.Renewal
        switch lifecycle.reenrollment(
            CredentialSnapshot(current), successor: successor.map(CredentialSnapshot.init), at: now)
        {
        case .success(let planned): renewal = planned
        case .failure(let refusal): throw Refusal(.forbidden, refusal, subject)
        }
        if renewal.late {
            subject.method = "ldevid (late renewal)"
            subject.kind = .lateRenewal
        }
        let supersede = renewal.supersede
        let csr = try checkedCSR(request.body, device: device.id, tenant: device.tenant, subject)
        if profile.policy.requireNewKeyOnReenroll {
            let newKey = KeyMaterial.fingerprint(csr.publicKey)
            let used = try await store.credentials(device: deviceID).map(\.publicKeySHA256)
            if used.contains(newKey) {
                throw Refusal(
                    .badRequest, .keyReused, "re-enrollment requires a new key (this key was used before)", subject)
            }
        }
        try await confirmFirstUse(current, now: now, subject)
        return try await issue(
            request, subject: subject, device: device, registration: nil, next: next, csr: csr, consumeToken: nil,
            supersede: supersede, overlapDeadline: now.addingTimeInterval(policy.overlap))
    }

    /// The registry's view of a presented LDevID, as ``CredentialLifecycle`` decides it: refused when revoked,
    /// superseded past its overlap, or expired beyond the grace window (for a check-in, expired at all).
    /// Changes nothing: the caller confirms the credential (``confirmFirstUse(_:now:_:)``) once every check passed.
    func requireUsableCredential(
        serial: SerialNumber, device: DeviceID, now: Date, _ subject: Subject, checkIn: Bool = false
    ) async throws -> Credential {
        guard let credential = try await store.credential(serial: serial), credential.deviceID == device else {
            throw Refusal(.forbidden, .credentialUnknown, "client certificate is not in the registry", subject)
        }
        let snapshot = CredentialSnapshot(credential)
        if let refusal = checkIn
            ? lifecycle.checkIn(snapshot, at: now) : lifecycle.authenticate(snapshot, at: now)
        {
            throw Refusal(.forbidden, refusal, subject)
        }
        return credential
    }

    /// Rotation step 3: an active credential seen in use for the first time is confirmed (its predecessor may then
    /// be revoked after the confidence period). Called only when the request that used it succeeds, so a refused
    /// request (suspended device, bad CSR, wrong label) stores nothing.
    func confirmFirstUse(_ credential: Credential, now: Date, _ subject: Subject) async throws {
        guard credential.status == .active, credential.confirmedAt == nil, credential.notAfter > now else { return }
        _ = try await store.confirmCredential(
            serial: credential.serial, at: now,
            audit: state.auditor.event(
                actor: subject.actor, action: "rotation.confirm", outcome: .success,
                reason: "credential \(credential.serial) seen in use for the first time", tenant: subject.tenant,
                device: credential.deviceID, serial: credential.serial))
    }

    // MARK: - Steps

    /// Records an issuance; false if a concurrent change won (conflict or duplicate), nothing stored then.
    private func record(_ issuance: Issuance) async throws -> Bool {
        do {
            try await store.recordIssuance(issuance)
            return true
        } catch {
            if error.code == .conflict || error.code == .duplicate { return false }
            throw error
        }
    }

    /// Inserts a device; false if its id or hardware serial is already registered.
    private func insertIfNew(_ device: Device) async throws -> Bool {
        do {
            try await store.insertDevice(device, audit: nil)
            return true
        } catch {
            if error.code == .duplicate { return false }
            throw error
        }
    }

    private func transition(_ device: Device, event: DeviceEvent, _ subject: Subject) throws -> DeviceState {
        var lifecycle = DeviceLifecycle(state: device.state)
        switch lifecycle.apply(event) {
        case .transition(let next):
            return next
        case .refuse(let reason):
            if device.state == .pendingApproval {
                throw Refusal(parkedReason: "device \(device.id) is waiting for operator approval", subject)
            }
            let code = CredentialLifecycle.deviceRefusal(device.state)?.code ?? .deviceNotActive
            throw Refusal(.forbidden, code, reason, subject)
        }
    }

    private func parseCSR(_ body: [UInt8], _ subject: Subject) throws -> EnrollmentRequest {
        guard let der = ESTBase64.decode(body), !der.isEmpty else {
            throw Refusal(
                .badRequest, .badRequest, "body is not base64 (application/pkcs10 is sent base64-encoded)", subject)
        }
        do {
            return try EnrollmentRequest(der: der)
        } catch {
            throw Refusal(.badRequest, .badRequest, error.reason, subject)
        }
    }

    private func checkedCSR(_ body: [UInt8], device: DeviceID, tenant: TenantID, _ subject: Subject) throws
        -> EnrollmentRequest
    {
        let csr = try parseCSR(body, subject)
        do {
            try csr.check(profile: profile)
        } catch {
            throw Refusal(.badRequest, .badRequest, error.reason, subject)
        }
        do {
            try csr.checkNames(device: device, tenant: tenant, trustDomain: hierarchy.trustDomain)
        } catch {
            throw Refusal(.forbidden, .nameNotAllowed, error.reason, subject)
        }
        return csr
    }

    /// Every LDevID a registered device was ever issued: none means its next one is its first.
    private func ldevids(_ device: DeviceID) async throws -> [Credential] {
        try await store.credentials(device: device).filter { $0.kind == .ldevid }
    }

    /// The serials an issuance supersedes: the device's `active` LDevIDs.
    private static func activeSerials(_ ldevids: [Credential]) -> [SerialNumber] {
        ldevids.filter { $0.status == .active }.map(\.serial)
    }

    private func issue(
        _ request: Request, subject: Subject, device: Device, registration: Device?, next: DeviceState,
        csr: EnrollmentRequest, consumeToken: String?, supersede: [SerialNumber], overlapDeadline: Date? = nil
    ) async throws -> Verdict {
        let now = state.clock.now()
        // The CA active now signs: after `devid ca issuing activate`, the next request on any listener.
        let signer = state.issuers.snapshot.active
        let revocation = await state.revocation.endpoints(caName: signer.crlName)
        // A serial another certificate already has (127 random bits: never, short of a broken generator) is
        // refused by the registry's unique constraint and nothing is stored; the certificate is signed again under
        // a new serial, at most three times.
        var attempt = 0
        while true {
            attempt += 1
            let certificate = try signer.ca.issueLDevID(
                device: device.id, tenant: device.tenant, trustDomain: hierarchy.trustDomain, publicKey: csr.publicKey,
                profile: profile, now: now, revocation: revocation)
            do {
                return try await issue(
                    request, subject: subject, device: device, registration: registration, next: next,
                    consumeToken: consumeToken, supersede: supersede, overlapDeadline: overlapDeadline,
                    certificate: certificate, now: now)
            } catch is SerialCollision where attempt < 3 {
                state.logger.error(
                    "serial collision: signing again under a new serial",
                    metadata: ["serial": "\(certificate.devidSerial)", "device": "\(device.id)"])
            }
        }
    }

    /// The registry already holds another certificate under the serial just signed; nothing was stored.
    private struct SerialCollision: Error {}

    private func issue(
        _ request: Request, subject: Subject, device: Device, registration: Device?, next: DeviceState,
        consumeToken: String?, supersede: [SerialNumber], overlapDeadline: Date?, certificate: Certificate, now: Date
    ) async throws -> Verdict {
        // Encoded once: the registry's copy, its fingerprint and the answer are the same bytes.
        let der = certificate.derBytes
        let credential = Credential(
            serial: certificate.devidSerial, deviceID: device.id, kind: .ldevid,
            issuer: String(describing: certificate.issuer), notBefore: certificate.notValidBefore,
            notAfter: certificate.notValidAfter, publicKeySHA256: KeyMaterial.fingerprint(certificate.publicKey),
            certificateSHA256: Hex.encode(SHA256.hash(data: der)), der: der, status: .active, createdAt: now)
        let audit = state.auditor.event(
            actor: subject.actor, action: request.kind.action, outcome: .success,
            reason: "issued LDevID \(credential.serial) via \(subject.method)"
                + (supersede.isEmpty ? "" : "; superseded \(supersede.map(\.rawValue).joined(separator: ","))"),
            tenant: device.tenant, device: device.id, serial: credential.serial)
        var registration = registration
        registration?.state = next
        registration?.lastSeen = now
        let issuance = Issuance(
            credential: credential, registerDevice: registration,
            transition: registration == nil ? (expected: device.state, next: next) : nil,
            consumeToken: consumeToken, supersede: supersede, overlapDeadline: overlapDeadline ?? now.addingTimeInterval(
                profile.policy.rotation.overlap), now: now, audit: audit)
        guard try await record(issuance) else {
            if let holder = try await store.credential(serial: credential.serial),
                holder.certificateSHA256 != credential.certificateSHA256
            {
                throw SerialCollision()
            }
            // A concurrent request changed the device, spent the token or renewed the credential between our checks
            // and the write.
            var refusal = LifecycleRefusal(
                .conflict, "the device, its claim token or its credential changed during enrollment; retry")
            if let consumeToken, let token = try await store.claimToken(id: consumeToken),
                let reason = ClaimTokens.refusal(token, now: now)
            {
                refusal = reason
            }
            throw Refusal(.forbidden, refusal, subject)
        }
        let kind = subject.kind ?? request.kind.metricKind
        state.metrics.enrollment(tenant: device.tenant, kind: kind, result: .issued)
        if kind == .enroll { state.metrics.onboarded(tenant: device.tenant, seconds: now.timeIntervalSince(device.createdAt)) }
        // The decision index and the brokers follow the registry's change stream (RegistryChangeRouter).
        return .issued(der: der)
    }

    private func audit(_ request: Request, _ subject: Subject?, outcome: AuditEvent.Outcome, reason: String) async {
        await state.auditor.record(
            actor: subject?.actor ?? "anonymous", action: request.kind.action, outcome: outcome, reason: reason,
            tenant: subject?.tenant, device: subject?.device, serial: subject?.serial)
    }

    /// A refusal on the way; carries what is known of the requester for the audit event.
    /// The HTTP status is chosen here, at the edge; the code and message come from the rules.
    struct Refusal: Error {
        var status: HTTPResponse.Status
        var code: RefusalCode
        var reason: String
        var subject: Subject?
        var parked = false

        /// A claim token that matches none, or no credential at all: the requester is nobody the registry knows.
        var isAnonymous: Bool {
            // An unknown EST label proves nothing either (anyone can make up labels): aggregated too.
            (code == .tokenInvalid || code == .authenticationRequired || (status == .notFound && subject == nil))
                && (subject == nil || subject?.actor == "anonymous") && subject?.serial == nil
        }

        init(_ status: HTTPResponse.Status, _ code: RefusalCode, _ reason: String, _ subject: Subject? = nil) {
            self.status = status
            self.code = code
            self.reason = reason
            self.subject = subject
        }

        init(_ status: HTTPResponse.Status, _ refusal: LifecycleRefusal, _ subject: Subject? = nil) {
            self.init(status, refusal.code, refusal.message, subject)
        }

        init(parkedReason: String, _ subject: Subject) {
            self.status = .accepted
            self.code = .devicePendingApproval
            self.reason = parkedReason
            self.subject = subject
            self.parked = true
        }
    }
}
