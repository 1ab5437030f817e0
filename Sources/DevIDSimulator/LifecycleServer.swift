import DevIDCore
import DevIDServer
import DevIDStore
import Foundation

/// The server half of the simulation: DevID's enrollment, re-enrollment, check-in, decision and rotation-sweep
/// steps, in the order the server takes them (`EnrollmentService`, `DeviceStatusRoutes`, `DecisionEngine`,
/// `RotationSweeper`), asking the same rule types (``CredentialLifecycle``, ``DeviceLifecycle``,
/// ``DecisionEngine/evaluate(_:entry:fingerprint:tenant:dotted:now:)``) and writing the same registry (a real
/// ``Store``: every issuance, supersession, revocation and audit event is a registry transaction).
///
/// What it leaves out is the network and the cryptography: no TLS, no CSR, no signature. A certificate is its
/// registry row with a random serial and fingerprint, valid for the profile's lifetime. Those costs are measured
/// by the benchmarks (BENCHMARKS.md), not simulated.
final class LifecycleServer {
    enum Answer {
        /// `first`: the device's first LDevID, registered at `registeredAt`.
        case issued(Credential, late: Bool, first: Bool = false, registeredAt: Date? = nil)
        case refused(RefusalCode)
        /// Unreachable (nil) or busy: retry after this many seconds at the earliest.
        case unavailable(retryAfter: Double?)
    }

    enum CheckIn {
        case ok(superseded: Bool, rotationDue: Bool)
        case refused(RefusalCode)
        case unavailable(retryAfter: Double?)
    }

    enum Method {
        case idevid
        case token(String)
    }

    let store: any Store
    let start: Date
    let policy: RotationPolicy
    let lifetime: TimeInterval
    let backdate: TimeInterval
    let capacity: Int
    let retryAfter: Double
    /// The issuer name new certificates carry; a CA rollover changes it.
    var issuer = "CN=DevID Issuing CA 1"
    /// When the server (and the site's broker) is down: `[start, end)`.
    var outage: Fleet.Interval?
    /// The server's metrics and health history, when the report includes the dashboard.
    var health: SimulatedHealth?
    private var random: SimulationRandom
    private var admittedSecond: Int64 = -1
    private var admittedCount = 0
    private var tenants: [TenantID: DecisionEngine.TenantEntry] = [:]
    private var lifecycle: CredentialLifecycle { CredentialLifecycle(policy: policy) }

    init(store: any Store, scenario: Scenario) {
        self.store = store
        self.start = scenario.start
        self.policy = scenario.rotation.policy
        self.lifetime = scenario.rotation.lifetime
        self.backdate = ProfilePolicy.ldevid.backdate
        self.capacity = scenario.server.enrollmentsPerSecond
        self.retryAfter = scenario.server.retryAfterSeconds
        self.random = SimulationRandom(seed: scenario.seed, stream: 4)
    }

    func date(_ t: Double) -> Date { start.addingTimeInterval(t) }

    func isDown(at t: Double) -> Bool {
        guard let outage else { return false }
        return t >= outage.start && t < outage.end
    }

    /// The enrollment gate: at most `capacity` issuances in one second; beyond it `503` with `Retry-After`, decided
    /// before any work, as the server's `EnrollmentGate` does.
    private func admit(_ t: Double) -> Bool {
        let second = Int64(t.rounded(.down))
        if second != admittedSecond {
            admittedSecond = second
            admittedCount = 0
        }
        guard admittedCount < capacity else { return false }
        admittedCount += 1
        return true
    }

    // MARK: Enrollment (simpleenroll)

    func enroll(_ device: Fleet.Device, method: Method, tenant: TenantID, at t: Double) async throws -> Answer {
        let answer = try await enrollment(device, method: method, at: t)
        count(answer, tenant: tenant, kind: nil, at: t)
        return answer
    }

    private func enrollment(_ device: Fleet.Device, method: Method, at t: Double) async throws -> Answer {
        if isDown(at: t) { return .unavailable(retryAfter: nil) }
        guard admit(t) else { return .unavailable(retryAfter: retryAfter) }
        let now = date(t)
        let actor = "device:\(device.id)"
        guard let record = try await store.device(device.id) else {
            // Not in the registry: only a claim token may create it.
            guard case .token(let id) = method, let token = try await store.claimToken(id: id) else {
                return .refused(.idevidNotAllowed)
            }
            if let refusal = Self.tokenRefusal(token, now: now) { return .refused(refusal) }
            let grant = CredentialLifecycle.TokenGrant(tenant: token.tenant, device: token.device, lot: token.lot)
            if let refusal = CredentialLifecycle.claimTokenEnrollment(grant, requested: device.id, existing: nil) {
                return .refused(refusal.code)
            }
            var lifecycle = DeviceLifecycle(state: .manufactured)
            guard case .transition(let next) = lifecycle.enroll() else { return .refused(.deviceNotActive) }
            let registration = Device(
                id: device.id, tenant: token.tenant, hardwareSerial: device.hardwareSerial, lot: token.lot,
                state: next, createdAt: now, lastSeen: now, enrolledWithToken: token.id)
            return try await issue(
                device: registration, actor: actor, method: "claim token", registration: registration,
                transition: nil, consumeToken: token.id, supersede: [], late: false, first: true, registeredAt: now,
                now: now)
        }
        switch method {
        case .idevid:
            guard record.idevidSerial != nil else { return .refused(.idevidNotAllowed) }
            if record.idevidRevokedAt != nil { return .refused(.idevidRevoked) }
        case .token(let id):
            guard let token = try await store.claimToken(id: id) else { return .refused(.tokenInvalid) }
            if let refusal = Self.tokenRefusal(token, now: now) { return .refused(refusal) }
            let grant = CredentialLifecycle.TokenGrant(tenant: token.tenant, device: token.device, lot: token.lot)
            if let refusal = CredentialLifecycle.claimTokenEnrollment(
                grant, requested: device.id, existing: DeviceSnapshot(record))
            {
                return .refused(refusal.code)
            }
        }
        var lifecycle = DeviceLifecycle(state: record.state)
        guard case .transition(let next) = lifecycle.enroll() else {
            return .refused(CredentialLifecycle.deviceRefusal(record.state)?.code ?? .deviceNotActive)
        }
        let ldevids = try await store.credentials(device: device.id).filter { $0.kind == .ldevid }
        let prior = ldevids.filter { $0.status == .active || $0.status == .superseded }.map(\.serial)
        var consume: String?
        if case .token(let id) = method { consume = id }
        return try await issue(
            device: record, actor: actor, method: consume == nil ? "idevid" : "claim token", registration: nil,
            transition: (record.state, next), consumeToken: consume, supersede: prior, late: false,
            first: ldevids.isEmpty, registeredAt: record.createdAt, now: now)
    }

    private static func tokenRefusal(_ token: ClaimToken, now: Date) -> RefusalCode? {
        if token.revoked { return .tokenRevoked }
        if token.expiresAt <= now { return .tokenExpired }
        if token.usesRemaining <= 0 { return .tokenUsedUp }
        return nil
    }

    // MARK: Re-enrollment (simplereenroll with the current LDevID)

    func reenroll(_ device: Fleet.Device, presenting serial: SerialNumber, tenant: TenantID, at t: Double) async throws
        -> Answer
    {
        let answer = try await reenrollment(device, presenting: serial, at: t)
        count(answer, tenant: tenant, kind: .reenroll, at: t)
        return answer
    }

    /// What `EnrollmentService` counts: issued by kind, refused, and refusals about who the device is as failed
    /// authentications (stage `est`); a first LDevID's onboarding time.
    private func count(_ answer: Answer, tenant: TenantID, kind: ServerMetrics.EnrollmentKind?, at t: Double) {
        guard let health else { return }
        health.at(date(t))
        switch answer {
        case .issued(_, let late, let first, let registeredAt):
            let issued: ServerMetrics.EnrollmentKind =
                late ? .lateRenewal : kind ?? (first ? .enroll : .bootstrap)
            health.metrics.enrollment(tenant: tenant, kind: issued, result: .issued)
            if first, let registeredAt { health.metrics.onboarded(tenant: tenant, seconds: date(t).timeIntervalSince(registeredAt)) }
        case .refused(let code):
            health.metrics.enrollment(tenant: tenant, kind: kind ?? .enroll, result: .refused)
            if let reason = AuthFailureReason(code) { health.metrics.authFailure(.est, reason, tenant: tenant) }
        case .unavailable:
            health.metrics.enrollment(tenant: tenant, kind: kind ?? .enroll, result: .refused)
        }
    }

    private func reenrollment(_ device: Fleet.Device, presenting serial: SerialNumber, at t: Double) async throws
        -> Answer
    {
        if isDown(at: t) { return .unavailable(retryAfter: nil) }
        guard admit(t) else { return .unavailable(retryAfter: retryAfter) }
        let now = date(t)
        guard let current = try await store.credential(serial: serial), current.deviceID == device.id else {
            return .refused(.credentialUnknown)
        }
        if let refusal = lifecycle.authenticate(CredentialSnapshot(current), at: now) { return .refused(refusal.code) }
        guard let record = try await store.device(device.id) else { return .refused(.deviceUnknown) }
        var deviceLifecycle = DeviceLifecycle(state: record.state)
        guard case .transition(let next) = deviceLifecycle.reenroll() else {
            return .refused(CredentialLifecycle.deviceRefusal(record.state)?.code ?? .deviceNotActive)
        }
        var successor: Credential?
        if current.status == .superseded, let next = current.replacedBy {
            successor = try await store.credential(serial: next)
        }
        let renewal: CredentialLifecycle.Renewal
        switch lifecycle.reenrollment(CredentialSnapshot(current), successor: successor.map(CredentialSnapshot.init), at: now) {
        case .success(let planned): renewal = planned
        case .failure(let refusal): return .refused(refusal.code)
        }
        try await confirmFirstUse(current, now: now)
        return try await issue(
            device: record, actor: "device:\(device.id)", action: "est.reenroll", method: renewal.late ? "ldevid (late renewal)" : "ldevid",
            registration: nil, transition: (record.state, next), consumeToken: nil, supersede: renewal.supersede,
            late: renewal.late, now: now)
    }

    private func confirmFirstUse(_ credential: Credential, now: Date) async throws {
        guard credential.status == .active, credential.confirmedAt == nil, credential.notAfter > now else { return }
        _ = try await store.confirmCredential(
            serial: credential.serial, at: now,
            audit: AuditEvent(
                time: now, actor: "device:\(credential.deviceID)", action: "rotation.confirm", outcome: .success,
                reason: "credential \(credential.serial) seen in use for the first time", device: credential.deviceID,
                serial: credential.serial))
    }

    private func issue(
        device: Device, actor: String, action: String = "est.enroll", method: String, registration: Device?,
        transition: (expected: DeviceState, next: DeviceState)?, consumeToken: String?, supersede: [SerialNumber],
        late: Bool, first: Bool = false, registeredAt: Date? = nil, now: Date
    ) async throws -> Answer {
        let serial = SerialNumber(bytes: random.serialBytes())
        let credential = Credential(
            serial: serial, deviceID: device.id, kind: .ldevid, issuer: issuer,
            notBefore: now.addingTimeInterval(-backdate), notAfter: now.addingTimeInterval(lifetime),
            publicKeySHA256: hex(), certificateSHA256: hex(), der: [], status: .active, createdAt: now)
        let audit = AuditEvent(
            time: now, actor: actor, action: action,
            outcome: .success,
            reason: "issued LDevID \(serial) via \(method)"
                + (supersede.isEmpty ? "" : "; superseded \(supersede.map(\.rawValue).joined(separator: ","))"),
            tenant: device.tenant, device: device.id, serial: serial)
        let issuance = Issuance(
            credential: credential, registerDevice: registration, transition: transition, consumeToken: consumeToken,
            supersede: supersede, overlapDeadline: now.addingTimeInterval(policy.overlap), now: now, audit: audit)
        let failure: StoreError?
        do {
            try await store.recordIssuance(issuance)
            failure = nil
        } catch {
            failure = error
        }
        if let failure {
            // A concurrent change won (the device moved, the token was spent): refused, nothing stored.
            guard failure.code == .conflict || failure.code == .duplicate else { throw failure }
            return .refused(.conflict)
        }
        return .issued(credential, late: late, first: first, registeredAt: registeredAt)
    }

    /// 32 random bytes in hex: a stand-in for a fingerprint, unique as the real one is.
    private func hex() -> String {
        var text = ""
        for _ in 0..<4 { text += String(random.next(), radix: 16).leftPadded(16) }
        return text
    }

    // MARK: Check-in (GET /v1/device/status)

    func checkIn(_ device: Fleet.Device, presenting serial: SerialNumber, at t: Double) async throws -> CheckIn {
        if isDown(at: t) { return .unavailable(retryAfter: nil) }
        let now = date(t)
        guard let current = try await store.credential(serial: serial), current.deviceID == device.id else {
            return .refused(.credentialUnknown)
        }
        guard let record = try await store.device(device.id) else { return .refused(.deviceUnknown) }
        if let refusal = lifecycle.checkIn(CredentialSnapshot(current), at: now)
            ?? CredentialLifecycle.deviceRefusal(record.state)
        {
            if let health, let reason = AuthFailureReason(refusal.code) {
                health.at(now)
                health.metrics.authFailure(.deviceStatus, reason, tenant: record.tenant)
            }
            return .refused(refusal.code)
        }
        try await confirmFirstUse(current, now: now)
        try await store.recordSeen(device.id, at: now)
        return .ok(superseded: current.status == .superseded, rotationDue: current.rotationDue)
    }

    // MARK: Decisions (POST /v1/authz/mqtt, connect)

    /// The broker asks whether the certificate with `fingerprint` may connect; nil while the server is down.
    func decide(_ device: Fleet.Device, tenant: TenantID, fingerprint: String, at t: Double) async throws -> AuthzDecision? {
        if isDown(at: t) { return nil }
        let now = date(t)
        guard let entry = try await DecisionEngine.loadDevice(device.id, store: store, now: now) else {
            return AuthzDecision.deny(.unknownDevice, device: device.id, tenant: tenant)
        }
        let tenantEntry: DecisionEngine.TenantEntry
        if let cached = tenants[tenant] {
            tenantEntry = cached
        } else {
            tenantEntry = try await DecisionEngine.loadTenant(tenant, store: store, now: now)
            tenants[tenant] = tenantEntry
        }
        let query = DecisionEngine.Query(subject: .fingerprint(fingerprint), action: .connect, claimedTenant: tenant)
        switch DecisionEngine.evaluate(
            query, entry: entry, fingerprint: fingerprint, tenant: tenantEntry, dotted: DottedIdentifiers(), now: now)
        {
        case .decided(let decision, let confirm):
            if let health, let reason = AuthFailureReason(decision.reason) {
                health.at(now)
                health.metrics.authFailure(.authz, reason, tenant: tenant)
            }
            if let confirm, let credential = try await store.credential(serial: confirm) {
                try await confirmFirstUse(credential, now: now)
            }
            return decision
        default:
            return nil
        }
    }

    // MARK: The rotation sweeper

    /// Revokes superseded credentials whose successor was confirmed (after the confidence period) or whose overlap
    /// ended, as `RotationSweeper` does.
    func sweep(at t: Double) async throws -> Int {
        let now = date(t)
        var total = 0
        while true {
            let due = try await store.supersededDue(now: now, confidence: policy.confidence, limit: 5_000)
            if due.isEmpty { break }
            total += try await store.revokeCredentials(
                due.map(\.serial), reason: .superseded, at: now,
                audit: AuditEvent(
                    time: now, actor: "system", action: "rotation.revoke_superseded", outcome: .success,
                    reason: "revoked \(due.count) superseded credentials"))
        }
        return total
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
