import DevIDCore
import DevIDPKI
import DevIDStore
import Foundation
import HTTPTypes
import Logging
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
    }

    struct Request: Sendable {
        var kind: Kind
        /// The `/.well-known/est/<label>/...` segment: selects a tenant.
        var label: String?
        var peerChain: [Certificate]?
        var credential: ESTHTTPCredential
        /// The request body, base64 as sent.
        var body: [UInt8]
    }

    enum Verdict: Sendable {
        case issued(Certificate)
        case parked(retryAfter: Int, reason: String)
        case refused(status: HTTPResponse.Status, reason: String, challenge: Bool)
    }

    /// Who the request proved to be, before the CSR is looked at.
    struct Subject {
        var actor: String
        var method: String
        var tenant: TenantID?
        var device: DeviceID?
        var serial: SerialNumber?
    }

    let state: ServerState

    private var store: any Store { state.store }
    private var hierarchy: CAHierarchy { state.hierarchy }
    private var profile: CertificateProfile { CertificateProfile(kind: .ldevid, policy: state.configuration.ldevidPolicy) }

    func handle(_ request: Request) async -> Verdict {
        do {
            return try await decide(request)
        } catch let refusal as Refusal {
            await audit(request, refusal.subject, outcome: .denied, reason: refusal.reason)
            if refusal.parked {
                return .parked(retryAfter: state.configuration.approvalRetryAfterSeconds, reason: refusal.reason)
            }
            return .refused(status: refusal.status, reason: refusal.reason, challenge: refusal.status == .unauthorized)
        } catch {
            state.logger.error("enrollment failed", metadata: ["error": "\(error)"])
            await audit(request, nil, outcome: .failure, reason: "internal error")
            return .refused(status: .internalServerError, reason: "internal error", challenge: false)
        }
    }

    // MARK: - Decision

    private func decide(_ request: Request) async throws -> Verdict {
        let labelTenant = try await tenant(forLabel: request.label)
        if let chain = request.peerChain, let identity = PeerIdentity.classify(chain: chain, hierarchy: hierarchy) {
            switch (identity, request.kind) {
            case (.ldevid(let device, let tenant, let serial), .reenroll):
                return try await reenroll(request, device: device, tenant: tenant, serial: serial, labelTenant: labelTenant)
            case (.idevid(let hardwareSerial, let serial, let ownManufacturer), .enroll):
                return try await enrollWithIDevID(
                    request, hardwareSerial: hardwareSerial, serial: serial, ownManufacturer: ownManufacturer,
                    labelTenant: labelTenant)
            case (.ldevid(let device, let tenant, let serial), .enroll):
                if case .bearer = request.credential { break }
                if case .basic = request.credential { break }
                throw Refusal(
                    .forbidden, "an LDevID renews with simplereenroll",
                    Subject(actor: "device:\(device)", method: "ldevid", tenant: tenant, device: device, serial: serial))
            case (.idevid(_, let serial, _), .reenroll):
                throw Refusal(
                    .forbidden, "simplereenroll needs the device's current LDevID, not its IDevID",
                    Subject(actor: "anonymous", method: "idevid", serial: serial))
            case (.unrecognized(let serial), _):
                throw Refusal(
                    .forbidden, "client certificate is neither an IDevID nor an LDevID",
                    Subject(actor: "anonymous", method: "tls", serial: serial))
            }
        }
        if request.kind == .reenroll {
            throw Refusal(.unauthorized, "simplereenroll requires the device's current LDevID as TLS client certificate")
        }
        switch request.credential {
        case .none:
            throw Refusal(.unauthorized, "authentication required: an IDevID client certificate or a claim token")
        case .malformed:
            throw Refusal(.unauthorized, "unreadable Authorization header")
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
            throw Refusal(.notFound, "unknown EST label")
        }
        return tenant
    }

    private func enrollWithIDevID(
        _ request: Request, hardwareSerial: String, serial: SerialNumber, ownManufacturer: Bool, labelTenant: Tenant?
    ) async throws -> Verdict {
        var subject = Subject(actor: "idevid:\(hardwareSerial)", method: "idevid", serial: serial)
        let now = state.clock.now()
        var registration: Device?
        let device: Device
        if let known = try await store.device(hardwareSerial: hardwareSerial) {
            device = known
        } else {
            guard let tenant = labelTenant, tenant.policy.autoRegister || tenant.policy.manualApproval else {
                throw Refusal(.forbidden, "device \(hardwareSerial) is not in the allowlist", subject)
            }
            let id = DeviceID(derivedFromHardwareSerial: hardwareSerial)
            subject.tenant = tenant.id
            subject.device = id
            if tenant.policy.manualApproval {
                let parked = Device(
                    id: id, tenant: tenant.id, hardwareSerial: hardwareSerial, lot: nil, state: .pendingApproval,
                    createdAt: now, lastSeen: now, idevidSerial: ownManufacturer ? serial : nil)
                guard try await insertIfNew(parked) else {
                    throw Refusal(.conflict, "device id \(id) is already registered with another hardware serial", subject)
                }
                throw Refusal(parkedReason: "device \(id) is waiting for operator approval (devid device approve \(id))", subject)
            }
            registration = Device(
                id: id, tenant: tenant.id, hardwareSerial: hardwareSerial, lot: nil, state: .manufactured, createdAt: now,
                idevidSerial: ownManufacturer ? serial : nil)
            device = registration!
        }
        subject.tenant = device.tenant
        subject.device = device.id
        subject.actor = "device:\(device.id)"
        if let labelTenant, labelTenant.id != device.tenant {
            throw Refusal(.forbidden, "device belongs to another tenant", subject)
        }
        let next = try transition(device, event: .enroll, subject)
        // The registry knows this device's IDevID (DevID's manufacturer CA issued it): only that certificate
        // enrolls, and never once it is revoked, also after a re-provisioning made the device enrollable again.
        if let registered = device.idevidSerial {
            guard registered == serial else {
                throw Refusal(.forbidden, "IDevID serial \(serial) is not the one registered for device \(device.id)", subject)
            }
            if device.idevidRevokedAt != nil {
                let reason = device.idevidRevocationReason ?? .unspecified
                throw Refusal(.forbidden, "IDevID of device \(device.id) is revoked (\(reason.rawValue))", subject)
            }
        }
        let csr = try checkedCSR(request.body, device: device.id, tenant: device.tenant, subject)
        return try await issue(
            request, subject: subject, device: device, registration: registration, next: next, csr: csr,
            consumeToken: nil, supersede: try await activeSerials(device.id))
    }

    private func enrollWithToken(
        _ request: Request, secret: String, deviceHint: String?, labelTenant: Tenant?
    ) async throws -> Verdict {
        var subject = Subject(actor: "anonymous", method: "claim-token")
        let presented = ClaimTokens.hash(secret)
        guard let token = try await store.claimToken(secretHash: presented),
            constantTimeEquals(Array(token.secretHash.utf8), Array(presented.utf8))
        else {
            throw Refusal(.unauthorized, "invalid claim token", subject)
        }
        subject.actor = "token:\(token.id)"
        subject.tenant = token.tenant
        let now = state.clock.now()
        if let reason = ClaimTokens.refusal(token, now: now) { throw Refusal(.forbidden, reason, subject) }
        if let labelTenant, labelTenant.id != token.tenant {
            throw Refusal(.forbidden, "claim token is for another tenant", subject)
        }
        let deviceID: DeviceID
        if let hint = deviceHint {
            guard let id = DeviceID(rawValue: hint) else { throw Refusal(.badRequest, "invalid device id", subject) }
            if let bound = token.device, bound != id {
                subject.device = id
                throw Refusal(.forbidden, "claim token is for another device", subject)
            }
            deviceID = id
        } else if let bound = token.device {
            deviceID = bound
        } else {
            let parsed = try parseCSR(request.body, subject)
            guard let cn = parsed.requestedCommonName, let id = DeviceID(rawValue: cn) else {
                throw Refusal(
                    .badRequest, "device id required: give it as the Basic user name or the CSR common name", subject)
            }
            deviceID = id
        }
        subject.device = deviceID
        var registration: Device?
        let device: Device
        if let known = try await store.device(deviceID) {
            guard known.tenant == token.tenant else { throw Refusal(.forbidden, "device belongs to another tenant", subject) }
            device = known
        } else {
            registration = Device(
                id: deviceID, tenant: token.tenant, hardwareSerial: "claim:\(deviceID)", lot: nil,
                state: .manufactured, createdAt: now)
            device = registration!
        }
        let next = try transition(device, event: .enroll, subject)
        let csr = try checkedCSR(request.body, device: device.id, tenant: device.tenant, subject)
        return try await issue(
            request, subject: subject, device: device, registration: registration, next: next, csr: csr,
            consumeToken: token.id, supersede: try await activeSerials(device.id))
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
            throw Refusal(.forbidden, "device is not in the registry", subject)
        }
        if let labelTenant, labelTenant.id != device.tenant {
            throw Refusal(.forbidden, "device belongs to another tenant", subject)
        }
        let next = try transition(device, event: .reenroll, subject)
        var supersede: [SerialNumber] = []
        if current.notAfter <= now {
            // Late renewal: expired within the grace window, and only the newest credential of the lineage.
            guard current.status == .active, now < current.notAfter.addingTimeInterval(policy.grace) else {
                throw Refusal(.forbidden, "credential has expired", subject)
            }
            subject.method = "ldevid (late renewal)"
            supersede = [current.serial]
        } else if current.status == .active {
            supersede = [current.serial]
        } else {
            // Retrying with the old certificate during its overlap is allowed only while the successor has never
            // been seen: it is then given up, and the old credential is re-pointed at the new one (keeping its
            // earlier overlap deadline). Once the successor is in use, the old certificate cannot mint another.
            guard let successor = current.replacedBy, let lost = try await store.credential(serial: successor),
                lost.status == .active, lost.confirmedAt == nil
            else {
                throw Refusal(.forbidden, "credential superseded and its successor is in use", subject)
            }
            supersede = [lost.serial, current.serial]
        }
        let csr = try checkedCSR(request.body, device: device.id, tenant: device.tenant, subject)
        if profile.policy.requireNewKeyOnReenroll {
            let newKey = KeyMaterial.fingerprint(csr.publicKey)
            let used = try await store.credentials(device: deviceID).map(\.publicKeySHA256)
            if used.contains(newKey) {
                throw Refusal(.badRequest, "re-enrollment requires a new key (this key was used before)", subject)
            }
        }
        return try await issue(
            request, subject: subject, device: device, registration: nil, next: next, csr: csr, consumeToken: nil,
            supersede: supersede, overlapDeadline: now.addingTimeInterval(policy.overlap))
    }

    /// The registry's view of a presented LDevID: refused when revoked, superseded past its overlap, or expired
    /// beyond the grace window. Confirms a credential the first time it authenticates (rotation step 3).
    func requireUsableCredential(
        serial: SerialNumber, device: DeviceID, now: Date, _ subject: Subject
    ) async throws -> Credential {
        guard let credential = try await store.credential(serial: serial), credential.deviceID == device else {
            throw Refusal(.forbidden, "client certificate is not in the registry", subject)
        }
        let grace = profile.policy.rotation.grace
        switch credential.status {
        case .revoked:
            throw Refusal(.forbidden, "credential is revoked", subject)
        case .expired:
            throw Refusal(.forbidden, "credential has expired", subject)
        case .superseded:
            guard let deadline = credential.overlapDeadline, now < deadline else {
                throw Refusal(.forbidden, "credential superseded and its overlap has ended", subject)
            }
        case .active:
            break
        }
        if credential.notAfter.addingTimeInterval(grace) <= now {
            throw Refusal(.forbidden, "credential has expired", subject)
        }
        if credential.status == .active, credential.confirmedAt == nil, credential.notAfter > now {
            let first = try await store.confirmCredential(
                serial: serial, at: now,
                audit: state.auditor.event(
                    actor: subject.actor, action: "rotation.confirm", outcome: .success,
                    reason: "credential \(serial) seen in use for the first time", tenant: subject.tenant,
                    device: device, serial: serial))
            _ = first
        }
        return credential
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
            throw Refusal(.forbidden, reason, subject)
        }
    }

    private func parseCSR(_ body: [UInt8], _ subject: Subject) throws -> EnrollmentRequest {
        guard let der = ESTBase64.decode(body), !der.isEmpty else {
            throw Refusal(.badRequest, "body is not base64 (application/pkcs10 is sent base64-encoded)", subject)
        }
        do {
            return try EnrollmentRequest(der: der)
        } catch {
            throw Refusal(.badRequest, error.reason, subject)
        }
    }

    private func checkedCSR(_ body: [UInt8], device: DeviceID, tenant: TenantID, _ subject: Subject) throws
        -> EnrollmentRequest
    {
        let csr = try parseCSR(body, subject)
        do {
            try csr.check(profile: profile)
        } catch {
            throw Refusal(.badRequest, error.reason, subject)
        }
        do {
            try csr.checkNames(device: device, tenant: tenant, trustDomain: hierarchy.trustDomain)
        } catch {
            throw Refusal(.forbidden, error.reason, subject)
        }
        return csr
    }

    private func activeSerials(_ device: DeviceID) async throws -> [SerialNumber] {
        try await store.credentials(device: device).filter { $0.status == .active && $0.kind == .ldevid }.map(\.serial)
    }

    private func issue(
        _ request: Request, subject: Subject, device: Device, registration: Device?, next: DeviceState,
        csr: EnrollmentRequest, consumeToken: String?, supersede: [SerialNumber], overlapDeadline: Date? = nil
    ) async throws -> Verdict {
        let now = state.clock.now()
        let certificate = try hierarchy.issuing.issueLDevID(
            device: device.id, tenant: device.tenant, trustDomain: hierarchy.trustDomain, publicKey: csr.publicKey,
            profile: profile, now: now, revocation: await state.revocation.endpoints(caName: "issuing"))
        let credential = Credential(
            serial: certificate.devidSerial, deviceID: device.id, kind: .ldevid,
            issuer: String(describing: certificate.issuer), notBefore: certificate.notValidBefore,
            notAfter: certificate.notValidAfter, publicKeySHA256: KeyMaterial.fingerprint(certificate.publicKey),
            certificateSHA256: certificate.sha256Fingerprint, der: certificate.derBytes, status: .active,
            createdAt: now)
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
            // A concurrent request changed the device or spent the token between our checks and the write.
            var refusalReason = "the device or its claim token changed during enrollment; retry"
            if let consumeToken, let token = try await store.claimToken(id: consumeToken),
                let reason = ClaimTokens.refusal(token, now: now)
            {
                refusalReason = reason
            }
            throw Refusal(.forbidden, refusalReason, subject)
        }
        state.authz.invalidate(device: device.id)  // superseded credentials and the device state changed
        // A device that just became active gets its broker ACL block (and a re-enrolled one keeps it).
        if registration != nil || device.state != next {
            await state.brokers.identityChanged(devices: [device.id], endSessions: false, reason: "enrolled")
        }
        return .issued(certificate)
    }

    private func audit(_ request: Request, _ subject: Subject?, outcome: AuditEvent.Outcome, reason: String) async {
        await state.auditor.record(
            actor: subject?.actor ?? "anonymous", action: request.kind.action, outcome: outcome, reason: reason,
            tenant: subject?.tenant, device: subject?.device, serial: subject?.serial)
    }

    /// A refusal on the way; carries what is known of the requester for the audit event.
    struct Refusal: Error {
        var status: HTTPResponse.Status
        var reason: String
        var subject: Subject?
        var parked = false

        init(_ status: HTTPResponse.Status, _ reason: String, _ subject: Subject? = nil) {
            self.status = status
            self.reason = reason
            self.subject = subject
        }

        init(parkedReason: String, _ subject: Subject) {
            self.status = .accepted
            self.reason = parkedReason
            self.subject = subject
            self.parked = true
        }
    }
}
