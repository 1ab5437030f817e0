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

/// `devid-bench enroll`: EST `simpleenroll` with IDevID mTLS against a real `DevIDServerApp`, every enrollment on
/// a new TLS connection, with `--concurrency` workers.
struct EnrollBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enroll",
        abstract: "Enroll allowlisted IDevID devices over real mTLS, one new TLS connection per enrollment."
    )

    @Option(name: .long, help: "Devices enrolled in the timed run.")
    var devices = 2_000

    @Option(name: .long, help: "Concurrent workers, each with at most one connection open.")
    var concurrency = 32

    @Option(name: .long, help: "Extra devices enrolled the same way before timing starts (not in the numbers).")
    var warmup = 32

    @Option(name: .long, help: "A PostgreSQL registry (an empty database): postgres://USER@HOST:PORT/DATABASE.")
    var registry: String?

    @Option(name: .long, help: "The file holding the PostgreSQL registry's password.")
    var registryPasswordFile: String?

    @Option(name: .long, help: "Servers on the one registry (PostgreSQL only); the workers take them in turn.")
    var servers = 1

    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard (1...8).contains(servers) else { throw ValidationError("--servers must be 1-8") }
        guard servers == 1 || registry != nil else { throw ValidationError("--servers above 1 needs --registry") }
        guard (1...100_000).contains(devices) else { throw ValidationError("--devices must be 1-100000") }
        guard (1...1_024).contains(concurrency) else { throw ValidationError("--concurrency must be 1-1024") }
        guard (0...10_000).contains(warmup) else { throw ValidationError("--warmup must be 0-10000") }
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
        let run = try await EnrollmentRun.execute(
            devices: devices, concurrency: concurrency, warmup: warmup, baselineSeconds: output.baselineSeconds,
            registry: registry, registryPasswordFile: registryPasswordFile, servers: servers)
        let report = EnrollReport(machine: machine, baseline: baseline, run: run)
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

/// One prepared device: everything an enrollment needs, built before timing.
struct PreparedDevice: Sendable {
    let id: DeviceID
    /// Holds this device's IDevID and key, and trusts only the DevID root.
    let tlsContext: NIOSSLContext
    /// The base64 PKCS#10 body, for a fresh LDevID key.
    let body: ByteBuffer
    let ldevidPublicKey: Certificate.PublicKey
}

/// The measured run and its checks.
struct EnrollmentRun: Codable, Sendable {
    struct Checks: Codable, Sendable {
        var responses200: Int
        var responsesOther: [String: Int]
        var transportErrors: Int
        var certificatesForCSRKey: Int
        var connectionsOpened: Int
        var handshakesCompleted: Int
        var closedByServerAfterResponse: Int
        var idleTimeouts: Int
        var tls13Connections: Int
        var tls12Connections: Int
        var registryCredentialsBefore: Int
        var registryCredentialsAfter: Int
        var failures: [String]
        var passed: Bool { failures.isEmpty }
    }

    var devices: Int
    var concurrency: Int
    var warmup: Int
    /// fsync of a 4 KiB append in the directory that holds the registry, measured before the server starts.
    var fsync: FsyncBaseline
    var prepareSeconds: Double
    var wallSeconds: Double
    var enrollmentsPerSecond: Double
    var latency: LatencySummary
    /// CPU time of the whole process (server and client share it) during the timed run.
    var cpuSeconds: Double
    var cpuMillisecondsPerEnrollment: Double
    /// `cpuSeconds / (wallSeconds × cores)`: how busy the machine's cores were.
    var cpuUtilization: Double
    /// The registry: `sqlite`, or the PostgreSQL URL (no password), and how many servers shared it.
    var registry: String = "sqlite"
    var servers: Int = 1
    /// Busy CPU of the whole machine (every process: the servers, the client, PostgreSQL) during the timed run,
    /// from /proc/stat, per enrollment.
    var machineCPUMillisecondsPerEnrollment: Double = 0
    var checks: Checks
    var firstErrors: [String]

    static func execute(
        devices count: Int, concurrency: Int, warmup: Int, baselineSeconds: Double, registry: String? = nil,
        registryPasswordFile: String? = nil, servers: Int = 1
    ) async throws -> EnrollmentRun {
        let directory = try BenchDirectory(prefix: "devid-bench-enroll")
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
        configuration.registryURL = registry
        configuration.registryPasswordFile = registryPasswordFile
        // Capacity, not back-pressure: 32 workers from one address are far over the per-address limit.
        configuration.rateLimits = .unlimited

        progress("starting DevIDServerApp in \(directory.path)")
        let app: DevIDServerApp
        do {
            app = try await DevIDServerApp(configuration: configuration, clock: SystemWallClock(), logger: logger)
        } catch {
            directory.remove()
            throw error
        }
        var groups: [(ServiceGroup, Task<Void, any Error>)] = []
        func start(_ app: DevIDServerApp) -> ServiceGroup {
            let group = ServiceGroup(configuration: .init(services: [app], logger: logger))
            groups.append((group, Task { try await group.run() }))
            return group
        }
        func stop() async {
            for (group, task) in groups {
                await group.triggerGracefulShutdown()
                _ = try? await task.value
            }
            directory.remove()
        }
        _ = start(app)
        do {
            var estPorts = [try await withTimeout(seconds: 60, "starting the server") { await app.waitUntilRunning() }.est]
            // More servers on the same registry: a copy of the first one's data directory each, as deployed.
            for index in 1..<servers {
                let dataDirectory = directory.file("data-\(index)")
                try FileManager.default.copyItem(atPath: configuration.dataDirectory, toPath: dataDirectory)
                var other = configuration
                other.dataDirectory = dataDirectory
                let otherApp = try await DevIDServerApp(configuration: other, clock: SystemWallClock(), logger: logger)
                _ = start(otherApp)
                estPorts.append(
                    try await withTimeout(seconds: 60, "starting server \(index + 1)") { await otherApp.waitUntilRunning() }.est)
            }
            var result = try await measure(
                state: app.state, estPorts: estPorts, count: count, concurrency: concurrency, warmup: warmup,
                fsync: fsync)
            result.registry = (try? configuration.registryLocation()?.description) ?? "sqlite"
            result.servers = servers
            await stop()
            return result
        } catch {
            await stop()
            throw error
        }
    }

    /// Busy and total jiffies of the whole machine (/proc/stat's first line).
    static func machineJiffies() -> (busy: Double, total: Double) {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8),
            let line = text.split(separator: "\n").first
        else { return (0, 0) }
        let values = line.split(separator: " ").dropFirst().compactMap { Double($0) }
        guard values.count >= 5 else { return (0, 0) }
        let idle = values[3] + values[4]
        let total = values.reduce(0, +)
        return (total - idle, total)
    }

    private static func measure(
        state: ServerState, estPorts: [Int], count: Int, concurrency: Int, warmup: Int, fsync: FsyncBaseline
    ) async throws -> EnrollmentRun {
        let store = state.store
        let tenant = TenantID(rawValue: "bench")!
        let now = Date()
        let total = warmup + count

        // The allowlist: one tenant, `total` manufactured devices, imported in one transaction.
        try await store.createTenant(Tenant(id: tenant, displayName: "Benchmark", createdAt: now), audit: nil)
        let serials = (1...total).map { index in
            let digits = String(index)
            return "BENCH-" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
        }
        let rows = serials.map {
            Device(
                id: DeviceID(derivedFromHardwareSerial: $0), tenant: tenant, hardwareSerial: $0, lot: nil,
                state: .manufactured, createdAt: now)
        }
        _ = try await store.importDevices(
            rows,
            audit: state.auditor.event(
                actor: "devid-bench", action: "device.import", outcome: .success,
                reason: "benchmark allowlist of \(total) devices", tenant: tenant))

        // IDevIDs from the server's own manufacturer CA, TLS contexts and CSRs: all before timing.
        progress("preparing \(total) devices (IDevID, TLS context, CSR)")
        let clock = ContinuousClock()
        let prepareStart = clock.now
        guard let manufacturer = state.hierarchy.manufacturer else {
            throw BenchError("the server has no manufacturer CA")
        }
        let root = try NIOSSLCertificate(bytes: state.hierarchy.root.derBytes, format: .der)
        var prepared: [PreparedDevice] = []
        prepared.reserveCapacity(total)
        for (serial, row) in zip(serials, rows) {
            let (idevidKey, idevidPKCS8) = try KeyMaterial.generateWithDER(.p256)
            let idevid = try manufacturer.issueIDevID(hardwareSerial: serial, publicKey: idevidKey.publicKey, now: now)
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.minimumTLSVersion = .tlsv12
            tls.certificateVerification = .fullVerification
            tls.trustRoots = .certificates([root])
            tls.certificateChain = [.certificate(try NIOSSLCertificate(bytes: idevid.derBytes, format: .der))]
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: idevidPKCS8, format: .der))
            let ldevidKey = try KeyMaterial.generate(.p256)
            let csr = try CertificateSigningRequest(
                version: .v1,
                subject: try DistinguishedName {
                    OrganizationName(tenant.rawValue)
                    CommonName(row.id.rawValue)
                },
                privateKey: ldevidKey, attributes: .init(), signatureAlgorithm: .ecdsaWithSHA256)
            var serializer = DER.Serializer()
            try serializer.serialize(csr)
            prepared.append(
                PreparedDevice(
                    id: row.id, tlsContext: try NIOSSLContext(configuration: tls),
                    body: ByteBuffer(string: ESTBase64.encode(serializer.serializedBytes)),
                    ldevidPublicKey: ldevidKey.publicKey))
        }
        let prepareSeconds = (clock.now - prepareStart).seconds
        let credentialsBefore = try await store.credentialCount()

        let counters = ConnectionCounters()
        let clients = estPorts.map {
            OneShotEnrollment(
                host: "127.0.0.1", port: $0, group: MultiThreadedEventLoopGroup.singleton, counters: counters)
        }
        if warmup > 0 {
            progress("warm-up: \(warmup) enrollments")
            _ = await enrollAll(Array(prepared.prefix(warmup)), clients: clients, concurrency: concurrency)
        }
        let timed = Array(prepared.dropFirst(warmup))
        let openedBefore = counters.opened.load(ordering: .relaxed)
        let handshakesBefore = counters.handshakes.load(ordering: .relaxed)
        let closedBefore = counters.closedByServer.load(ordering: .relaxed)
        let tls13Before = counters.tls13.load(ordering: .relaxed)
        let tls12Before = counters.tls12.load(ordering: .relaxed)
        let registryBeforeTimed = try await store.credentialCount()

        progress("timed run: \(count) enrollments, \(concurrency) workers")
        let cpuStart = processCPUSeconds()
        let machineStart = machineJiffies()
        let wallStart = clock.now
        let results = await enrollAll(timed, clients: clients, concurrency: concurrency)
        let machineEnd = machineJiffies()
        // Jiffies are 1/100 s (USER_HZ) on Linux.
        let machineCPUSeconds = (machineEnd.busy - machineStart.busy) / 100
        let wallSeconds = (clock.now - wallStart).seconds
        let cpuSeconds = processCPUSeconds() - cpuStart

        // Checks, after timing.
        var histogram = Histogram<UInt64>(
            lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
        var ok = 0
        var other: [String: Int] = [:]
        var transportErrors = 0
        var matching = 0
        var firstErrors: [String] = []
        for (device, result) in zip(timed, results) {
            switch result {
            case .success(let outcome):
                histogram.record(outcome.latency.microseconds)
                if outcome.status == 200 {
                    ok += 1
                    if issuedCertificate(
                        outcome.body, matches: device, tenant: tenant, trustDomain: state.hierarchy.trustDomain)
                    {
                        matching += 1
                    }
                } else {
                    other[String(outcome.status), default: 0] += 1
                    if firstErrors.count < 5 {
                        firstErrors.append("\(device.id): HTTP \(outcome.status) \(String(buffer: outcome.body).prefix(200))")
                    }
                }
            case .failure(let error):
                transportErrors += 1
                if firstErrors.count < 5 { firstErrors.append("\(device.id): \(error)") }
            }
        }
        let registryAfter = try await store.credentialCount()
        var checks = Checks(
            responses200: ok, responsesOther: other, transportErrors: transportErrors, certificatesForCSRKey: matching,
            connectionsOpened: counters.opened.load(ordering: .relaxed) - openedBefore,
            handshakesCompleted: counters.handshakes.load(ordering: .relaxed) - handshakesBefore,
            closedByServerAfterResponse: counters.closedByServer.load(ordering: .relaxed) - closedBefore,
            idleTimeouts: counters.idleTimeouts.load(ordering: .relaxed),
            tls13Connections: counters.tls13.load(ordering: .relaxed) - tls13Before,
            tls12Connections: counters.tls12.load(ordering: .relaxed) - tls12Before,
            registryCredentialsBefore: registryBeforeTimed, registryCredentialsAfter: registryAfter, failures: [])
        func require(_ condition: Bool, _ failure: String) {
            if !condition { checks.failures.append(failure) }
        }
        require(ok == count, "\(ok) of \(count) responses were 200")
        require(matching == count, "\(matching) of \(count) responses held an LDevID for the CSR's key and device")
        require(checks.connectionsOpened == count, "\(checks.connectionsOpened) connections for \(count) enrollments")
        require(checks.handshakesCompleted == count, "\(checks.handshakesCompleted) TLS handshakes for \(count) enrollments")
        require(
            checks.closedByServerAfterResponse == count,
            "the server closed \(checks.closedByServerAfterResponse) of \(count) connections after the response")
        require(checks.idleTimeouts == 0, "\(checks.idleTimeouts) connections timed out")
        require(credentialsBefore == 0, "the registry held \(credentialsBefore) credentials before the warm-up")
        require(registryAfter - registryBeforeTimed == count, "the registry gained \(registryAfter - registryBeforeTimed) credentials, not \(count)")
        require(registryAfter == total, "the registry holds \(registryAfter) credentials, not \(total)")

        let cores = ProcessInfo.processInfo.activeProcessorCount
        return EnrollmentRun(
            devices: count, concurrency: concurrency, warmup: warmup, fsync: fsync, prepareSeconds: prepareSeconds,
            wallSeconds: wallSeconds, enrollmentsPerSecond: Double(count) / wallSeconds,
            latency: LatencySummary(microseconds: histogram), cpuSeconds: cpuSeconds,
            cpuMillisecondsPerEnrollment: cpuSeconds * 1_000 / Double(count),
            cpuUtilization: cpuSeconds / (wallSeconds * Double(cores)),
            machineCPUMillisecondsPerEnrollment: machineCPUSeconds * 1_000 / Double(max(1, count)), checks: checks,
            firstErrors: firstErrors)
    }

    /// Enrolls every device once with `concurrency` workers; results in the order of `devices`.
    ///
    /// With `cacertsOnly`, each device instead sends `GET /.well-known/est/cacerts` on its new mTLS connection: the same
    /// handshake and one HTTP exchange, without the enrollment's work (the baseline of `enroll-server-cpu`).
    static func enrollAll(
        _ devices: [PreparedDevice], clients: [OneShotEnrollment], concurrency: Int, cacertsOnly: Bool = false
    ) async -> [Result<OneShotEnrollment.Outcome, any Error>] {
        let next = IndexDispenser()
        return await withTaskGroup(of: [(Int, Result<OneShotEnrollment.Outcome, any Error>)].self) { group in
            for worker in 0..<min(concurrency, devices.count) {
                // The workers take the servers in turn, as a load balancer would spread devices.
                let client = clients[worker % clients.count]
                group.addTask {
                    var mine: [(Int, Result<OneShotEnrollment.Outcome, any Error>)] = []
                    while true {
                        let index = next.take()
                        guard index < devices.count else { break }
                        let device = devices[index]
                        do {
                            let outcome =
                                cacertsOnly
                                ? try await client.run(
                                    tlsContext: device.tlsContext, method: .GET, path: "/.well-known/est/cacerts",
                                    body: nil)
                                : try await client.run(
                                    tlsContext: device.tlsContext, path: "/.well-known/est/simpleenroll",
                                    body: device.body)
                            mine.append((index, .success(outcome)))
                        } catch {
                            mine.append((index, .failure(error)))
                        }
                    }
                    return mine
                }
            }
            var results = [Result<OneShotEnrollment.Outcome, any Error>?](repeating: nil, count: devices.count)
            for await batch in group {
                for (index, result) in batch { results[index] = result }
            }
            return results.map { $0 ?? .failure(BenchError("not run")) }
        }
    }

    /// True when the EST response is a certs-only CMS holding an LDevID for this device's CSR key, device and tenant.
    private static func issuedCertificate(
        _ body: ByteBuffer, matches device: PreparedDevice, tenant: TenantID, trustDomain: String
    ) -> Bool {
        guard let der = ESTBase64.decode(Array(buffer: body)),
            let cms = try? CertsOnlyCMS(derEncoded: der),
            let certificate = cms.certificates.first(where: { $0.publicKey == device.ldevidPublicKey }),
            let identity = DeviceNames.ldevidIdentity(of: certificate, trustDomain: trustDomain)
        else { return false }
        return identity.device == device.id && identity.tenant == tenant
    }
}

/// Hands out indexes 0, 1, 2, ... to the workers.
final class IndexDispenser: Sendable {
    private let next = Atomic<Int>(0)

    func take() -> Int { next.add(1, ordering: .relaxed).oldValue }
}
