public import DevIDCore
import DevIDPKCS11
import DevIDPKI
public import Foundation
public import Logging
import SwiftASN1
import X509

/// The device agent's rotation daemon: keeps the LDevID in a state directory valid, forever, without a moment in
/// which the device has no valid identity.
///
/// ``step()`` does whatever is due now and returns when it wants to run again (``Wake``); ``run(clock:onWake:)``
/// loops over it, sleeping on an injected `Clock`. Tests call ``step()`` directly with manual clocks.
///
/// ## One step
/// The state on disk decides what to do, so that a fresh agent over the same directory (after `kill -9`) does exactly
/// what the killed one would have done next:
///
/// | on disk | next |
/// | --- | --- |
/// | no current identity | bootstrap with the IDevID (or fail: "a new claim token is needed") |
/// | `next/key.pem` only | (b) `simplereenroll` with the current LDevID for that key, stage the certificate |
/// | `next/` complete | (c) copy current to `previous/`, install `next/` as current, remove `next/` |
/// | `previous/` complete | (d) reload hook if pending, (e) check in with the new certificate, (f) forget `previous/` |
/// | otherwise | check in; decide with ``IdentityAction`` at the server's time; (a) stage a new key if due |
///
/// ## Time
/// All decisions use ``ServerClock`` (local clock + skew measured from `DevID-Time`), never the raw local clock, so a
/// certificate is not thrown away as expired on a clock known to be wrong, and a device reset to 1970 still renews.
/// The skew is kept in `agent-state.json` across restarts. The renewal time is drawn once per certificate with
/// ``RotationPolicy/scheduledRenewal(notBefore:notAfter:using:)`` (jitter) and persisted, so restarts do not re-roll
/// it. Failures retry with ``Backoff`` (full jitter, capped, `Retry-After` as a floor), the attempt count persisted.
///
/// The server's TLS certificate is checked at the same corrected time (``ESTClient`` validates it itself rather than
/// letting BoringSSL use the system clock). A device whose clock is before the newest certificate it holds (1970
/// after an RTC reset) first learns the server's time from a credential-free time probe, then validates strictly.
///
/// ## Refusals
/// A check-in refused with the code `credential_revoked`, `credential_superseded` or `credential_unknown` (the
/// server's `DevID-Refusal` header) means the identity is beyond repair: the agent bootstraps with the IDevID.
/// `credential_expired` is decided at the server's time: late renewal within the grace period, else bootstrap.
/// A suspended or revoked device is an error (retried with backoff; the operator must act).
public actor RotationAgent {
    /// Tuning and test hooks.
    public struct Options: Sendable {
        /// Seconds between check-ins while nothing is due, unless `agent.json` says otherwise.
        public var checkInInterval: TimeInterval = RotationAgent.defaultCheckInInterval
        /// When the server says "rotate now", the agent waits a moment drawn from 0 to this many seconds first (once
        /// per certificate, persisted), so that a fleet told at the same time (a tainted issuing CA, a campaign, a
        /// reconnect storm) does not renew in the same second. 0 renews at once.
        public var rotateNowJitter: TimeInterval = RotationAgent.defaultRotateNowJitter
        public var backoff: Backoff = Backoff()
        /// Real time the reload hook may take.
        public var hookTimeout: Duration = .seconds(120)
        /// Timeouts of each HTTP request.
        public var connectTimeout: Duration = .seconds(10)
        public var requestTimeout: Duration = .seconds(60)
        /// Test hook: stop right after this step, writing nothing more, as `kill -9` would. The step then returns
        /// ``Wake/Reason/crashed`` and the agent must be discarded.
        public var crashAfter: RotationStep?

        public init(
            checkInInterval: TimeInterval = RotationAgent.defaultCheckInInterval, backoff: Backoff = Backoff(),
            hookTimeout: Duration = .seconds(120), crashAfter: RotationStep? = nil,
            rotateNowJitter: TimeInterval = RotationAgent.defaultRotateNowJitter
        ) {
            self.rotateNowJitter = rotateNowJitter
            self.checkInInterval = checkInInterval
            self.backoff = backoff
            self.hookTimeout = hookTimeout
            self.crashAfter = crashAfter
        }
    }

    /// One hour: how fast a rotation campaign reaches an idle device.
    public static let defaultCheckInInterval: TimeInterval = 3_600
    /// At most a minute: long enough to spread a fleet told at once, short enough for a leaked CA.
    public static let defaultRotateNowJitter: TimeInterval = 60

    public nonisolated let stateDirectory: AgentStateDirectory
    /// The device's estimate of the server's time.
    public nonisolated let serverClock: ServerClock
    private let explicitConfiguration: AgentConfiguration?
    private let options: Options
    private let logger: Logger
    private var random: BoxedRandom
    private var memory: AgentMemory
    private var stepping = false

    /// - Parameters:
    ///   - stateDirectory: the state directory (`--state-dir`).
    ///   - configuration: server, label, IDevID, hook; nil reads `agent.json` at every step (falling back to the
    ///     server URL in `identity.json`).
    ///   - clock: the device's own clock.
    ///   - random: jitter for renewal times and backoff.
    /// - Throws: ``AgentError`` when `agent-state.json` exists but does not parse.
    public init(
        stateDirectory: String, configuration: AgentConfiguration? = nil, options: Options = Options(),
        clock: any WallClock, random: any RandomNumberGenerator & Sendable = SystemRandomNumberGenerator(),
        logger: Logger = Logger(label: "devid.agent")
    ) throws(AgentError) {
        self.stateDirectory = AgentStateDirectory(path: stateDirectory)
        self.explicitConfiguration = configuration
        self.options = options
        self.logger = logger
        self.random = BoxedRandom(base: random)
        let memory = try AgentMemory.load(self.stateDirectory)
        self.memory = memory
        self.serverClock = ServerClock(local: clock, known: memory.clockSkew)
    }

    /// What the agent remembers (as persisted after the last step).
    public var remembered: AgentMemory { memory }

    /// The agent's estimate of the server's time: local clock + last known skew.
    public nonisolated var correctedNow: Date { serverClock.now() }

    // MARK: - The loop

    /// Steps until cancelled, sleeping `wake.delay` on `clock` in between. Cancellation (graceful shutdown) may
    /// interrupt a step anywhere: every step is resumable, like after a crash.
    public func run<C: Clock>(
        clock: C, onWake: @Sendable (Wake) async -> Void = { _ in }
    ) async throws where C.Duration == Duration {
        while true {
            try Task.checkCancellation()
            let wake = await step()
            await onWake(wake)
            switch wake.reason {
            case .crashed, .stopped: return
            case .scheduled, .retry: break
            }
            let milliseconds = Int64(min(max(wake.delay, 0), 400 * 86_400) * 1_000)
            try await clock.sleep(for: .milliseconds(milliseconds))
        }
    }

    /// Does what is due now; returns when to wake next. Never throws: a failure is a ``Wake`` with
    /// ``Wake/Reason/retry``, its delay drawn from the backoff.
    public func step() async -> Wake {
        guard !stepping else {
            return Wake(
                reason: .retry, delay: 1, at: serverClock.now().addingTimeInterval(1),
                error: AgentError(.invalidState, "a step is already running"))
        }
        stepping = true
        defer { stepping = false }
        var progress = Progress()
        do {
            var wake = try await perform(&progress)
            memory.failures = 0
            memory.lastError = nil
            memory.nextWake = wake.at
            try saveMemory()
            wake.completed = progress.completed
            wake.change = progress.change
            wake.hook = progress.hook
            wake.status = progress.status
            return wake
        } catch is SimulatedCrash {
            return Wake(
                reason: .crashed, delay: 0, at: serverClock.now(), completed: progress.completed,
                change: progress.change, hook: progress.hook, status: progress.status)
        } catch {
            if error is CancellationError || Task.isCancelled {
                return Wake(reason: .stopped, delay: 0, at: serverClock.now(), completed: progress.completed)
            }
            let failure = error as? AgentError ?? AgentError(.io, AgentError.oneLine(String(describing: error)))
            let delay = RetryAfter.delay(
                backoff: options.backoff, failures: memory.failures, retryAfter: failure.retryAfter, using: &random)
            memory.failures += 1
            memory.lastError = failure.description
            let at = serverClock.now().addingTimeInterval(delay)
            memory.nextWake = at
            try? saveMemory()
            logger.debug(
                "step failed",
                metadata: ["error": "\(failure)", "attempt": "\(memory.failures)", "retry_in": "\(Int(delay))"])
            return Wake(
                reason: .retry, delay: delay, at: at, completed: progress.completed, change: progress.change,
                hook: progress.hook, error: failure, status: progress.status)
        }
    }

    // MARK: - The state machine

    private struct Progress {
        var completed: [RotationStep] = []
        var change: IdentityChange?
        var hook: ReloadHook.Outcome?
        var status: DeviceStatus?
        /// A re-enrollment was refused in this step: do not start another one before the next step.
        var reenrollRefused: AgentError?
        /// The staged key was refused as used before; it was replaced once.
        var replacedStagedKey = false
    }

    private struct SimulatedCrash: Error {}

    /// A concrete generator around the injected one (an existential cannot be passed as `inout some`).
    private struct BoxedRandom: RandomNumberGenerator, Sendable {
        var base: any RandomNumberGenerator & Sendable
        mutating func next() -> UInt64 { base.next() }
    }

    /// The current identity: certificate, key, and the chain to present (leaf and intermediates).
    private struct Current {
        var certificate: Certificate
        var key: Certificate.PrivateKey
        var chain: [Certificate]
        var identity: EnrolledIdentity?

        var tlsIdentity: ESTClient.Identity {
            // Leaf and intermediates; the trust anchor is the server's business.
            let presented = chain.count > 1 ? Array(chain.dropLast()) : [certificate]
            return ESTClient.Identity(
                certificateChain: presented.first == certificate ? presented : [certificate], privateKey: key)
        }
    }

    private enum Phase {
        case missing
        case stagedKey(key: Certificate.PrivateKey, pkcs8: [UInt8])
        case stagedCertificate
        case promotionLeftover
        case promoted
        case idle
    }

    private func perform(_ progress: inout Progress) async throws -> Wake {
        try stateDirectory.recover()
        let configuration = try resolvedConfiguration()
        // A bounded number of phases per step; each re-reads the directory, as a restarted agent would.
        for _ in 0..<24 {
            let current = try readCurrent()
            switch try phase(current: current) {
            case .missing:
                try await bootstrap(
                    reason: "there is no identity in the state directory", configuration: configuration, &progress)
            case .stagedKey(let key, let pkcs8):
                guard let current else { throw AgentError(.invalidState, "no current identity to re-enroll with") }
                try await reenroll(
                    current: current, key: key, pkcs8: pkcs8, configuration: configuration, &progress)
            case .stagedCertificate:
                guard let current else { throw AgentError(.invalidState, "no current identity to replace") }
                try promote(current: current, &progress)
            case .promotionLeftover:
                try slot(.next).remove()
            case .promoted:
                guard let current else { throw AgentError(.invalidState, "no current identity to confirm") }
                if let wake = try await finish(current: current, configuration: configuration, &progress) {
                    return wake
                }
            case .idle:
                guard let current else { throw AgentError(.invalidState, "no current identity") }
                if memory.reloadPending {
                    try await reload(current: current, configuration: configuration, &progress)
                }
                if let wake = try await checkInAndDecide(current: current, configuration: configuration, &progress) {
                    return wake
                }
            }
        }
        throw AgentError(.invalidState, "the rotation did not settle within one step")
    }

    /// What the directory says to do next; removes leftovers that hold no identity.
    private func phase(current: Current?) throws(AgentError) -> Phase {
        let next = slot(.next)
        let previous = slot(.previous)
        // Without a current identity the slots are left alone until a bootstrap replaces everything.
        guard let current else { return .missing }
        if next.exists {
            if let staged = try next.pair() {
                return staged.certificate == current.certificate ? .promotionLeftover : .stagedCertificate
            }
            if try next.certificate() == nil, let staged = try AgentKeys.unlessUnavailable({ () throws(AgentError) in try next.stagedKey() }) {
                return .stagedKey(key: staged.key, pkcs8: staged.pkcs8)
            }
            logger.debug("removing an unusable next/ slot", metadata: ["path": "\(next.path)"])
            try next.remove()
        }
        if previous.exists {
            if let kept = try previous.certificate(), kept != current.certificate { return .promoted }
            try previous.remove()
        }
        return .idle
    }

    // MARK: Check-in and decision

    private func checkInAndDecide(
        current: Current, configuration: AgentConfiguration, _ progress: inout Progress
    ) async throws -> Wake? {
        var serverWantsRotation = false
        var beyondRepair: String?
        do {
            let status = try await checkIn(current: current, configuration: configuration)
            progress.status = status
            memory.lastCheckIn = serverClock.now()
            memory.policy = status.rotation
            // A superseded current certificate: the server holds a successor the agent does not (lost in a crash
            // before it was staged); re-enroll again during the overlap.
            serverWantsRotation = status.rotateNow || status.credentialStatus == .superseded
            if status.rotateNow {
                logger.debug("the server asks for rotation", metadata: ["reason": "\(status.rotateReason ?? "-")"])
            }
            if let listed = status.trustedRoots {
                try await updateTrust(listed: listed, configuration: configuration)
            }
            try saveMemory()
            try crashPoint(.checkIn, &progress)
        } catch let error as AgentError {
            switch Refusal(error) {
            case .beyondRepair(let reason):
                beyondRepair = reason
            case .expired:
                break  // decided below, at the server's time
            case .handshakeFailed(let certificateAlert):
                // Did the server refuse the certificate, or is it away? Ask without a client certificate (which also
                // gives its time); if that fails too, the server is away or not trusted: retry later.
                try await serverTime(configuration: configuration)
                if serverClock.now() < current.certificate.notValidAfter {
                    // A failure that names no certificate (a timeout, a reset, a handshake cut short) while the
                    // server answers strangers is most likely the server restarting or overloaded: give up a valid
                    // identity only once it has lasted.
                    guard certificateAlert || unexplainedFailureHasLasted(now: serverClock.now()) else { throw error }
                    beyondRepair = "the server refused the certificate in the TLS handshake"
                }
            case .other:
                throw error
            }
        }

        let policy = memory.policy ?? RotationPolicy()
        let now = serverClock.now()
        if let rotateNow = progress.status?.rotateNow, rotateNow, beyondRepair == nil, options.rotateNowJitter > 0,
            progress.status?.credentialStatus != .superseded
        {
            let fingerprint = current.certificate.sha256Fingerprint
            if memory.rotateNow?.certificateSHA256 != fingerprint {
                let delay = Double.random(in: 0...options.rotateNowJitter, using: &random)
                memory.rotateNow = AgentMemory.RotateNow(certificateSHA256: fingerprint, at: now.addingTimeInterval(delay))
                try saveMemory()
            }
            if let at = memory.rotateNow?.at, at > now {
                logger.debug("rotating after the rotate-now jitter", metadata: ["at": "\(at)"])
                return Wake(reason: .scheduled, delay: at.timeIntervalSince(now), at: at)
            }
        }
        let renewalAt = try scheduledRenewal(for: current.certificate, policy: policy)
        if let beyondRepair {
            try await bootstrap(reason: beyondRepair, configuration: configuration, &progress)
            return nil
        }
        let action = IdentityAction.decide(
            notBefore: current.certificate.notValidBefore, notAfter: current.certificate.notValidAfter,
            scheduledRenewal: renewalAt, now: now, policy: policy, serverWantsRotation: serverWantsRotation)
        switch action {
        case .keep(let until):
            let interval = checkInInterval(configuration)
            let delay = max(1, min(until.timeIntervalSince(now), interval))
            return Wake(reason: .scheduled, delay: delay, at: now.addingTimeInterval(delay))
        case .renew, .lateRenewal:
            if let refused = progress.reenrollRefused { throw refused }
            try stageNewKey(&progress)
            return nil
        case .bootstrap(let reason):
            try await bootstrap(reason: reason, configuration: configuration, &progress)
            return nil
        }
    }

    /// `GET /v1/device/status` with `current`.
    private func checkIn(current: Current, configuration: AgentConfiguration) async throws -> DeviceStatus {
        let client = try makeClient(configuration, identity: current.tlsIdentity)
        do {
            let status = try await client.deviceStatus()
            try? await client.shutdown()
            guard status.serial == current.certificate.devidSerial else {
                throw AgentError(.badResponse, "the check-in answered for another certificate (\(status.serial))")
            }
            return status
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    /// Root rollover: adds a root the server lists that `/cacerts` vouches for through a cross-certificate from a
    /// root already trusted, and drops a root no longer listed (``TrustUpdate``). `trust.pem` is replaced whole.
    private func updateTrust(listed: [String], configuration: AgentConfiguration) async throws {
        let current = try trustBundle()
        var offered: [Certificate] = []
        if TrustUpdate.wantsNewRoot(current: current, listed: listed) {
            let client = try makeClient(configuration, identity: nil)
            do {
                offered = try await client.cacerts()
                try? await client.shutdown()
            } catch {
                try? await client.shutdown()
                throw error
            }
        }
        guard let change = TrustUpdate.reconcile(current: current, listed: listed, offered: offered, at: serverClock.now())
        else { return }
        guard !FileManager.default.fileExists(atPath: stateDirectory.pendingPath(.trust)) else { return }
        try AgentFileIO.write(Array(PEM.bundle(change.bundle).utf8), to: stateDirectory.path(.trust), mode: 0o644)
        logger.notice(
            "trust bundle updated",
            metadata: [
                "added": "\(change.added.map { String(describing: $0.subject) })",
                "dropped": "\(change.dropped.map { String(describing: $0.subject) })",
            ])
    }

    /// An anonymous `GET /cacerts`, for the server's time (`DevID-Time`).
    private func serverTime(configuration: AgentConfiguration) async throws {
        let client = try makeClient(configuration, identity: nil)
        do {
            _ = try await client.cacerts()
            try? await client.shutdown()
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    /// The renewal time drawn for `certificate` (drawn and persisted the first time).
    private func scheduledRenewal(for certificate: Certificate, policy: RotationPolicy) throws(AgentError) -> Date {
        let fingerprint = certificate.sha256Fingerprint
        if let schedule = memory.schedule, schedule.certificateSHA256 == fingerprint,
            schedule.renewalFraction == policy.renewalFraction, schedule.jitterFraction == policy.jitterFraction
        {
            return schedule.renewalAt
        }
        let drawn = policy.scheduledRenewal(
            notBefore: certificate.notValidBefore, notAfter: certificate.notValidAfter, using: &random)
        let renewalAt = Date(timeIntervalSince1970: drawn.timeIntervalSince1970.rounded(.down))
        memory.schedule = AgentMemory.Schedule(
            certificateSHA256: fingerprint, renewalAt: renewalAt, renewalFraction: policy.renewalFraction,
            jitterFraction: policy.jitterFraction)
        try saveMemory()
        logger.debug(
            "renewal scheduled",
            metadata: ["serial": "\(certificate.devidSerial)", "at": "\(renewalAt.formatted(.iso8601))"])
        return renewalAt
    }

    // MARK: Rotation steps

    /// (a) A new key, staged in `next/`.
    private func stageNewKey(_ progress: inout Progress) throws {
        let generated = try Enroller.newKey(in: try resolvedConfiguration().keyURI)
        try slot(.next).stageKey(pkcs8: generated.pkcs8)
        try crashPoint(.stageKey, &progress)
    }

    /// (b) `simplereenroll` with the current LDevID for the staged key; the checked certificate is staged.
    private func reenroll(
        current: Current, key: Certificate.PrivateKey, pkcs8: [UInt8], configuration: AgentConfiguration,
        _ progress: inout Progress
    ) async throws {
        let late = serverClock.now() >= current.certificate.notValidAfter
        let device = DeviceID(
            rawValue: DeviceNames.firstValue(.RDNAttributeType.commonName, in: current.certificate.subject) ?? "")
        let client = try makeClient(configuration, identity: current.tlsIdentity)
        let certificate: Certificate
        let caCertificates: [Certificate]
        do {
            // One connection for both requests.
            (caCertificates, certificate) = try await client.cacertsThenSimpleReenroll {
                let csr = try Enroller.csr(deviceID: device, key: key)
                logger.debug(
                    "re-enrolling",
                    metadata: ["serial": "\(current.certificate.devidSerial)", "late": "\(late)"])
                return csr
            }
            try? await client.shutdown()
        } catch let error as AgentError {
            try? await client.shutdown()
            if error.code == .refused(status: 400), !progress.replacedStagedKey {
                // Most likely the staged key was used already: the server issued for it, then the agent died before
                // staging the certificate. A new key, once.
                progress.replacedStagedKey = true
                try slot(.next).remove()
                try stageNewKey(&progress)
                return
            }
            if error.code == .refused(status: 403) || error.code == .refused(status: 401)
                || error.code == .tlsFailure || error.code == .refused(status: 400)
            {
                // Refused: nothing was issued. Drop the staged key; the check-in decides what now.
                try slot(.next).remove()
                progress.reenrollRefused = error
                return
            }
            throw error
        } catch {
            try? await client.shutdown()
            throw error
        }
        try crashPoint(.reenroll, &progress)

        let trust = try trustBundle()
        let chain = try await Enroller.checkIssued(
            certificate, publicKey: key.publicKey, device: device, trustBundle: trust,
            intermediates: caCertificates, at: serverClock.now())
        let identity = try EnrolledIdentity(
            certificate: certificate, serverURL: configuration.serverURL, bootstrap: late ? "late-renewal" : "reenroll",
            enrolledAt: serverClock.local.now(), serverDate: client.lastServerTime ?? client.lastServerDate)
        try slot(.next).stageCertificate(certificate, chain: chain, identity: identity)
        progress.change = late ? .lateRenewal : .renewal
        logger.debug(
            "new certificate staged",
            metadata: ["serial": "\(certificate.devidSerial)", "not_after": "\(certificate.notValidAfter)"])
        try crashPoint(.stageCertificate, &progress)
    }

    /// (c) previous ← current, current ← next.
    private func promote(current: Current, _ progress: inout Progress) throws {
        let next = slot(.next)
        guard let staged = try next.pair(), let chain = try next.chain(), let identity = try next.identity() else {
            throw AgentError(.invalidState, "next/ is incomplete")
        }
        try slot(.previous).saveCopy(of: stateDirectory)
        try crashPoint(.keepPrevious, &progress)
        memory.reloadPending = true
        try saveMemory()
        try stateDirectory.install(
            AgentStateDirectory.Installation(
                keyPKCS8: staged.pkcs8, certificate: staged.certificate, chain: chain, trustBundle: try trustBundle(),
                identity: identity))
        try next.remove()
        logger.debug(
            "promoted",
            metadata: [
                "serial": "\(staged.certificate.devidSerial)", "previous": "\(current.certificate.devidSerial)",
            ])
        try crashPoint(.promote, &progress)
    }

    /// (d) The reload hook, if one is configured and it has not run for the current identity.
    private func reload(current: Current, configuration: AgentConfiguration, _ progress: inout Progress) async throws {
        if let command = configuration.onRotate, !command.isEmpty {
            let outcome = await ReloadHook(command: command, timeout: options.hookTimeout).run(
                stateDirectory: stateDirectory.path, serial: current.certificate.devidSerial.rawValue)
            progress.hook = outcome
            logger.debug("reload hook ran", metadata: ["outcome": "\(outcome)"])
        }
        memory.reloadPending = false
        try saveMemory()
        try crashPoint(.reload, &progress)
    }

    /// (d), (e), (f) after a promotion. Returns the wake when done, nil to continue with the next phase.
    private func finish(
        current: Current, configuration: AgentConfiguration, _ progress: inout Progress
    ) async throws -> Wake? {
        if memory.reloadPending {
            try await reload(current: current, configuration: configuration, &progress)
        }
        let status: DeviceStatus
        do {
            status = try await checkIn(current: current, configuration: configuration)
        } catch let error as AgentError {
            switch Refusal(error) {
            case .beyondRepair, .expired:
                // The new certificate is refused outright: the old one cannot help. Forget it and let the regular
                // check-in decide (bootstrap).
                try slot(.previous).remove()
                return nil
            case .handshakeFailed, .other:
                throw error
            }
        }
        progress.status = status
        memory.lastCheckIn = serverClock.now()
        memory.policy = status.rotation
        try saveMemory()
        try crashPoint(.confirm, &progress)
        try slot(.previous).remove()
        logger.debug("previous identity forgotten", metadata: ["serial": "\(current.certificate.devidSerial)"])
        try crashPoint(.forget, &progress)

        // The new certificate's schedule; `rotateNow` is not honoured on the confirming check-in (it would be for
        // the new certificate only if a campaign already targets it; the next check-in will tell).
        let policy = status.rotation
        let now = serverClock.now()
        let renewalAt = try scheduledRenewal(for: current.certificate, policy: policy)
        if case .keep(let until) = IdentityAction.decide(
            notBefore: current.certificate.notValidBefore, notAfter: current.certificate.notValidAfter,
            scheduledRenewal: renewalAt, now: now, policy: policy)
        {
            let interval = checkInInterval(configuration)
            let delay = max(1, min(until.timeIntervalSince(now), interval))
            return Wake(reason: .scheduled, delay: delay, at: now.addingTimeInterval(delay))
        }
        return nil
    }

    /// A new identity with the IDevID, replacing whatever is there; or the plain "a new claim token is needed".
    private func bootstrap(
        reason: String, configuration: AgentConfiguration, _ progress: inout Progress
    ) async throws {
        guard let certificatePath = configuration.idevidCertificate, let keyPath = configuration.idevidKey else {
            throw AgentError(
                .needsEnrollment,
                "\(reason), and there is no IDevID to bootstrap with: a new claim token is needed "
                    + "(devid agent enroll --token-file FILE)")
        }
        let chain: [Certificate]
        let key: Certificate.PrivateKey
        do {
            // The IDevID key may be in a token too (a TPM's factory key): `--idevid-key pkcs11:...`.
            let isURI = PKCS11URI.isURI(keyPath)
            guard let chainBytes = try AgentFileIO.readIfPresent(certificatePath),
                isURI || FileManager.default.fileExists(atPath: keyPath)
            else {
                throw AgentError(.invalidArgument, "the IDevID files \(certificatePath), \(keyPath) are not there")
            }
            chain = try PEM.certificates(String(decoding: chainBytes, as: UTF8.self))
            if isURI {
                key = try AgentKeys.open(keyPath)
            } else {
                let keyBytes = try AgentFileIO.readIfPresent(keyPath) ?? []
                key = try KeyMaterial.privateKey(pem: String(decoding: keyBytes, as: UTF8.self), passphrase: nil)
            }
        } catch let error as DevIDPKIError {
            throw AgentError(.invalidArgument, "IDevID: \(error.reason)")
        }
        logger.debug("bootstrapping with the IDevID", metadata: ["reason": "\(reason)"])
        try slot(.next).remove()
        try slot(.previous).remove()
        memory.reloadPending = true
        try saveMemory()
        _ = try await Enroller(logger: logger, keyURI: configuration.keyURI).enroll(
            server: configuration.serverURL, trustBundle: try trustBundle(), stateDirectory: stateDirectory.path,
            bootstrap: .idevid(certificateChain: chain, key: key), label: configuration.label, clock: serverClock,
            serverClock: serverClock)
        progress.change = .bootstrap
        try crashPoint(.bootstrap, &progress)
    }

    // MARK: - Helpers

    /// Consecutive failed steps (this one included) after which a check-in failure that names no certificate, while
    /// the server answers without one, is taken for a refusal of the certificate.
    static let unexplainedFailuresBeforeBootstrap = 3
    /// ...and how long since the last check-in that worked.
    static let unexplainedFailureDuration: TimeInterval = 3_600

    /// Whether check-ins have failed below HTTP, without a certificate alert, for long enough to mean the server
    /// refuses the certificate (a TLS 1.3 server's alert can be lost to a reset):
    /// ``unexplainedFailuresBeforeBootstrap`` steps in a row and ``unexplainedFailureDuration`` since the last
    /// check-in that worked. A server that restarts, or times out under load, is waited for: every device
    /// bootstrapping at once would be a storm of first enrollments when the server is weakest.
    private func unexplainedFailureHasLasted(now: Date) -> Bool {
        guard memory.failures + 1 >= Self.unexplainedFailuresBeforeBootstrap else { return false }
        guard let last = memory.lastCheckIn else { return true }
        return now.timeIntervalSince(last) >= Self.unexplainedFailureDuration
    }

    /// How a refusal is handled.
    private enum Refusal {
        /// The identity cannot be renewed: bootstrap.
        case beyondRepair(String)
        /// "credential has expired": decide at the server's time (late renewal or bootstrap).
        case expired
        /// The connection or the TLS handshake failed: the server may have refused the certificate, or be away.
        /// `certificateAlert`: the server ended the handshake with an alert about the certificate, so it refused it.
        case handshakeFailed(certificateAlert: Bool)
        /// Anything else: an error, retried with backoff.
        case other

        init(_ error: AgentError) {
            if error.code == .tlsFailure || error.code == .connectionFailed {
                self = .handshakeFailed(certificateAlert: error.code == .tlsFailure && error.certificateAlert)
                return
            }
            guard error.code == .refused(status: 403) else {
                self = .other
                return
            }
            // The server's stable code decides, never its message text.
            switch error.serverCode {
            case .credentialRevoked, .credentialSuperseded, .credentialUnknown:
                self = .beyondRepair(error.serverReason ?? "refused")
            case .credentialExpired:
                self = .expired
            default:
                self = .other
            }
        }
    }

    private func crashPoint(_ step: RotationStep, _ progress: inout Progress) throws {
        progress.completed.append(step)
        if options.crashAfter == step { throw SimulatedCrash() }
    }

    private func slot(_ name: IdentitySlot.Name) -> IdentitySlot {
        IdentitySlot(name, in: stateDirectory)
    }

    private func readCurrent() throws(AgentError) -> Current? {
        guard let certificate = try stateDirectory.certificate(), let key = try stateDirectory.privateKey(),
            key.publicKey == certificate.publicKey
        else { return nil }
        let chain = (try? stateDirectory.chain()) ?? nil
        return Current(
            certificate: certificate, key: key, chain: chain ?? [certificate],
            identity: (try? stateDirectory.identity()) ?? nil)
    }

    private func trustBundle() throws(AgentError) -> [Certificate] {
        guard let trust = try stateDirectory.trustBundle(), !trust.isEmpty else {
            throw AgentError(.invalidState, "\(stateDirectory.path(.trust)) is missing: enroll first")
        }
        return trust
    }

    /// The explicit configuration, else `agent.json`, else the server recorded in `identity.json`.
    private func resolvedConfiguration() throws(AgentError) -> AgentConfiguration {
        if let explicitConfiguration { return explicitConfiguration }
        if let saved = try AgentConfiguration.load(stateDirectory: stateDirectory.path) { return saved }
        if let identity = try stateDirectory.identity() { return AgentConfiguration(serverURL: identity.serverURL) }
        throw AgentError(
            .invalidState, "\(stateDirectory.path) has no agent.json and no identity: enroll with `devid agent enroll`")
    }

    /// `agent.json`'s check-in interval if it sets a positive one, else the option's.
    private func checkInInterval(_ configuration: AgentConfiguration) -> TimeInterval {
        if let interval = configuration.checkInInterval, interval > 0 { return interval }
        return options.checkInInterval
    }

    private func makeClient(_ configuration: AgentConfiguration, identity: ESTClient.Identity?) throws(AgentError)
        -> ESTClient
    {
        try ESTClient(
            baseURL: configuration.serverURL, trustRoots: try trustBundle(), clientIdentity: identity,
            label: configuration.label, connectTimeout: options.connectTimeout,
            requestTimeout: options.requestTimeout, serverClock: serverClock, logger: logger)
    }

    private func saveMemory() throws(AgentError) {
        memory.clockSkew = serverClock.sample
        try stateDirectory.create()
        try memory.save(stateDirectory)
    }
}
