import DevIDAgent
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Testing
import X509

/// The rotation daemon against the real server on loopback, on manual clocks.
@Suite("agent rotation against a live server", .serialized)
struct RotationLifecycleTests {
    @Test("365 virtual days: never without a valid certificate, a new key every rotation, superseded ones revoked")
    func yearOfRotations() async throws {
        try await withDevice(name: "sensor-year") { device in
            let agent = try device.agent(checkInInterval: day)
            let start = device.server.clock.now()
            let first = try device.current()
            var keys: Set<Certificate.PublicKey> = [first.certificate.publicKey]
            var rotations = 0
            var steps = 0
            var rotationDays: [Double] = []

            while device.server.clock.now() < start.addingTimeInterval(365 * day) {
                let wake = await agent.step()
                steps += 1
                try #require(wake.error == nil, "day \(Self.days(since: start, device)): \(wake)")
                #expect(wake.reason == .scheduled)
                // The server accepted the current certificate in this step (check-in, or the confirming one).
                #expect(wake.completed.contains(.checkIn) || wake.completed.contains(.confirm), "\(wake)")
                let (certificate, _) = try device.current()
                if wake.change != nil {
                    #expect(wake.change == .renewal)
                    rotations += 1
                    rotationDays.append(Self.days(since: start, device))
                    let (inserted, _) = keys.insert(certificate.publicKey)
                    #expect(inserted, "rotation \(rotations) used a new key")
                    #expect(!IdentitySlot(.previous, in: device.directory).exists)
                    #expect(!IdentitySlot(.next, in: device.directory).exists)
                }
                // Valid now and until the next wake-up: no instant without a valid certificate.
                let now = device.server.clock.now()
                let interval = min(max(wake.delay, 60), day)
                #expect(certificate.notValidBefore <= now)
                #expect(now.addingTimeInterval(interval) < certificate.notValidAfter, "valid until the next wake-up")
                try await device.sweep()
                device.advance(interval)
            }

            // 30-day certificates renewed at 2/3 of their life ± 10 % of the 10-day window: every 19 to 21 days.
            #expect((16...20).contains(rotations), "\(rotations) rotations on days \(rotationDays)")
            #expect(keys.count == rotations + 1, "every certificate has its own key")
            for (earlier, later) in zip(rotationDays, rotationDays.dropFirst()) {
                #expect((18.9...21.1).contains(later - earlier), "rotation interval \(later - earlier) days")
            }
            #expect(steps < 420, "about one check-in a day: \(steps) steps")

            // After the last confidence period, every credential but the current one is revoked as superseded.
            device.advance(2 * 3_600)
            try await device.sweep()
            let credentials = try await device.credentials()
            #expect(credentials.count == rotations + 1)
            let current = try device.current().certificate.devidSerial
            for credential in credentials where credential.serial != current {
                #expect(credential.status == .revoked, "\(credential.serial)")
                #expect(credential.revocationReason == .superseded)
                #expect(credential.confirmedAt != nil, "every certificate was confirmed by a check-in")
            }
            let latest = try #require(credentials.last)
            #expect(latest.serial == current && latest.status == .active && latest.confirmedAt != nil)
            let confirmations = try await device.server.store.auditEvents(
                AuditFilter(action: "rotation.confirm", device: try device.deviceID, limit: 1_000))
            #expect(confirmations.count == rotations + 1)
        }
    }

    static func days(since start: Date, _ device: TestDevice) -> Double {
        (device.server.clock.now().timeIntervalSince(start) / day * 100).rounded() / 100
    }

    @Test("overlap, confirmed successor: both certificates authenticate, the old one is revoked after confidence")
    func overlapConfirmed() async throws {
        try await withDevice(name: "sensor-overlap") { device in
            let old = try device.current()
            device.advance(21 * day + 3_600)
            let wake = try await device.agent().step()
            #expect(wake.change == .renewal, "\(wake)")
            let new = try device.current()
            #expect(new.certificate != old.certificate)

            // During the window: both work; the old one is superseded with a deadline 7 days out.
            let oldStatus = try await device.status(old.certificate, old.key).get()
            #expect(oldStatus.credentialStatus == .superseded)
            let deadline = try #require(oldStatus.overlapDeadline)
            #expect(abs(deadline.timeIntervalSince(device.server.clock.now()) - 7 * day) < 60)
            #expect(oldStatus.rotateNow == false)
            let newStatus = try await device.status(new.certificate, new.key).get()
            #expect(newStatus.credentialStatus == .active)
            device.advance(30 * 60)
            try await device.sweep()
            #expect((try? await device.status(old.certificate, old.key).get()) != nil, "still inside confidence")

            // After confirmation + confidence (1 h): revoked with reason superseded; the new one keeps working.
            device.advance(31 * 60)
            try await device.sweep()
            let refused = try await device.status(old.certificate, old.key)
            guard case .failure(let error) = refused else {
                Issue.record("the old certificate still authenticates after confirmation + confidence")
                return
            }
            #expect(error.code == .refused(status: 403))
            #expect(error.serverReason == "credential is revoked")
            let stored = try await device.server.store.credential(serial: old.certificate.devidSerial)
            #expect(stored?.status == .revoked && stored?.revocationReason == .superseded)
            #expect((try? await device.status(new.certificate, new.key).get()) != nil)
        }
    }

    @Test("overlap, unconfirmed successor: the old one works until the deadline, then is refused as superseded")
    func overlapDeadline() async throws {
        try await withDevice(name: "sensor-deadline") { device in
            let old = try device.current()
            device.advance(21 * day + 3_600)
            // Killed right after promotion: the new certificate is installed but the server has never seen it.
            let crashed = try await device.agent(crashAfter: .promote).step()
            #expect(crashed.reason == .crashed)
            let new = try device.current()
            #expect(new.certificate != old.certificate)

            for _ in 0..<6 {
                device.advance(day)
                try await device.sweep()
                let status = try await device.status(old.certificate, old.key).get()
                #expect(status.credentialStatus == .superseded)
            }
            // Past the overlap deadline (7 days after issuance).
            device.advance(day + 60)
            let refused = try await device.status(old.certificate, old.key)
            guard case .failure(let error) = refused else {
                Issue.record("the old certificate still authenticates after its overlap deadline")
                return
            }
            #expect(error.code == .refused(status: 403))
            // The server's background sweep (every 60 s of real time) may have revoked it a moment earlier.
            #expect(
                error.serverReason == "credential superseded and its overlap has ended"
                    || error.serverReason == "credential is revoked", "\(error)")
            try await device.sweep()
            let stored = try await device.server.store.credential(serial: old.certificate.devidSerial)
            #expect(stored?.status == .revoked && stored?.revocationReason == .superseded)
            #expect(try await device.status(old.certificate, old.key).failureReason == "credential is revoked")
            // The new certificate was valid all along.
            #expect((try? await device.status(new.certificate, new.key).get())?.credentialStatus == .active)
        }
    }

    @Test("a rotation campaign: the server's rotateNow makes the agent rotate at its next check-in")
    func campaign() async throws {
        try await withDevice(name: "sensor-campaign") { device in
            let agent = try device.agent()
            let quiet = await agent.step()
            #expect(quiet.change == nil && quiet.reason == .scheduled, "\(quiet)")
            let old = try device.current().certificate
            let marked = try await device.server.store.markRotationDue(
                .device(try device.deviceID), at: device.server.clock.now(),
                audit: device.server.state.auditor.event(
                    actor: "test", action: "rotation.campaign", outcome: .success, reason: "test campaign"))
            #expect(marked == 1)
            device.advance(3_600)
            let wake = await agent.step()
            #expect(wake.change == .renewal, "\(wake)")
            #expect(try device.current().certificate != old)
            #expect(wake.status?.rotateNow == false, "the confirming check-in is for the new, unflagged certificate")
            let after = await agent.step()
            #expect(after.change == nil, "no second rotation: \(after)")
        }
    }

    @Test("a revoked credential: the agent bootstraps with the IDevID")
    func revokedCredentialBootstraps() async throws {
        try await withDevice(name: "SN-REVOKED-1", idevid: true) { device in
            let old = try device.current().certificate
            _ = try await device.server.store.revoke(
                .serial(old.devidSerial), reason: .keyCompromise, at: device.server.clock.now(),
                audit: device.server.state.auditor.event(
                    actor: "test", action: "credential.revoke", outcome: .success, reason: "test"))
            let wake = try await device.agent().step()
            #expect(wake.error == nil, "\(wake)")
            #expect(wake.change == .bootstrap)
            let new = try device.current()
            #expect(new.certificate != old)
            #expect(try await device.status(new.certificate, new.key).get().credentialStatus == .active)
            #expect(device.hookLines().count == 1, "the reload hook ran for the bootstrapped identity")
        }
    }

    @Test("run(clock:) steps and sleeps each wake's delay on the injected clock until cancelled")
    func runLoop() async throws {
        try await withDevice(name: "sensor-run") { device in
            let agent = try device.agent(checkInInterval: day)
            let clock = VirtualClock(device: device, limit: .seconds(45 * day))
            let wakes = WakeLog()
            await #expect(throws: CancellationError.self) {
                try await agent.run(clock: clock) { wake in wakes.append(wake) }
            }
            let all = wakes.all
            #expect(all.allSatisfy { $0.error == nil }, "\(all.filter { $0.error != nil })")
            #expect(all.filter { $0.change == .renewal }.count == 2, "two renewals in 45 days")
            #expect(clock.sleeps.count == all.count)
            for (sleep, wake) in zip(clock.sleeps, all) {
                #expect(abs(Double(sleep.components.seconds) - wake.delay) <= 1)
            }
        }
    }

    @Test("the renewal time is drawn once per certificate: a restarted agent keeps it")
    func jitterPersisted() async throws {
        try await withDevice(name: "sensor-jitter") { device in
            _ = try await device.agent(seed: 7).step()
            let first = try #require(try AgentMemory.load(device.directory).schedule)
            for seed: UInt64 in [8, 9, 10] {
                let wake = try await device.agent(seed: seed).step()
                #expect(wake.error == nil)
                #expect(try AgentMemory.load(device.directory).schedule == first)
            }
            let status = try IdentityStatus.read(stateDirectory: device.stateDir, clock: device.localClock)
            #expect(status.scheduledRenewal == first.renewalAt)
            #expect(status.lastCheckIn != nil)
            #expect(status.clockSkew != nil)
        }
    }

    @Test("a failing reload hook is reported, not fatal; the hook sees DEVID_STATE_DIR")
    func failingHook() async throws {
        try await withDevice(name: "sensor-hook", onRotate: "echo \"$DEVID_STATE_DIR\" >> hook.log; exit 3") { device in
            device.advance(21 * day + 3_600)
            let wake = try await device.agent().step()
            #expect(wake.error == nil, "\(wake)")
            #expect(wake.change == .renewal)
            #expect(wake.hook == .failed(exitStatus: 3))
            #expect(wake.completed.contains(.forget))
            #expect(device.hookLines() == [device.directory.path])
        }
    }

    @Test("an unreachable server: retries with capped, jittered backoff, counted across restarts")
    func backoff() async throws {
        try await withDevice(name: "sensor-away") { device in
            var configuration = try #require(try AgentConfiguration.load(stateDirectory: device.stateDir))
            configuration.serverURL = "https://127.0.0.1:1"
            var ceilings: [TimeInterval] = []
            for attempt in 0..<6 {
                let agent = try device.agent(seed: UInt64(attempt), configuration: configuration)
                let wake = await agent.step()
                #expect(wake.reason == .retry)
                #expect(wake.error?.code == .connectionFailed, "\(String(describing: wake.error))")
                let ceiling = min(3_600, 30 * pow(2, Double(attempt)))
                #expect(wake.delay >= 0 && wake.delay <= ceiling, "attempt \(attempt): \(wake.delay)")
                ceilings.append(ceiling)
                #expect(try AgentMemory.load(device.directory).failures == attempt + 1)
            }
            // Back to the real server: one success resets the count.
            let wake = try await device.agent().step()
            #expect(wake.error == nil)
            #expect(try AgentMemory.load(device.directory).failures == 0)
        }
    }
}

extension RotationLifecycleTests {
    @Test("a check-in cut off while the server answers strangers: retried with the identity kept; bootstrap once it lasts")
    func brokenCheckInIsNotARefusal() async throws {
        try await withDevice(name: "SN-FLAKY-1", idevid: true) { device in
            // One check-in that works, then every check-in through a relay that resets every other connection: the
            // check-in's (reset: the connection broke, no certificate alert), then the anonymous time probe's
            // (forwarded: the server answers). That is what a device meets while its server restarts or is
            // overloaded. Before, the agent took it for a refusal of its certificate at the first failure and
            // threw its valid LDevID away for a bootstrap with the IDevID.
            #expect(await (try device.agent()).step().error == nil)
            let port = try #require(URL(string: device.server.estURL)?.port)
            let relay = try ResettingRelay(target: port)
            defer { relay.stop() }
            var configuration = try #require(try AgentConfiguration.load(stateDirectory: device.stateDir))
            configuration.serverURL = "https://127.0.0.1:\(relay.port)"
            let before = try device.current().certificate
            for attempt in 0..<4 {
                device.advance(60)
                let wake = await (try device.agent(seed: UInt64(attempt), configuration: configuration)).step()
                #expect(wake.reason == .retry, "attempt \(attempt): \(wake)")
                #expect(wake.change == nil, "attempt \(attempt): \(wake)")
                let code = wake.error?.code
                #expect(code == .connectionFailed || code == .tlsFailure, "\(String(describing: wake.error))")
                #expect(wake.error?.certificateAlert == false)
                #expect(wake.error?.reason.contains("(cacerts)") == false, "no bootstrap: \(String(describing: wake.error))")
                #expect(try device.current().certificate == before, "the identity is kept")
            }
            // An hour after the last check-in that worked, still failing: the agent takes it for a refusal and
            // bootstraps (its enrollment, on the relay's next connection, is reset too).
            device.advance(3_600)
            let wake = await (try device.agent(seed: 9, configuration: configuration)).step()
            #expect(wake.error?.reason.contains("(cacerts)") == true, "bootstrap tried: \(String(describing: wake.error))")
            // Back on the server: the identity it never refused checks in.
            #expect(await (try device.agent()).step().error == nil)
            #expect(try device.current().certificate == before)
        }
    }
}

/// A TCP relay on loopback to `target` that resets every other connection it accepts (the first, the third, ...)
/// and forwards the others: a Python process (the test process stays free of its threads).
final class ResettingRelay: Sendable {
    let port: Int
    private let process: SpawnedProcess

    static let script = """
        import socket, struct, sys, threading
        listen, target = int(sys.argv[1]), int(sys.argv[2])
        server = socket.socket(); server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(("127.0.0.1", listen)); server.listen(64)
        def pipe(a, b):
            try:
                while True:
                    data = a.recv(65536)
                    if not data: break
                    b.sendall(data)
            except OSError: pass
            for s in (a, b):
                try: s.shutdown(socket.SHUT_RDWR)
                except OSError: pass
        count = 0
        while True:
            client, _ = server.accept()
            count += 1
            if count % 2 == 1:
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                continue
            upstream = socket.create_connection(("127.0.0.1", target))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=pipe, args=(a, b), daemon=True).start()
        """

    init(target: Int) throws {
        port = try LoopbackPort.free()
        process = try SpawnedProcess.start("/usr/bin/python3", ["-c", Self.script, String(port), String(target)])
        // Listening once the port cannot be bound (a probe connection would count as one of its connections).
        let deadline = Date().addingTimeInterval(10)
        while LoopbackPort.canBind(port), Date() < deadline { usleep(20_000) }
        try #require(!LoopbackPort.canBind(port), "the relay did not start")
    }

    func stop() {
        process.signal(SIGKILL)
        _ = process.waitUntilExit()
    }
}

/// A `Clock` for ``RotationAgent/run(clock:onWake:)``: every sleep returns at once, after moving the device's and the
/// server's wall clocks by the slept duration; it throws `CancellationError` once `limit` of virtual time has passed.
final class VirtualClock: Clock, @unchecked Sendable {
    struct Instant: InstantProtocol {
        var offset: Duration
        func advanced(by duration: Duration) -> Instant { Instant(offset: offset + duration) }
        func duration(to other: Instant) -> Duration { other.offset - offset }
        static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.offset < rhs.offset }
    }

    private let lock = NSLock()
    private var current = Instant(offset: .zero)
    private var slept: [Duration] = []
    let device: TestDevice
    let limit: Duration

    init(device: TestDevice, limit: Duration) {
        self.device = device
        self.limit = limit
    }

    var now: Instant { lock.withLock { current } }
    var minimumResolution: Duration { .milliseconds(1) }
    var sleeps: [Duration] { lock.withLock { slept } }

    func sleep(until deadline: Instant, tolerance: Duration?) async throws {
        try Task.checkCancellation()
        let duration = lock.withLock {
            let duration = current.duration(to: deadline)
            slept.append(duration)
            current = deadline
            return duration
        }
        let (seconds, attoseconds) = duration.components
        device.advance(TimeInterval(seconds) + TimeInterval(attoseconds) / 1e18)
        if now.offset >= limit { throw CancellationError() }
    }
}

final class WakeLog: @unchecked Sendable {
    private let lock = NSLock()
    private var wakes: [Wake] = []
    func append(_ wake: Wake) { lock.withLock { wakes.append(wake) } }
    var all: [Wake] { lock.withLock { wakes } }
}

extension Result where Failure == AgentError {
    var failureReason: String? {
        if case .failure(let error) = self { return error.serverReason }
        return nil
    }
}
