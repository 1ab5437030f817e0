import DevIDAgent
import DevIDCore
import DevIDServer
import DevIDStore
import Foundation

/// The fleet under DevID: each device runs the agent's decisions (``IdentityAction``, ``RotationPolicy``'s jittered
/// schedule, ``Backoff``, the rotate-now jitter), against ``LifecycleServer`` on a real registry, on virtual time.
///
/// Event-driven: a device wakes when the agent would act (its renewal time, a retry, its return from an absence)
/// or when the server has news for its next hourly check-in (a rotation campaign, a revocation). The periodic
/// check-ins in between change nothing and are not simulated one by one.
final class DevIDWorld {
    enum Event {
        case wake(Int, generation: Int)
        /// The device's broker session reconnects and the broker asks the decision API.
        case reconnect(Int)
        /// An operator re-provisions the device (`devid device reprovision`).
        case reprovision(Int)
        case lotArrives(Int)
        case endOfDay(Int)
        case outageEnds
        case deviceCompromise, idevidLeak, tokenLeak, caCompromise, caRevoke
    }

    struct Agent {
        var serial: SerialNumber?
        var fingerprint = ""
        var issuer = ""
        var notBefore = 0.0
        var notAfter = 0.0
        var renewalAt = 0.0
        var attempt = 0
        var generation = 0
        var hadIdentity = false
        /// A claim token the device holds: its lot's bulk token, or one an operator re-provisioned it with.
        var token: String?
        var rotateNowAt: Double?
        /// Since when its broker connection is refused, and why.
        var failing: (reason: String, since: Double)?
        var lastContact = -Double.infinity
    }

    let scenario: Scenario
    let fleet: Fleet
    let store: any Store
    let server: LifecycleServer
    private(set) var result: WorldResult
    private var agents: [Agent]
    private var queue = EventQueue<Event>()
    private var random: SimulationRandom
    private var lotTokens: [Int: String] = [:]
    private let backoff = Backoff()
    private let checkIn: Double
    private let progress: (Double) -> Void

    init(
        scenario: Scenario, fleet: Fleet, store: any Store, health: SimulatedHealth?,
        progress: @escaping (Double) -> Void
    ) {
        self.scenario = scenario
        self.fleet = fleet
        self.store = store
        self.server = LifecycleServer(store: store, scenario: scenario)
        self.server.health = health
        self.result = WorldResult(days: scenario.days)
        self.agents = Array(repeating: Agent(), count: fleet.devices.count)
        self.random = SimulationRandom(seed: scenario.seed, stream: 5)
        self.checkIn = scenario.checkInHours * 3_600
        self.progress = progress
    }

    private var policy: RotationPolicy { server.policy }

    /// The days (0-based) at whose end the dashboard is rendered: each event's day, the end of the CA rollover, and
    /// the last day.
    private var snapshotDays: Set<Int> {
        let events = scenario.events
        var days: Set<Int> = [scenario.days - 1]
        for day in [events.deviceCompromiseDay, events.idevidLeakDay, events.serverOutageDay, events.tokenLeakDay]
            .compactMap({ $0 })
        {
            days.insert(day)
        }
        if let day = events.caCompromiseDay {
            days.insert(day)
            days.insert(day + Int(events.caRolloverDays.rounded(.up)))
        }
        return days.filter { $0 < scenario.days }
    }
    private func date(_ t: Double) -> Date { server.date(t) }

    // MARK: Running

    func run() async throws -> WorldResult {
        try await setUp()
        while let (t, event) = queue.next() {
            guard t < fleet.span else { break }
            try await handle(event, at: t)
        }
        for index in agents.indices { settle(index, until: fleet.span) }
        result.stranded = strandedDevices()
        let chain = try await store.auditChainReport(anchor: nil)
        if let broken = chain.brokenSequence { throw SimulationError("the audit chain is broken at entry \(broken)") }
        result.notes["audit_events"] = Int(chain.checked)
        result.notes["credentials"] = try await store.credentialCount()
        return result
    }

    private func setUp() async throws {
        let zero = date(0)
        for (index, tenant) in fleet.tenants.enumerated() {
            try await store.createTenant(
                Tenant(id: tenant, displayName: scenario.regions[index].name, createdAt: zero),
                audit: AuditEvent(time: zero, actor: "simulation", action: "tenant.create", outcome: .success, tenant: tenant))
        }
        for lot in fleet.lots {
            try await store.createLot(
                Lot(id: lot.id, tenant: fleet.tenants[lot.region], createdAt: date(min(lot.madeAt, 0))))
            if lot.initial {
                try await importLot(lot, at: 0)
                // The agent is rolled out to the installed fleet over the first day.
                for device in lot.devices { scheduleWake(device, at: random.unit() * 86_400) }
            } else {
                queue.schedule(.lotArrives(lot.index), at: lot.madeAt)
            }
        }
        for day in 0..<scenario.days { queue.schedule(.endOfDay(day), at: Double(day + 1) * 86_400 - 1) }
        let events = scenario.events
        if let day = events.serverOutageDay, day < scenario.days, events.serverOutageHours > 0 {
            let start = Double(day) * 86_400 + 10 * 3_600
            server.outage = Fleet.Interval(start: start, end: start + events.serverOutageHours * 3_600)
            queue.schedule(.outageEnds, at: start + events.serverOutageHours * 3_600)
        }
        func at(_ day: Int?, _ event: Event) {
            if let day, day < scenario.days { queue.schedule(event, at: Double(day) * 86_400 + 12 * 3_600) }
        }
        at(events.deviceCompromiseDay, .deviceCompromise)
        at(events.idevidLeakDay, .idevidLeak)
        at(events.tokenLeakDay, .tokenLeak)
        at(events.caCompromiseDay, .caCompromise)
    }

    /// The operator imports the lot's manifest (IDevID lots), or creates a bulk claim token bound to the lot.
    private func importLot(_ lot: Fleet.Lot, at t: Double) async throws {
        let now = date(t)
        let tenant = fleet.tenants[lot.region]
        if lot.usesToken {
            try await createLotToken(lot, at: t, uses: lot.devices.count)
            return
        }
        let devices = lot.devices.map { index in
            let device = fleet.devices[index]
            return Device(
                id: device.id, tenant: tenant, hardwareSerial: device.hardwareSerial, lot: lot.id, state: .manufactured,
                createdAt: now, idevidSerial: SerialNumber(bytes: random.serialBytes()))
        }
        _ = try await store.importDevices(
            devices,
            audit: AuditEvent(
                time: now, actor: "simulation", action: "device.import", outcome: .success,
                reason: "imported \(devices.count) devices of \(lot.id)", tenant: tenant))
    }

    private func createLotToken(_ lot: Fleet.Lot, at t: Double, uses: Int) async throws {
        let now = date(t)
        let tenant = fleet.tenants[lot.region]
        let id = "ct_" + String(random.next(), radix: 36)
        let token = ClaimToken(
            id: id, secretHash: String(random.next(), radix: 16), tenant: tenant, device: nil,
            expiresAt: now.addingTimeInterval(scenario.lots.tokenDays * 86_400), usesRemaining: max(1, uses),
            createdAt: now, lot: lot.id)
        try await store.insertClaimToken(
            token,
            audit: AuditEvent(
                time: now, actor: "simulation", action: "token.create", outcome: .success,
                reason: "created bulk claim token \(id) for \(lot.id)", tenant: tenant))
        lotTokens[lot.index] = id
        for index in lot.devices where agents[index].serial == nil && !agents[index].hadIdentity {
            agents[index].token = id
        }
    }

    private func scheduleWake(_ index: Int, at t: Double) {
        agents[index].generation += 1
        queue.schedule(.wake(index, generation: agents[index].generation), at: t)
    }

    private func retry(_ index: Int, at t: Double, retryAfter: Double?) {
        let delay = backoff.delay(attempt: agents[index].attempt, retryAfter: retryAfter, using: &random)
        agents[index].attempt += 1
        scheduleWake(index, at: t + max(1, delay))
    }

    // MARK: Events

    private func handle(_ event: Event, at t: Double) async throws {
        switch event {
        case .wake(let index, let generation):
            guard generation == agents[index].generation else { return }
            try await wake(index, at: t)
        case .reconnect(let index):
            if fleet.isOnline(index, at: t) { try await connect(index, at: t) }
        case .reprovision(let index):
            try await reprovision(index, at: t)
        case .lotArrives(let lot):
            try await importLot(fleet.lots[lot], at: t)
            for index in fleet.lots[lot].devices { scheduleWake(index, at: fleet.devices[index].installAt) }
        case .endOfDay(let day):
            _ = try await server.sweep(at: t)
            if let health = server.health {
                if snapshotDays.contains(day) {
                    try await health.snapshot(String(format: "day-%03d", day + 1), at: date(t))
                } else {
                    await health.flush(at: date(t))
                }
            }
            if day % 7 == 6 { try await healthSnapshot(at: t) }
            progress(Double(day + 1) / Double(scenario.days))
        case .outageEnds:
            // The site comes back: every broker session reconnects within five minutes.
            for index in agents.indices where agents[index].serial != nil && fleet.isOnline(index, at: t) {
                queue.schedule(.reconnect(index), at: t + random.unit() * 300)
            }
        case .deviceCompromise:
            let candidates = agents.indices.filter {
                agents[$0].serial != nil && !fleet.lots[fleet.devices[$0].lot].usesToken
            }
            guard !candidates.isEmpty else { return }
            let victim = candidates[Int(random.next() % UInt64(candidates.count))]
            try await revoke(.device(fleet.devices[victim].id), devices: [victim], event: "device_compromise", at: t)
        case .idevidLeak:
            let lot = fleet.lots[min(scenario.events.idevidLeakLot, fleet.lots.count) - 1]
            try await revoke(.lot(lot.id), devices: Array(lot.devices), event: "idevid_lot_leak", at: t)
        case .tokenLeak:
            try await tokenLeak(at: t)
        case .caCompromise:
            try await caCompromise(at: t)
        case .caRevoke:
            try await caRevoke(at: t)
        }
    }

    // MARK: The agent

    private func wake(_ index: Int, at t: Double) async throws {
        guard fleet.isOnline(index, at: t) else {
            // Away: the agent runs again when the device is back (power, coverage), a few seconds later.
            scheduleWake(index, at: fleet.nextOnline(index, from: t) + random.unit() * 60)
            return
        }
        noteClock(index, at: t)
        guard let serial = agents[index].serial else {
            try await bootstrap(index, at: t, recovering: agents[index].hadIdentity)
            return
        }
        let device = fleet.devices[index]
        var serverWantsRotation = false
        var superseded = false
        switch try await server.checkIn(device, presenting: serial, at: t) {
        case .unavailable(let retryAfter):
            retry(index, at: t, retryAfter: retryAfter)
            return
        case .refused(let code):
            if code != .credentialExpired {
                // Revoked, superseded beyond its overlap, unknown: beyond repair, bootstrap.
                try await bootstrap(index, at: t, recovering: true)
                return
            }
        case .ok(let isSuperseded, let rotationDue):
            agents[index].lastContact = t
            superseded = isSuperseded
            serverWantsRotation = isSuperseded || rotationDue
            if rotationDue && !isSuperseded {
                // The agent waits a random part of the rotate-now jitter, so a campaign is not a storm.
                if agents[index].rotateNowAt == nil {
                    agents[index].rotateNowAt = t + random.unit() * RotationAgent.defaultRotateNowJitter
                }
                if let at = agents[index].rotateNowAt, at > t {
                    scheduleWake(index, at: at)
                    return
                }
            }
        }
        let agent = agents[index]
        let action = IdentityAction.decide(
            notBefore: date(agent.notBefore), notAfter: date(agent.notAfter), scheduledRenewal: date(agent.renewalAt),
            now: date(t), policy: policy, serverWantsRotation: serverWantsRotation)
        switch action {
        case .keep(let until):
            agents[index].attempt = 0
            try await connect(index, at: t)
            scheduleWake(index, at: max(t + 1, until.timeIntervalSince(server.start)))
        case .renew, .lateRenewal:
            try await renew(index, presenting: serial, at: t, afterPowerLoss: superseded)
        case .bootstrap:
            result.devicesOfflineBeyondGrace += 1
            try await bootstrap(index, at: t, recovering: true)
        }
    }

    /// A device whose real-time clock reset since its last contact learns the time from the server at its check-in
    /// (the agent's `ServerClock`): counted, and harmless.
    private func noteClock(_ index: Int, at t: Double) {
        let last = agents[index].lastContact
        if fleet.devices[index].rtcResets.contains(where: { $0 > last && $0 <= t }) { result.clockCorrections += 1 }
    }

    private func renew(_ index: Int, presenting serial: SerialNumber, at t: Double, afterPowerLoss: Bool) async throws {
        let tenant = fleet.tenants[fleet.devices[index].region]
        switch try await server.reenroll(fleet.devices[index], presenting: serial, tenant: tenant, at: t) {
        case .unavailable(let retryAfter):
            retry(index, at: t, retryAfter: retryAfter)
        case .refused(let code):
            refusedEnrollment(code, at: t)
            if code == .conflict {
                retry(index, at: t, retryAfter: nil)
            } else {
                try await bootstrap(index, at: t, recovering: true)
            }
        case .issued(let credential, let late, _, _):
            result.noteEnrollment(at: t)
            WorldResult.count(&result.renewals, at: t)
            if late { result.lateRenewals += 1 }
            if afterPowerLoss { result.powerLossRecoveries += 1 }
            if random.chance(scenario.powerLossDuringRotation) {
                // Power fails after the server issued and before the device stored the certificate: the device
                // comes back with its old (now superseded) one.
                scheduleWake(index, at: t + 60 + random.exponential(mean: 2 * 3_600))
                return
            }
            try await install(index, credential, at: t)
        }
    }

    private func bootstrap(_ index: Int, at t: Double, recovering: Bool) async throws {
        let device = fleet.devices[index]
        let method: LifecycleServer.Method
        if let token = agents[index].token {
            method = .token(token)
        } else if fleet.lots[device.lot].usesToken {
            // No IDevID and no claim token: only an operator can bring it back.
            agents[index].serial = nil
            return
        } else {
            method = .idevid
        }
        switch try await server.enroll(device, method: method, tenant: fleet.tenants[device.region], at: t) {
        case .unavailable(let retryAfter):
            retry(index, at: t, retryAfter: retryAfter)
        case .refused(let code):
            refusedEnrollment(code, at: t)
            agents[index].serial = nil
            if case .token = method, code == .tokenRevoked || code == .tokenExpired || code == .tokenUsedUp {
                agents[index].token = nil
            }
            retry(index, at: t, retryAfter: nil)
        case .issued(let credential, _, _, _):
            result.noteEnrollment(at: t)
            if agents[index].hadIdentity {
                WorldResult.count(&result.bootstraps, at: t)
                // On its own: with its IDevID, not with a token an operator gave it.
                if recovering, case .idevid = method { result.bootstrapRecoveries += 1 }
            } else {
                WorldResult.count(&result.enrollments, at: t)
                if !fleet.lots[device.lot].initial { result.onboardingSeconds.append(t - device.installAt) }
            }
            agents[index].token = nil
            try await install(index, credential, at: t)
        }
    }

    private func refusedEnrollment(_ code: RefusalCode, at t: Double) {
        var series = result.authFailures["est_" + code.rawValue] ?? Array(repeating: 0, count: scenario.days)
        WorldResult.count(&series, at: t)
        result.authFailures["est_" + code.rawValue] = series
    }

    /// The new identity is stored and installed; the agent confirms it with a check-in and the device reconnects.
    private func install(_ index: Int, _ credential: Credential, at t: Double) async throws {
        let start = server.start
        var agent = agents[index]
        agent.serial = credential.serial
        agent.fingerprint = credential.certificateSHA256
        agent.issuer = credential.issuer
        agent.notBefore = credential.notBefore.timeIntervalSince(start)
        agent.notAfter = credential.notAfter.timeIntervalSince(start)
        let drawn = policy.scheduledRenewal(notBefore: credential.notBefore, notAfter: credential.notAfter, using: &random)
        agent.renewalAt = drawn.timeIntervalSince(start).rounded(.down)
        agent.attempt = 0
        agent.rotateNowAt = nil
        agent.hadIdentity = true
        agent.lastContact = t
        agents[index] = agent
        WorldResult.count(&result.expiring, at: agent.notAfter)
        _ = try await server.checkIn(fleet.devices[index], presenting: credential.serial, at: t + 1)
        try await connect(index, at: t + 1)
        scheduleWake(index, at: agent.renewalAt)
    }

    /// The broker session (re)connects: the broker asks the decision API. A refusal keeps failing at the device's
    /// reconnect rate until its identity changes.
    private func connect(_ index: Int, at t: Double) async throws {
        settle(index, until: t)
        guard agents[index].serial != nil else { return }
        let device = fleet.devices[index]
        guard let decision = try await server.decide(
            device, tenant: fleet.tenants[device.region], fingerprint: agents[index].fingerprint, at: t)
        else { return }
        result.noteDecision(at: t)
        if !decision.allowed { agents[index].failing = (decision.reason.rawValue, t) }
    }

    private func settle(_ index: Int, until t: Double) {
        guard let failing = agents[index].failing else { return }
        for segment in fleet.onlineSegments(index, from: failing.since, to: t) {
            result.accrueFailures(failing.reason, from: segment.start, to: segment.end, perDay: scenario.reconnectsPerDay)
        }
        agents[index].failing = nil
    }

    // MARK: Operators' answers to compromise

    private func revoke(_ scope: CredentialScope, devices: [Int], event: String, at t: Double) async throws {
        let radius = try await store.revoke(
            scope, reason: .keyCompromise, at: date(t),
            audit: AuditEvent(time: date(t), actor: "operator", action: "revoke", outcome: .success, reason: event))
        result.blastRadius[event] = radius.devices
        for index in devices where agents[index].serial != nil {
            // Revoked sessions are closed; the devices reconnect, and learn at their next check-in.
            queue.schedule(.reconnect(index), at: t + random.unit() * 60)
            scheduleWake(index, at: t + random.unit() * checkIn)
        }
        for index in devices {
            let when = t + random.unit() * scenario.events.reprovisionDays * 86_400
            queue.schedule(.reprovision(index), at: fleet.nextOnline(index, from: when))
        }
    }

    /// `devid device reprovision`: revoke what is left, back to `manufactured`, a one-device claim token for a day.
    private func reprovision(_ index: Int, at t: Double) async throws {
        let device = fleet.devices[index]
        guard let record = try await store.device(device.id) else { return }
        var lifecycle = DeviceLifecycle(state: record.state)
        guard case .transition(let next) = lifecycle.reprovision() else { return }
        let now = date(t)
        _ = try await store.revoke(
            .device(device.id), reason: .keyCompromise, at: now,
            audit: AuditEvent(
                time: now, actor: "operator", action: "revoke", outcome: .success,
                reason: "reprovision: revoked every credential of \(device.id)", tenant: record.tenant, device: device.id))
        if let current = try await store.device(device.id), current.state != next {
            try await store.updateDeviceState(
                device.id, from: current.state, to: next,
                audit: AuditEvent(
                    time: now, actor: "operator", action: "device.reprovision", outcome: .success,
                    reason: "re-provisioned device \(device.id)", tenant: record.tenant, device: device.id))
        }
        let id = "ct_" + String(random.next(), radix: 36)
        try await store.insertClaimToken(
            ClaimToken(
                id: id, secretHash: String(random.next(), radix: 16), tenant: record.tenant, device: device.id,
                expiresAt: now.addingTimeInterval(86_400), usesRemaining: 1, createdAt: now),
            audit: AuditEvent(
                time: now, actor: "operator", action: "token.create", outcome: .success,
                reason: "created claim token \(id) for re-provisioning", tenant: record.tenant, device: device.id))
        WorldResult.count(&result.reprovisions, at: t)
        agents[index].token = id
        agents[index].serial = nil
        agents[index].attempt = 0
        scheduleWake(index, at: t + random.unit() * 60)
    }

    /// The newest bulk claim token leaks: revoke it (it cannot take over an enrolled device, so nobody loses service)
    /// and give the lot's devices that have not enrolled yet a new one.
    private func tokenLeak(at t: Double) async throws {
        guard let lot = fleet.lots.last(where: { $0.usesToken && $0.madeAt <= t && lotTokens[$0.index] != nil }),
            let id = lotTokens[lot.index]
        else { return }
        let now = date(t)
        result.notes["token_leak_devices_enrolled_with_token"] = try await store.blastRadius(.token(id), now: now).devices
        try await store.revokeClaimToken(
            id: id,
            audit: AuditEvent(
                time: now, actor: "operator", action: "token.revoke", outcome: .success, reason: "bulk token leaked"))
        result.blastRadius["bulk_token_leak"] = 0
        let waiting = lot.devices.filter { !agents[$0].hadIdentity }.count
        if waiting > 0 { try await createLotToken(lot, at: t + 3_600, uses: waiting) }
    }

    /// A new issuing CA signs from now on; every LDevID of the old one is flagged for rotation, and revoked when the
    /// rollover window ends.
    private var retiredIssuer: String?

    private func caCompromise(at t: Double) async throws {
        let old = server.issuer
        retiredIssuer = old
        server.issuer = "CN=DevID Issuing CA 2"
        let now = date(t)
        result.notes["ca_rollover_flagged"] = try await store.markRotationDue(
            .issuer(old), at: now,
            audit: AuditEvent(
                time: now, actor: "operator", action: "rotation.campaign", outcome: .success,
                reason: "issuing CA suspected compromised: rotate everything it signed"))
        for index in agents.indices where agents[index].serial != nil && agents[index].issuer == old {
            scheduleWake(index, at: t + random.unit() * checkIn)
        }
        queue.schedule(.caRevoke, at: t + scenario.events.caRolloverDays * 86_400)
    }

    private func caRevoke(at t: Double) async throws {
        guard let old = retiredIssuer else { return }
        let now = date(t)
        let radius = try await store.revoke(
            .issuer(old), reason: .caCompromise, at: now,
            audit: AuditEvent(
                time: now, actor: "operator", action: "revoke", outcome: .success,
                reason: "rollover window ended: revoked what the old issuing CA signed"))
        var lost = 0
        for index in agents.indices where agents[index].serial != nil && agents[index].issuer == old {
            // Lost service now: a certificate still valid until this revocation (an expired one was lost already).
            if agents[index].notAfter > t { lost += 1 }
            queue.schedule(.reconnect(index), at: t + random.unit() * 60)
            scheduleWake(index, at: fleet.nextOnline(index, from: t) + random.unit() * checkIn)
        }
        result.blastRadius["ca_compromise"] = lost
        result.notes["ca_rollover_revoked_credentials"] = radius.credentials
    }

    // MARK: Health

    /// DevID's own anomaly checks on the registry, once a week, as the dashboard runs them.
    private func healthSnapshot(at t: Double) async throws {
        let now = date(t)
        // The hourly check-ins between the simulated events keep `lastSeen` current: record the last one of each
        // device that could check in (online, with a credential the server accepts, the server up).
        for index in agents.indices where agents[index].serial != nil && agents[index].failing == nil {
            guard var seen = fleet.lastOnline(index, atOrBefore: t) else { continue }
            seen = max(seen - random.unit() * checkIn, agents[index].lastContact)
            if let outage = server.outage, seen >= outage.start, seen < outage.end { seen = outage.start - 1 }
            guard seen > agents[index].lastContact, seen > t - 7 * 86_400 else { continue }
            try await store.recordSeen(fleet.devices[index].id, at: date(seen))
        }
        var inputs = HealthInputs(now: now, thresholds: HealthThresholds())
        inputs.expiryByDay = try await store.expiryByDay(now: now, days: 400)
        inputs.currentCredentials = inputs.expiryByDay.mapValues { $0.reduce(0, +) }
        inputs.staleAfter = server.lifetime * (1 - policy.renewalFraction)
        inputs.ldevidLifetime = server.lifetime
        inputs.stale = try await store.staleDevices(
            seenBefore: now.addingTimeInterval(-inputs.staleAfter), now: now, limit: AnomalyChecks.maximumFindings)
        for check in ["expiry_wave", "stale_device"] where !AnomalyChecks.run(check, inputs).isEmpty {
            result.anomalies[check, default: 0] += 1
        }
        result.notes["stale_devices_peak"] = max(result.notes["stale_devices_peak"] ?? 0, inputs.stale.count)
    }

    private func strandedDevices() -> [String: Int] {
        var stranded: [String: Int] = [:]
        for (index, agent) in agents.enumerated() where agent.serial == nil && fleet.devices[index].installAt < fleet.span {
            let reason = fleet.lots[fleet.devices[index].lot].usesToken && agent.token == nil
                ? "no_idevid_no_token" : (agent.hadIdentity ? "revoked_awaiting_recovery" : "not_enrolled_yet")
            stranded[reason, default: 0] += 1
        }
        return stranded
    }
}
