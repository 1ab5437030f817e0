import ArgumentParser
import DevIDCore
import DevIDPKI
import DevIDServer
import Foundation
import Histogram
import NIOCore
import NIOPosix
import NIOSSL
import SwiftASN1
import Synchronization
import X509

#if canImport(Glibc)
import Glibc
#endif
#if canImport(CoreFoundation)
import CoreFoundation  // timespec's members, for clock_gettime
#endif

/// `devid-bench enroll-server-cpu`: EST `simpleenroll` against a `devid serve` running as its own process, reading
/// that process's CPU time (utime + stime from `/proc/PID/stat`) before and after the timed run.
///
/// The server's CPU per enrollment is then measured from outside it, so this client's own work (TLS, CSRs, checks)
/// is not counted, and other load on the machine changes wall time but hardly the figure. `Benchmarks/cpu/enroll-cpu`
/// starts the server, mints and imports the lot, and runs this.
struct ServerCPUEnrollBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "enroll-server-cpu",
        abstract: "Enroll a minted lot against an external `devid serve`; report the server's CPU per enrollment."
    )

    @Option(name: .long, help: "The server's data directory (server.json gives its EST port and pid).")
    var dataDir: String

    @Option(name: .long, help: "Output directory of `devid factory mint` (manifest.json, <device>/idevid.*).")
    var lotDir: String

    @Option(name: .long, help: "Devices enrolled in the timed run (the lot must hold warmup + devices).")
    var devices = 2_000

    @Option(name: .long, help: "Concurrent workers, each with at most one connection open.")
    var concurrency = 16

    @Option(name: .long, help: "Devices enrolled before timing (not in the numbers).")
    var warmup = 64

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Before the timed run, this many other devices of the lot each send GET /.well-known/est/cacerts on a new "
                + "mTLS connection with their IDevID: the server's CPU per connection and request without an enrollment."
        ))
    var baseline = 0

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Key-exchange groups the client offers, comma-separated (x25519, x25519mlkem768, p256); by default "
                + "BoringSSL's, which start with X25519MLKEM768. OpenSSL 3.0, curl and mbedTLS devices offer x25519."
        ))
    var groups: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Write the baseline's and the timed run's start and end (CLOCK_MONOTONIC seconds, the clock of "
                + "`perf record -k CLOCK_MONOTONIC`) and server CPU to this JSON file, for `Benchmarks/cpu/perf-buckets`."
        ))
    var phasesFile: String?

    @Flag(name: .long, help: "Print one JSON document on stdout instead of the table.")
    var json = false

    static func curves(_ list: String) throws -> [NIOTLSCurve] {
        try list.split(separator: ",").map {
            switch $0.trimmingCharacters(in: .whitespaces).lowercased() {
            case "x25519": return .x25519
            case "x25519mlkem768": return .x25519_MLKEM768
            case "p256": return .secp256r1
            default: throw BenchError("unknown group \($0) (x25519, x25519mlkem768, p256)")
            }
        }
    }

    func run() async throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: dataDir + "/server.json"))
        let endpoints = try JSONDecoder().decode(ServerEndpoints.self, from: data)
        guard let url = URLComponents(string: endpoints.estURL), let port = url.port else {
            throw BenchError("server.json has no EST port")
        }
        let pid = endpoints.pid
        let manifest = try JSONDecoder.iso8601.decode(
            LotManifest.self, from: Data(contentsOf: URL(fileURLWithPath: lotDir + "/manifest.json")))
        // The baseline's devices come after the enrolled ones: an IDevID seen once is in the server's verified-leaf
        // cache, which must not make the enrollments cheaper than a fleet's first enrollments are.
        let total = warmup + devices + baseline
        guard manifest.devices.count >= total else {
            throw BenchError("the lot holds \(manifest.devices.count) devices; \(total) are needed")
        }

        let curves = try groups.map(Self.curves)
        progress("preparing \(total) devices (TLS context with the minted IDevID, fresh LDevID key, CSR)")
        var prepared: [PreparedDevice] = []
        for entry in manifest.devices.prefix(total) {
            let directory = lotDir + "/" + entry.deviceID.rawValue
            var tls = TLSConfiguration.makeClientConfiguration()
            tls.minimumTLSVersion = .tlsv12
            // The server's chain is not checked by this client: it changes nothing the server does, and keeps the
            // client's CPU (which shares the machine) low.
            tls.certificateVerification = .none
            if let curves { tls.curves = curves }
            tls.certificateChain = try NIOSSLCertificate.fromPEMFile(directory + "/idevid.crt").map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(file: directory + "/idevid.key", format: .pem))
            let ldevidKey = try KeyMaterial.generate(.p256)
            let csr = try CertificateSigningRequest(
                version: .v1,
                subject: try DistinguishedName {
                    OrganizationName(manifest.tenant.rawValue)
                    CommonName(entry.deviceID.rawValue)
                },
                privateKey: ldevidKey, attributes: .init(), signatureAlgorithm: .ecdsaWithSHA256)
            var serializer = DER.Serializer()
            try serializer.serialize(csr)
            prepared.append(
                PreparedDevice(
                    id: entry.deviceID, tlsContext: try NIOSSLContext(configuration: tls),
                    body: ByteBuffer(string: ESTBase64.encode(serializer.serializedBytes)),
                    ldevidPublicKey: ldevidKey.publicKey))
        }

        let counters = ConnectionCounters()
        let client = OneShotEnrollment(
            host: "127.0.0.1", port: port, group: MultiThreadedEventLoopGroup.singleton, counters: counters)
        if warmup > 0 {
            progress("warm-up: \(warmup) enrollments")
            let results = await EnrollmentRun.enrollAll(
                Array(prepared.prefix(warmup)), clients: [client], concurrency: concurrency)
            let failed = results.filter { (try? $0.get().status) != 200 }.count
            guard failed == 0 else {
                let failure = results.first { (try? $0.get().status) != 200 }!
                throw BenchError("\(failed) warm-up enrollments failed, the first: \(failure)")
            }
        }
        let timed = Array(prepared.dropFirst(warmup).prefix(devices))
        var baselineReport: Baseline?
        var phases: [Phase] = []
        if baseline > 0 {
            progress("baseline: \(baseline) × GET /.well-known/est/cacerts, a new mTLS connection each")
            let devices = Array(prepared.suffix(baseline))
            let cpuStart = try ProcessCPU.seconds(pid: pid)
            let start = Phase.monotonicSeconds()
            let results = await EnrollmentRun.enrollAll(devices, clients: [client], concurrency: concurrency, cacertsOnly: true)
            let end = Phase.monotonicSeconds()
            let cpu = try ProcessCPU.seconds(pid: pid) - cpuStart
            phases.append(
                Phase(
                    name: "baseline", start: start, end: end, requests: baseline,
                    serverCPUMillisecondsPerRequest: cpu * 1_000 / Double(baseline)))
            let ok = results.filter { (try? $0.get().status) == 200 }.count
            guard ok == baseline else {
                let failure = results.first { (try? $0.get().status) != 200 }!
                throw BenchError("\(baseline - ok) baseline requests failed, the first: \(failure)")
            }
            baselineReport = Baseline(
                requests: baseline, serverCPUMillisecondsPerRequest: phases[0].serverCPUMillisecondsPerRequest)
        }
        let load = ((try? String(contentsOfFile: "/proc/loadavg", encoding: .utf8)) ?? "")
            .split(separator: " ").prefix(3).joined(separator: " ")
        progress("timed run: \(devices) enrollments, \(concurrency) workers, server pid \(pid)")
        let clock = ContinuousClock()
        let cpuStart = try ProcessCPU.seconds(pid: pid)
        let ownStart = processCPUSeconds()
        let wallStart = clock.now
        let start = Phase.monotonicSeconds()
        let results = await EnrollmentRun.enrollAll(timed, clients: [client], concurrency: concurrency)
        let end = Phase.monotonicSeconds()
        let wall = (clock.now - wallStart).seconds
        let cpu = try ProcessCPU.seconds(pid: pid) - cpuStart
        let own = processCPUSeconds() - ownStart
        phases.append(
            Phase(
                name: "enrollment", start: start, end: end, requests: devices,
                serverCPUMillisecondsPerRequest: cpu * 1_000 / Double(devices)))
        if let phasesFile {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(phases).write(to: URL(fileURLWithPath: phasesFile))
        }

        var histogram = Histogram<UInt64>(
            lowestDiscernibleValue: 1, highestTrackableValue: 120_000_000, numberOfSignificantValueDigits: .three)
        var ok = 0
        var matching = 0
        var errors: [String] = []
        for (device, result) in zip(timed, results) {
            switch result {
            case .success(let outcome):
                histogram.record(outcome.latency.microseconds)
                if outcome.status == 200 {
                    ok += 1
                    if Self.holdsLDevID(outcome.body, for: device, tenant: manifest.tenant) { matching += 1 }
                } else if errors.count < 5 {
                    errors.append("\(device.id): HTTP \(outcome.status) \(String(buffer: outcome.body).prefix(200))")
                }
            case .failure(let error):
                if errors.count < 5 { errors.append("\(device.id): \(error)") }
            }
        }
        let report = Report(
            loadAverageAtStart: load, devices: devices, concurrency: concurrency, wallSeconds: wall,
            enrollmentsPerSecond: Double(devices) / wall, serverCPUSeconds: cpu,
            serverCPUMillisecondsPerEnrollment: phases[phases.count - 1].serverCPUMillisecondsPerRequest,
            clientCPUSeconds: own,
            latency: LatencySummary(microseconds: histogram), responses200: ok, certificatesForCSRKey: matching,
            handshakes: counters.handshakes.load(ordering: .relaxed), tls13: counters.tls13.load(ordering: .relaxed),
            baseline: baselineReport, firstErrors: errors)
        if json {
            try printJSON(report)
        } else {
            print(report.render())
        }
        guard ok == devices, matching == devices else {
            progress("FAILED: \(ok) of \(devices) were 200, \(matching) held an LDevID for the CSR key")
            throw ExitCode(1)
        }
    }

    struct Report: Codable {
        var loadAverageAtStart: String
        var devices: Int
        var concurrency: Int
        var wallSeconds: Double
        var enrollmentsPerSecond: Double
        var serverCPUSeconds: Double
        var serverCPUMillisecondsPerEnrollment: Double
        var clientCPUSeconds: Double
        var latency: LatencySummary
        var responses200: Int
        var certificatesForCSRKey: Int
        var handshakes: Int
        var tls13: Int
        var baseline: Baseline?
        var firstErrors: [String]

        func render() -> String {
            var table = Table(title: "enrollment against an external devid serve (server CPU from /proc/PID/stat)")
            table.add("load at start", loadAverageAtStart)
            table.add("run", "\(devices) enrollments, \(concurrency) workers, a new TLS connection each")
            table.add("wall time", fixed(wallSeconds, 3) + " s (" + fixed(enrollmentsPerSecond, 1) + " enrollments/s)")
            table.add(
                "server CPU", fixed(serverCPUSeconds, 2) + " s = " + fixed(serverCPUMillisecondsPerEnrollment, 3)
                    + " ms per enrollment")
            table.add("client CPU", fixed(clientCPUSeconds, 2) + " s (this process; not in the figure above)")
            table.add(
                "latency ms",
                "p50 \(fixed(latency.p50Ms, 2))  p99 \(fixed(latency.p99Ms, 2))  max \(fixed(latency.maxMs, 2))")
            table.add("HTTP 200", "\(responses200) of \(devices)")
            table.add("LDevID for the CSR key", "\(certificatesForCSRKey) of \(devices)")
            table.add("TLS handshakes", "\(handshakes) (1.3: \(tls13))")
            if let baseline {
                table.add(
                    "baseline: GET cacerts",
                    "\(baseline.requests) requests, server CPU " + fixed(baseline.serverCPUMillisecondsPerRequest, 3)
                        + " ms per request (a new mTLS connection each, same client)")
                table.add(
                    "enrollment − baseline",
                    fixed(serverCPUMillisecondsPerEnrollment - baseline.serverCPUMillisecondsPerRequest, 3) + " ms")
            }
            for error in firstErrors { table.add("error", error) }
            return table.render()
        }
    }

    struct Baseline: Codable {
        var requests: Int
        var serverCPUMillisecondsPerRequest: Double
    }

    /// One timed part of the run, for sorting a perf profile's samples by the part they fall in.
    struct Phase: Codable {
        var name: String
        /// CLOCK_MONOTONIC, in seconds: the clock `perf record -k CLOCK_MONOTONIC` stamps its samples with.
        var start: Double
        var end: Double
        var requests: Int
        var serverCPUMillisecondsPerRequest: Double

        static func monotonicSeconds() -> Double {
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            return Double(now.tv_sec) + Double(now.tv_nsec) / 1e9
        }
    }

    static func holdsLDevID(_ body: ByteBuffer, for device: PreparedDevice, tenant: TenantID) -> Bool {
        guard let der = ESTBase64.decode(Array(buffer: body)), let cms = try? CertsOnlyCMS(derEncoded: der),
            let certificate = cms.certificates.first(where: { $0.publicKey == device.ldevidPublicKey })
        else { return false }
        return DeviceNames.firstValue(.RDNAttributeType.commonName, in: certificate.subject) == device.id.rawValue
            && DeviceNames.firstValue(.RDNAttributeType.organizationName, in: certificate.subject) == tenant.rawValue
    }
}

/// CPU time of another process, from `/proc/PID/stat`.
enum ProcessCPU {
    /// utime + stime of `pid`, in seconds (clock-tick resolution, usually 10 ms).
    static func seconds(pid: Int32) throws -> Double {
        let stat = try String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)
        // The command name (field 2) is in parentheses and may hold spaces: count fields after the last ')'.
        guard let close = stat.lastIndex(of: ")") else { throw BenchError("/proc/\(pid)/stat is unreadable") }
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state); utime is field 14, stime field 15.
        guard fields.count > 12, let user = Double(fields[11]), let system = Double(fields[12]) else {
            throw BenchError("/proc/\(pid)/stat has no utime/stime")
        }
        return (user + system) / Double(sysconf(Int32(_SC_CLK_TCK)))
    }
}

extension JSONDecoder {
    static var iso8601: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }
}
