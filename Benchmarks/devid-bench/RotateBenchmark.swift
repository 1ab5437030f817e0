import ArgumentParser
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import Foundation
import Histogram
import Logging
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import ServiceLifecycle
import SwiftASN1
import Synchronization
import X509

/// `devid-bench rotate`: a fleet renews its LDevIDs (EST `simplereenroll` over LDevID mTLS, a new key each) within
/// one hour of virtual time, against a real `DevIDServerApp` on a manual clock.
struct RotateBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "rotate",
        abstract:
            "Renew every device's LDevID with a new key (simplereenroll over LDevID mTLS) within one virtual hour."
    )

    @Option(name: .long, help: "Devices in the fleet; each renews once in the timed run.")
    var devices = 10_000

    @Option(name: .long, help: "Concurrent workers, each with at most one connection open.")
    var workers = 32

    @Option(name: .long, help: "Virtual seconds the renewals are spread over (renewal i at start + i × window ÷ N).")
    var windowSeconds = 3_600.0

    @Option(name: .long, help: "Devices that check in with their new LDevID before the sweeper runs (0 to skip).")
    var sample = 100

    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard (1...100_000).contains(devices) else { throw ValidationError("--devices must be 1-100000") }
        guard (1...1_024).contains(workers) else { throw ValidationError("--workers must be 1-1024") }
        guard windowSeconds > 0, windowSeconds <= 86_400 else {
            throw ValidationError("--window-seconds must be above 0 and at most 86400")
        }
        guard (0...devices).contains(sample) else { throw ValidationError("--sample must be 0-\(devices)") }
    }

    func run() async throws {
        let machine = MachineFacts.current()
        progress("crypto baseline (\(output.baselineSeconds) s per operation)")
        let baseline = try CryptoBaseline.measure(
            seconds: output.baselineSeconds,
            names: [
                CryptoBaseline.p256Sign, CryptoBaseline.p256Verify, CryptoBaseline.p384Verify,
                CryptoBaseline.hybridExchange,
            ])
        let run = try await RotationRun.execute(
            devices: devices, workers: workers, windowSeconds: windowSeconds, sample: sample,
            baselineSeconds: output.baselineSeconds)
        let report = RotateReport(machine: machine, baseline: baseline, run: run)
        if output.json {
            try printJSON(report)
        } else {
            print(report.render())
        }
        guard run.checks.passed else {
            progress("FAILED: " + run.checks.failures.joined(separator: "; "))
            throw ExitCode(1)
        }
    }
}

/// Moves a `ManualWallClock` forward only, whichever worker asks first.
final class VirtualClockDriver: Sendable {
    let clock: ManualWallClock
    private let mark: Mutex<Date>

    init(clock: ManualWallClock) {
        self.clock = clock
        self.mark = Mutex(clock.now())
    }

    /// Sets the clock to `date` unless it is already later.
    func advance(to date: Date) {
        mark.withLock { mark in
            guard date > mark else { return }
            mark = date
            clock.set(date)
        }
    }
}

/// A device of the rotating fleet, as the benchmark tracks it.
struct FleetDevice: Sendable {
    let id: DeviceID
    let hardwareSerial: String
}

/// The measured renewal run and its checks.
struct RotationRun: Codable, Sendable {
    struct Checks: Codable, Sendable {
        var renewals200: Int
        var renewalsOther: [String: Int]
        var transportErrors: Int
        var newCertificateForNewKey: Int
        var connectionsOpened: Int
        var handshakesCompleted: Int
        /// Devices whose registry rows, after the run, are: the old LDevID `superseded` with an overlap deadline and
        /// `replacedBy` = the new serial, and the new one `active` with a different public key.
        var registryRotated: Int
        var activeAfter: Int
        var supersededAfter: Int
        var registryCredentialsBefore: Int
        var registryCredentialsAfter: Int
        /// Sample devices whose `GET /v1/device/status` with the new LDevID answered 200.
        var sampleCheckIns200: Int
        /// Old credentials the sweeper revoked one confidence period after the sample checked in (must equal the sample).
        var revokedAfterConfidence: Int
        /// Old credentials the sweeper revoked after the overlap deadline (must equal the rest of the fleet).
        var revokedAfterOverlap: Int
        var failures: [String]
        var passed: Bool { failures.isEmpty }
    }

    var devices: Int
    var workers: Int
    var windowSeconds: Double
    /// The virtual time of the first renewal, in days after the enrollment time (the renewal window's start).
    var virtualStartDays: Double
    /// The virtual time the last renewal ran at, in seconds after the first.
    var virtualSpanSeconds: Double
    var fsync: FsyncBaseline
    var setupSeconds: Double
    var enrollSeconds: Double
    var checkInSeconds: Double
    var wallSeconds: Double
    var renewalsPerSecond: Double
    var latency: LatencySummary
    var cpuSeconds: Double
    var cpuMillisecondsPerRenewal: Double
    var cpuUtilization: Double
    var verifySeconds: Double
    /// Wall time of the sweep after the overlap deadline, and its revocations per second.
    var overlapSweepSeconds: Double
    var overlapSweepRevocationsPerSecond: Double
    var checks: Checks
    var firstErrors: [String]

    static func execute(
        devices count: Int, workers: Int, windowSeconds: Double, sample: Int, baselineSeconds: Double
    ) async throws -> RotationRun {
        let directory = try BenchDirectory(prefix: "devid-bench-rotate")
        progress("fsync baseline in \(directory.path)")
        let fsync: FsyncBaseline
        do {
            fsync = try FsyncBaseline.measure(in: directory.path, seconds: baselineSeconds)
        } catch {
            directory.remove()
            throw error
        }
        var logger = Logger(label: "devid-bench")
        logger.logLevel = .error
        var configuration = ServerConfiguration.testing(dataDirectory: directory.file("data"))
        configuration.caPassphrase = "devid-bench-passphrase"
        configuration.logLevel = .error
        // The benchmark runs the sweeper itself, at chosen virtual times; the server's own loop sweeps once at
        // start and then sleeps past the end of the run.
        configuration.rotationSweepInterval = 30 * 86_400

        progress("starting DevIDServerApp on a manual clock in \(directory.path)")
        // Starts at the real time: the client checks the server certificate against the real clock.
        let clock = ManualWallClock(Date())
        let app: DevIDServerApp
        do {
            app = try await DevIDServerApp(configuration: configuration, clock: clock, logger: logger)
        } catch {
            directory.remove()
            throw error
        }
        let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
        let runTask = Task { try await group.run() }
        func stop() async {
            await group.triggerGracefulShutdown()
            _ = try? await runTask.value
            directory.remove()
        }
        do {
            let ports = try await withTimeout(seconds: 60, "starting the server") { await app.waitUntilRunning() }
            let result = try await measure(
                state: app.state, clock: clock, estPort: ports.est, count: count, workers: workers,
                windowSeconds: windowSeconds, sample: sample, fsync: fsync)
            await stop()
            return result
        } catch {
            await stop()
            throw error
        }
    }

    // swiftlint:disable:next function_body_length
    private static func measure(
        state: ServerState, clock: ManualWallClock, estPort: Int, count: Int, workers: Int, windowSeconds: Double,
        sample: Int, fsync: FsyncBaseline
    ) async throws -> RotationRun {
        let store = state.store
        let tenant = TenantID(rawValue: "bench")!
        let enrolledAt = clock.now()
        let wall = ContinuousClock()
        let setupStart = wall.now

        // The allowlist.
        try await store.createTenant(Tenant(id: tenant, displayName: "Benchmark", createdAt: enrolledAt), audit: nil)
        let fleet = (1...count).map { index -> FleetDevice in
            let digits = String(index)
            let serial = "ROT-" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
            return FleetDevice(id: DeviceID(derivedFromHardwareSerial: serial), hardwareSerial: serial)
        }
        _ = try await store.importDevices(
            fleet.map {
                Device(
                    id: $0.id, tenant: tenant, hardwareSerial: $0.hardwareSerial, lot: nil, state: .manufactured,
                    createdAt: enrolledAt)
            },
            audit: state.auditor.event(
                actor: "devid-bench", action: "device.import", outcome: .success,
                reason: "benchmark allowlist of \(count) devices", tenant: tenant))

        guard let manufacturer = state.hierarchy.manufacturer else {
            throw BenchError("the server has no manufacturer CA")
        }
        let root = try NIOSSLCertificate(bytes: state.hierarchy.root.derBytes, format: .der)
        let counters = ConnectionCounters()
        let client = OneShotEnrollment(
            host: "127.0.0.1", port: estPort, group: MultiThreadedEventLoopGroup.singleton, counters: counters)
        let trustDomain = state.hierarchy.trustDomain

        // Setup 1 (not timed): every device enrolls with its IDevID, as `devid-bench enroll` does.
        progress("setup: enrolling \(count) devices with their IDevIDs (\(workers) workers)")
        let enrollStart = wall.now
        let enrolled: [DeviceIdentity] = try await runAll(count: count, workers: workers) { index in
            let device = fleet[index]
            let (idevidKey, idevidPKCS8) = try KeyMaterial.generateWithDER(.p256)
            let idevid = try manufacturer.issueIDevID(
                hardwareSerial: device.hardwareSerial, publicKey: idevidKey.publicKey, now: enrolledAt)
            let context = try deviceTLSContext(certificate: idevid, pkcs8: idevidPKCS8, root: root)
            let (ldevidKey, ldevidPKCS8) = try KeyMaterial.generateWithDER(.p256)
            let outcome = try await client.run(
                tlsContext: context, path: "/.well-known/est/simpleenroll",
                body: try csrBody(key: ldevidKey, device: device.id, tenant: tenant))
            guard outcome.status == 200,
                let certificate = issuedCertificate(
                    outcome.body, publicKey: ldevidKey.publicKey, device: device.id, tenant: tenant,
                    trustDomain: trustDomain)
            else {
                throw BenchError("setup enrollment of \(device.id): HTTP \(outcome.status)")
            }
            return DeviceIdentity(certificate: certificate, pkcs8: ldevidPKCS8)
        }
        let enrollSeconds = (wall.now - enrollStart).seconds

        // Setup 2 (not timed): every device checks in once with its LDevID, so the credential is confirmed as in
        // use, as it would be in a fleet that has been operating for 20 days.
        progress("setup: \(count) status check-ins with the LDevIDs")
        let checkInStart = wall.now
        let ldevidContexts: [NIOSSLContext] = try await runAll(count: count, workers: workers) { index in
            let context = try deviceTLSContext(
                certificate: enrolled[index].certificate, pkcs8: enrolled[index].pkcs8, root: root)
            let outcome = try await client.run(
                tlsContext: context, method: .GET, path: "/v1/device/status", body: nil)
            guard outcome.status == 200 else {
                throw BenchError("setup check-in of \(fleet[index].id): HTTP \(outcome.status)")
            }
            return context
        }
        let checkInSeconds = (wall.now - checkInStart).seconds

        // Renewal requests, prepared before timing: a new key and CSR per device.
        progress("preparing \(count) renewal CSRs with new keys")
        var renewalKeys: [Certificate.PrivateKey] = []
        var renewalPKCS8: [[UInt8]] = []
        var renewalBodies: [ByteBuffer] = []
        renewalKeys.reserveCapacity(count)
        renewalBodies.reserveCapacity(count)
        for device in fleet {
            let (key, pkcs8) = try KeyMaterial.generateWithDER(.p256)
            renewalKeys.append(key)
            renewalPKCS8.append(pkcs8)
            renewalBodies.append(try csrBody(key: key, device: device.id, tenant: tenant))
        }
        let bodies = renewalBodies
        let setupSeconds = (wall.now - setupStart).seconds

        // The renewal window: 2/3 of the lifetime after notBefore (no jitter), the latest of the fleet.
        let policy = state.configuration.ldevidPolicy.rotation
        guard
            let windowStart = enrolled.map({
                policy.renewalStart(notBefore: $0.certificate.notValidBefore, notAfter: $0.certificate.notValidAfter)
            }).max()
        else { throw BenchError("no device enrolled") }
        let virtualStart = max(windowStart, enrolledAt)
        let driver = VirtualClockDriver(clock: clock)
        driver.advance(to: virtualStart)
        let step = windowSeconds / Double(count)

        let credentialsBefore = try await store.credentialCount()
        let openedBefore = counters.opened.load(ordering: .relaxed)
        let handshakesBefore = counters.handshakes.load(ordering: .relaxed)

        progress(
            "timed run: \(count) renewals over \(Int(windowSeconds)) virtual s from day "
                + "\(fixed(virtualStart.timeIntervalSince(enrolledAt) / 86_400, 2)), \(workers) workers")
        let cpuStart = processCPUSeconds()
        let wallStart = wall.now
        let results: [Result<OneShotEnrollment.Outcome, any Error>] = await runAllCollecting(
            count: count, workers: workers
        ) { index in
            driver.advance(to: virtualStart.addingTimeInterval(Double(index) * step))
            return try await client.run(
                tlsContext: ldevidContexts[index], path: "/.well-known/est/simplereenroll",
                body: bodies[index])
        }
        let wallSeconds = (wall.now - wallStart).seconds
        let cpuSeconds = processCPUSeconds() - cpuStart
        let virtualEnd = clock.now()
        let connectionsOpened = counters.opened.load(ordering: .relaxed) - openedBefore
        let handshakesCompleted = counters.handshakes.load(ordering: .relaxed) - handshakesBefore

        // Checks, after timing.
        progress("verifying the responses and the registry")
        let verifyStart = wall.now
        var histogram = Histogram<UInt64>(
            lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
        var ok = 0
        var other: [String: Int] = [:]
        var transportErrors = 0
        var matching = 0
        var firstErrors: [String] = []
        var renewed: [Certificate?] = Array(repeating: nil, count: count)
        for (index, result) in results.enumerated() {
            let device = fleet[index]
            switch result {
            case .success(let outcome):
                histogram.record(outcome.latency.microseconds)
                if outcome.status == 200 {
                    ok += 1
                    if let certificate = issuedCertificate(
                        outcome.body, publicKey: renewalKeys[index].publicKey, device: device.id, tenant: tenant,
                        trustDomain: trustDomain)
                    {
                        matching += 1
                        renewed[index] = certificate
                    }
                } else {
                    other[String(outcome.status), default: 0] += 1
                    if firstErrors.count < 5 {
                        firstErrors.append(
                            "\(device.id): HTTP \(outcome.status) \(String(buffer: outcome.body).prefix(200))")
                    }
                }
            case .failure(let error):
                transportErrors += 1
                if firstErrors.count < 5 { firstErrors.append("\(device.id): \(error)") }
            }
        }

        // The registry: old superseded (overlap deadline, replacedBy), new active with another key.
        var rotated = 0
        for (index, device) in fleet.enumerated() {
            guard let new = renewed[index] else { continue }
            let old = enrolled[index].certificate
            let rows = try await store.credentials(device: device.id).filter { $0.kind == .ldevid }
            guard rows.count == 2,
                let oldRow = rows.first(where: { $0.serial == old.devidSerial }),
                let newRow = rows.first(where: { $0.serial == new.devidSerial })
            else {
                if firstErrors.count < 5 { firstErrors.append("\(device.id): \(rows.count) LDevID rows") }
                continue
            }
            // The registry keeps milliseconds: allow a second either side of the renewal's virtual time.
            let deadlineOK =
                oldRow.overlapDeadline.map {
                    $0 >= virtualStart.addingTimeInterval(policy.overlap - 1)
                        && $0 <= virtualEnd.addingTimeInterval(policy.overlap + 1)
                } ?? false
            if oldRow.status == .superseded, deadlineOK, oldRow.replacedBy == newRow.serial,
                newRow.status == .active, newRow.publicKeySHA256 != oldRow.publicKeySHA256,
                newRow.publicKeySHA256 == KeyMaterial.fingerprint(renewalKeys[index].publicKey)
            {
                rotated += 1
            } else if firstErrors.count < 5 {
                firstErrors.append("\(device.id): registry rows not rotated as expected")
            }
        }
        let counts = try await store.credentialCounts(now: virtualEnd)
        let credentialsAfter = try await store.credentialCount()
        let verifySeconds = (wall.now - verifyStart).seconds

        // The sweeper (rotation step 5): the sample checks in with its new LDevID, which confirms it; one confidence
        // period later only the sample's old credentials are revoked; after the overlap deadline all the others.
        let sampled = Array(0..<count).filter { renewed[$0] != nil }.prefix(sample)
        progress("sweeper: \(sampled.count) check-ins with the new LDevIDs, then two sweeps")
        var checkIns = 0
        for index in sampled {
            guard let certificate = renewed[index] else { continue }
            let context = try deviceTLSContext(certificate: certificate, pkcs8: renewalPKCS8[index], root: root)
            if let outcome = try? await client.run(
                tlsContext: context, method: .GET, path: "/v1/device/status", body: nil), outcome.status == 200
            {
                checkIns += 1
            }
        }
        let sweeper = RotationSweeper(state: state)
        driver.advance(to: clock.now().addingTimeInterval(policy.confidence + 60))
        let revokedAfterConfidence = try await sweeper.sweep()
        var sampleRevokedAsSuperseded = 0
        for index in sampled {
            if let row = try await store.credential(serial: enrolled[index].certificate.devidSerial),
                row.status == .revoked, row.revocationReason == .superseded
            {
                sampleRevokedAsSuperseded += 1
            }
        }
        driver.advance(to: virtualEnd.addingTimeInterval(policy.overlap + 60))
        let sweepStart = wall.now
        let revokedAfterOverlap = try await sweeper.sweep()
        let overlapSweepSeconds = (wall.now - sweepStart).seconds
        let countsAfterSweeps = try await store.credentialCounts(now: clock.now())

        var checks = Checks(
            renewals200: ok, renewalsOther: other, transportErrors: transportErrors, newCertificateForNewKey: matching,
            connectionsOpened: connectionsOpened, handshakesCompleted: handshakesCompleted,
            registryRotated: rotated, activeAfter: counts[.active] ?? 0, supersededAfter: counts[.superseded] ?? 0,
            registryCredentialsBefore: credentialsBefore, registryCredentialsAfter: credentialsAfter,
            sampleCheckIns200: checkIns, revokedAfterConfidence: revokedAfterConfidence,
            revokedAfterOverlap: revokedAfterOverlap, failures: [])
        func require(_ condition: Bool, _ failure: String) {
            if !condition { checks.failures.append(failure) }
        }
        require(ok == count, "\(ok) of \(count) renewals were 200")
        require(transportErrors == 0, "\(transportErrors) renewals failed in transport")
        require(matching == count, "\(matching) of \(count) responses held an LDevID for the new key")
        require(rotated == count, "\(rotated) of \(count) devices rotated in the registry")
        require(checks.activeAfter == count, "\(checks.activeAfter) active credentials after the run, not \(count)")
        require(
            checks.supersededAfter == count,
            "\(checks.supersededAfter) superseded credentials after the run, not \(count)")
        require(credentialsBefore == count, "the registry held \(credentialsBefore) credentials before the run")
        require(credentialsAfter == 2 * count, "the registry holds \(credentialsAfter) credentials, not \(2 * count)")
        require(checks.connectionsOpened == count, "\(checks.connectionsOpened) connections for \(count) renewals")
        require(checks.handshakesCompleted == count, "\(checks.handshakesCompleted) handshakes for \(count) renewals")
        require(checkIns == sampled.count, "\(checkIns) of \(sampled.count) check-ins with the new LDevID were 200")
        require(
            revokedAfterConfidence == sampled.count && sampleRevokedAsSuperseded == sampled.count,
            "the sweep after the confidence period revoked \(revokedAfterConfidence) (\(sampleRevokedAsSuperseded) of "
                + "the sample), not the \(sampled.count) confirmed")
        require(
            revokedAfterOverlap == count - sampled.count,
            "the sweep after the overlap deadline revoked \(revokedAfterOverlap), not \(count - sampled.count)")
        require(
            countsAfterSweeps[.revoked] == count && countsAfterSweeps[.active] == count,
            "after both sweeps: \(countsAfterSweeps[.revoked] ?? 0) revoked and \(countsAfterSweeps[.active] ?? 0) "
                + "active, not \(count) each")

        let cores = ProcessInfo.processInfo.activeProcessorCount
        return RotationRun(
            devices: count, workers: workers, windowSeconds: windowSeconds,
            virtualStartDays: virtualStart.timeIntervalSince(enrolledAt) / 86_400,
            virtualSpanSeconds: virtualEnd.timeIntervalSince(virtualStart), fsync: fsync, setupSeconds: setupSeconds,
            enrollSeconds: enrollSeconds, checkInSeconds: checkInSeconds, wallSeconds: wallSeconds,
            renewalsPerSecond: Double(count) / wallSeconds, latency: LatencySummary(microseconds: histogram),
            cpuSeconds: cpuSeconds, cpuMillisecondsPerRenewal: cpuSeconds * 1_000 / Double(count),
            cpuUtilization: cpuSeconds / (wallSeconds * Double(cores)), verifySeconds: verifySeconds,
            overlapSweepSeconds: overlapSweepSeconds,
            overlapSweepRevocationsPerSecond: Double(revokedAfterOverlap) / max(overlapSweepSeconds, 1e-9),
            checks: checks, firstErrors: firstErrors)
    }

    /// A device's LDevID and its key.
    struct DeviceIdentity: Sendable {
        let certificate: Certificate
        let pkcs8: [UInt8]
    }

    /// Runs `body` for indexes `0..<count` with `workers` workers; the first error stops everything.
    private static func runAll<T: Sendable>(
        count: Int, workers: Int, _ body: @escaping @Sendable (Int) async throws -> T
    ) async throws -> [T] {
        let results = await runAllCollecting(count: count, workers: workers, body)
        return try results.map { try $0.get() }
    }

    /// Runs `body` for indexes `0..<count` with `workers` workers, handing out indexes in increasing order;
    /// results in index order.
    private static func runAllCollecting<T: Sendable>(
        count: Int, workers: Int, _ body: @escaping @Sendable (Int) async throws -> T
    ) async -> [Result<T, any Error>] {
        let next = IndexDispenser()
        return await withTaskGroup(of: [(Int, Result<T, any Error>)].self) { group in
            for _ in 0..<min(workers, count) {
                group.addTask {
                    var mine: [(Int, Result<T, any Error>)] = []
                    while true {
                        let index = next.take()
                        guard index < count else { break }
                        do {
                            mine.append((index, .success(try await body(index))))
                        } catch {
                            mine.append((index, .failure(error)))
                        }
                    }
                    return mine
                }
            }
            var results = [Result<T, any Error>?](repeating: nil, count: count)
            for await batch in group {
                for (index, result) in batch { results[index] = result }
            }
            return results.map { $0 ?? .failure(BenchError("not run")) }
        }
    }

    static func deviceTLSContext(certificate: Certificate, pkcs8: [UInt8], root: NIOSSLCertificate) throws
        -> NIOSSLContext
    {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.minimumTLSVersion = .tlsv12
        tls.certificateVerification = .fullVerification
        tls.trustRoots = .certificates([root])
        tls.certificateChain = [.certificate(try NIOSSLCertificate(bytes: certificate.derBytes, format: .der))]
        tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: pkcs8, format: .der))
        return try NIOSSLContext(configuration: tls)
    }

    /// A base64 PKCS#10 for `key`, named as DevID wants (`CN=<device>, O=<tenant>`).
    static func csrBody(key: Certificate.PrivateKey, device: DeviceID, tenant: TenantID) throws -> ByteBuffer {
        let csr = try CertificateSigningRequest(
            version: .v1,
            subject: try DistinguishedName {
                OrganizationName(tenant.rawValue)
                CommonName(device.rawValue)
            },
            privateKey: key, attributes: .init(), signatureAlgorithm: .ecdsaWithSHA256)
        var serializer = DER.Serializer()
        try serializer.serialize(csr)
        return ByteBuffer(string: ESTBase64.encode(serializer.serializedBytes))
    }

    /// The LDevID in an EST certs-only response, if it is for `publicKey`, `device` and `tenant`.
    static func issuedCertificate(
        _ body: ByteBuffer, publicKey: Certificate.PublicKey, device: DeviceID, tenant: TenantID, trustDomain: String
    ) -> Certificate? {
        guard let der = ESTBase64.decode(Array(buffer: body)),
            let cms = try? CertsOnlyCMS(derEncoded: der),
            let certificate = cms.certificates.first(where: { $0.publicKey == publicKey }),
            let identity = DeviceNames.ldevidIdentity(of: certificate, trustDomain: trustDomain),
            identity.device == device, identity.tenant == tenant
        else { return nil }
        return certificate
    }
}

struct RotateReport: Codable, Sendable {
    var benchmark = "rotate"
    var machine: MachineFacts
    var baseline: CryptoBaseline
    var run: RotationRun
    /// A renewal costs the public-key operations of an enrollment: the server's verifier anchors the issuing CA
    /// itself (its P-384 signature by the root is checked once, when the hierarchy loads), so an LDevID chain costs it
    /// one P-256 verify, as an IDevID chain does. Until 2026-11-26 it also verified the issuing CA against the P-384
    /// root at every handshake, and this model counted 2 P-384 verifies.
    var floor: EnrollmentFloor

    init(machine: MachineFacts, baseline: CryptoBaseline, run: RotationRun) {
        self.machine = machine
        self.baseline = baseline
        self.run = run
        self.floor = EnrollmentFloor(
            baseline: baseline, rate: run.renewalsPerSecond, cpuMilliseconds: run.cpuMillisecondsPerRenewal,
            fsyncsPerSecond: run.fsync.fsyncsPerSecond, p384Verifies: 1)
    }

    func render() -> String {
        var setup = Table(title: "devid-bench rotate")
        setup.add("machine", "\(machine.cores) cores, \(machine.cpuModel); load at start \(machine.loadAverageAtStart)")
        setup.add("date, build", "\(machine.date), \(machine.build)")
        setup.add(
            "run",
            "\(run.devices) renewals (simplereenroll, LDevID mTLS, new key, a new TLS connection each), "
                + "\(run.workers) workers")
        setup.add(
            "virtual time",
            "renewals from day \(fixed(run.virtualStartDays, 2)) after enrollment, spread over "
                + "\(fixed(run.windowSeconds, 0)) s; the last ran at +\(fixed(run.virtualSpanSeconds, 1)) s")
        setup.add(
            "setup (not timed)",
            "\(fixed(run.setupSeconds, 1)) s: \(run.devices) IDevID enrollments \(fixed(run.enrollSeconds, 1)) s, "
                + "\(run.devices) status check-ins \(fixed(run.checkInSeconds, 1)) s, new keys and CSRs")

        var results = Table(title: "Results")
        results.add("wall time", "\(fixed(run.wallSeconds, 3)) s")
        results.add("renewals/s", fixed(run.renewalsPerSecond, 1))
        let latency = run.latency
        results.add(
            "latency ms",
            "p50 \(fixed(latency.p50Ms, 2))  p90 \(fixed(latency.p90Ms, 2))  p99 \(fixed(latency.p99Ms, 2))  "
                + "p99.9 \(fixed(latency.p999Ms, 2))  max \(fixed(latency.maxMs, 2))  (mean \(fixed(latency.meanMs, 2)))"
        )
        results.add(
            "CPU (whole process)",
            "\(fixed(run.cpuSeconds, 2)) s = \(fixed(run.cpuMillisecondsPerRenewal, 2)) ms per renewal; "
                + "cores \(percent(run.cpuUtilization)) busy")
        results.add(
            "sweep after overlap",
            "\(run.checks.revokedAfterOverlap) superseded credentials revoked in \(fixed(run.overlapSweepSeconds, 2)) s "
                + "(\(fixed(run.overlapSweepRevocationsPerSecond, 0))/s)")

        let checks = run.checks
        var checked = Table(title: "Checks (\(checks.passed ? "all passed" : "FAILED"))")
        checked.add(
            "HTTP 200",
            "\(checks.renewals200) of \(run.devices)"
                + (checks.renewalsOther.isEmpty ? "" : "; other: \(checks.renewalsOther)")
                + "; transport errors: \(checks.transportErrors)")
        checked.add("LDevID for the new key", "\(checks.newCertificateForNewKey) of \(run.devices)")
        checked.add(
            "connections / handshakes",
            "\(checks.connectionsOpened) opened, \(checks.handshakesCompleted) TLS handshakes completed")
        checked.add(
            "registry rotated",
            "\(checks.registryRotated) of \(run.devices): old superseded with overlap deadline and replacedBy, "
                + "new active with another key")
        checked.add(
            "registry counts",
            "\(checks.registryCredentialsBefore) credentials before, \(checks.registryCredentialsAfter) after; "
                + "\(checks.activeAfter) active, \(checks.supersededAfter) superseded")
        checked.add(
            "sweeper",
            "\(checks.sampleCheckIns200) check-ins with the new LDevID; after the confidence period "
                + "\(checks.revokedAfterConfidence) old revoked; after the overlap deadline \(checks.revokedAfterOverlap)"
        )
        for failure in checks.failures { checked.add("FAILED", failure) }
        for error in run.firstErrors { checked.add("error", error) }

        var ratios = Table(title: "Against the crypto floor (an enrollment's public-key work)")
        let sign = baseline.operation(CryptoBaseline.p256Sign)
        ratios.add(
            "÷ P-256 sign rate",
            "\(percent(floor.fractionOfP256SignRateAllCores)) of \(fixed(sign.opsPerSecondAllCores, 0))/s "
                + "(× \(baseline.cores) cores); \(percent(floor.fractionOfP256SignRateOneCore)) of one core")
        ratios.add(
            "crypto per renewal",
            "\(floor.p256SignsPerEnrollment) P-256 signs + \(floor.p256VerifiesPerEnrollment) P-256 verifies + "
                + "\(floor.p384VerifiesPerEnrollment) P-384 verifies + \(floor.keyExchangesPerEnrollment) "
                + "X25519MLKEM768 exchange = \(fixed(floor.cryptoMicrosecondsPerEnrollment, 0)) µs of one core")
        ratios.add(
            "crypto ceiling",
            "\(fixed(floor.cryptoCeilingEnrollmentsPerSecond, 0)) renewals/s on \(baseline.cores) cores; "
                + "measured is \(percent(floor.fractionOfCryptoCeiling)) of it")
        ratios.add("crypto share of CPU", "\(percent(floor.cryptoShareOfCPUTime)) of the measured CPU per renewal")
        ratios.add(
            "fsync ceiling",
            "4 KiB append + fsync: \(fixed(run.fsync.fsyncsPerSecond, 0))/s "
                + "(\(fixed(run.fsync.microsecondsPerFsync, 0)) µs); renewals/s are "
                + "\(percent(floor.fractionOfFsyncRate)) of it")
        ratios.add(
            "the issue's load",
            "\(run.devices) renewals in \(fixed(run.windowSeconds, 0)) s = \(fixed(Double(run.devices) / run.windowSeconds, 2))/s; sustained is "
                + "\(fixed(run.renewalsPerSecond / (Double(run.devices) / run.windowSeconds), 0))× that")

        return [setup.render(), baseline.table().render(), results.render(), checked.render(), ratios.render()]
            .joined(separator: "\n")
    }
}
