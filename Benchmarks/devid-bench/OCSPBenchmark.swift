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
import ServiceLifecycle
import X509

/// `devid-bench ocsp`: OCSP responses per second, in process (`OCSPRequestParser` + `OCSPResponder` with a
/// dictionary lookup) and, when the server has them, through `POST /ocsp` and `GET /ocsp/<base64>` on the operations
/// listener with keep-alive connections.
struct OCSPBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ocsp",
        abstract: "Answer OCSP requests: in process (parse, look up, sign) and over HTTP on the operations listener."
    )

    @Option(name: .long, help: "Serials in the in-process status table (a tenth of them revoked).")
    var serials = 100_000

    @Option(name: .long, help: "Requests answered per in-process variant.")
    var requests = 20_000

    @Option(name: .long, help: "Requests per HTTP variant (0 to skip HTTP).")
    var httpRequests = 10_000

    @Option(name: .long, help: "Keep-alive connections for the HTTP variants, one worker each.")
    var connections = 8

    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard (1...10_000_000).contains(serials) else { throw ValidationError("--serials must be 1-10000000") }
        guard (1...10_000_000).contains(requests) else { throw ValidationError("--requests must be 1-10000000") }
        guard (0...10_000_000).contains(httpRequests) else {
            throw ValidationError("--http-requests must be 0-10000000")
        }
        guard (1...1_024).contains(connections) else { throw ValidationError("--connections must be 1-1024") }
    }

    func run() async throws {
        let machine = MachineFacts.current()
        progress("crypto baseline (\(output.baselineSeconds) s per operation)")
        let baseline = try CryptoBaseline.measure(seconds: output.baselineSeconds, names: [CryptoBaseline.p256Sign])
        var failures: [String] = []

        let inProcess = try await InProcessOCSP.execute(serials: serials, requests: requests, failures: &failures)
        var http: HTTPOCSPRun?
        if httpRequests > 0 {
            http = try await HTTPOCSPRun.execute(
                requests: httpRequests, connections: connections, baselineSeconds: output.baselineSeconds,
                failures: &failures)
        }
        let report = OCSPReport(
            machine: machine, baseline: baseline, inProcess: inProcess, http: http, failures: failures)
        if output.json {
            try printJSON(report)
        } else {
            print(report.render())
        }
        guard failures.isEmpty else {
            progress("FAILED: " + failures.joined(separator: "; "))
            throw ExitCode(1)
        }
    }
}

/// Percentiles of a histogram recorded in nanoseconds, in microseconds.
struct MicrosecondLatency: Codable, Sendable {
    var count: UInt64
    var p50Us: Double
    var p90Us: Double
    var p99Us: Double
    var p999Us: Double
    var maxUs: Double
    var meanUs: Double

    init(nanoseconds histogram: Histogram<UInt64>) {
        func us(_ value: UInt64) -> Double { Double(value) / 1_000 }
        count = histogram.totalCount
        p50Us = us(histogram.valueAtPercentile(50))
        p90Us = us(histogram.valueAtPercentile(90))
        p99Us = us(histogram.valueAtPercentile(99))
        p999Us = us(histogram.valueAtPercentile(99.9))
        maxUs = us(histogram.max)
        meanUs = histogram.mean / 1_000
    }

    var line: String {
        "p50 \(fixed(p50Us, 1))  p90 \(fixed(p90Us, 1))  p99 \(fixed(p99Us, 1))  p99.9 \(fixed(p999Us, 1))  "
            + "max \(fixed(maxUs, 1))  (mean \(fixed(meanUs, 1)))"
    }
}

extension Duration {
    var nanoseconds: UInt64 { UInt64(max(0, (seconds * 1e9).rounded())) }
}

/// What a status lookup says, without dates: for comparing a response with the table.
enum StatusKind: String, Codable, Sendable {
    case good, revoked, unknown

    init(_ status: OCSPCertificateStatus) {
        switch status {
        case .good: self = .good
        case .revoked: self = .revoked
        case .unknown: self = .unknown
        }
    }
}

/// Checks a DER OCSP response: successful, signed by `issuer` (or by the certificate it carries, issued by
/// `issuer`), the expected status for `id`, and the nonce echoed.
func checkOCSPResponse(
    _ der: [UInt8], id: OCSPCertificateID, expected: StatusKind, nonce: [UInt8]?, issuer: Certificate
) -> String? {
    guard let response = try? OCSPResponse(derEncoded: der) else { return "the response does not parse" }
    guard response.status == .successful, let basic = response.basicResponse else {
        return "response status \(response.status)"
    }
    let signer = basic.certificates.first ?? issuer
    if signer != issuer, !issuer.publicKey.isValidSignature(signer.signature, for: signer) {
        return "the responder certificate is not issued by the CA"
    }
    guard basic.isSignatureValid(signer: signer) else { return "bad response signature" }
    guard let single = basic.response(for: id) else { return "no SingleResponse for the CertID" }
    guard StatusKind(single.status) == expected else { return "status \(StatusKind(single.status)), not \(expected)" }
    guard basic.nonce == nonce else { return "nonce not echoed" }
    return nil
}

/// `OCSPRequestParser` + `OCSPResponder` in this process: DER request in, DER response out.
struct InProcessOCSP: Codable, Sendable {
    struct Variant: Codable, Sendable {
        var name: String
        var threads: Int
        var requests: Int
        var seconds: Double
        var responsesPerSecond: Double
        /// Per response on one thread: parse, look up, sign, encode. Nil for the multi-threaded runs.
        var latency: MicrosecondLatency?
        var requestBytes: Int
        var responseBytes: Int
    }

    var serials: Int
    var revoked: Int
    var variants: [Variant]

    static func execute(serials: Int, requests: Int, failures: inout [String]) async throws -> InProcessOCSP {
        let directory = try BenchDirectory(prefix: "devid-bench-ocsp")
        defer { directory.remove() }
        progress("creating a CA hierarchy")
        let now = Date()
        let hierarchy = try CAStore.initialize(
            layout: CALayout(dataDirectory: directory.file("ca")),
            options: CAInitOptions(trustDomain: "bench.devid", keyEncryptionRounds: 1_000),
            passphrase: Array("devid-bench-passphrase".utf8), now: now
        ).hierarchy
        let issuer = hierarchy.issuing.certificate
        let responder = try OCSPResponder(authority: hierarchy.issuing)

        progress("a status table of \(serials) serials; \(requests) requests per variant")
        var generator = SystemRandomNumberGenerator()
        var table: [Certificate.SerialNumber: OCSPCertificateStatus] = [:]
        table.reserveCapacity(serials)
        var keys: [Certificate.SerialNumber] = []
        keys.reserveCapacity(serials)
        for index in 0..<serials {
            let serial = SerialNumberGenerator.next(using: &generator)
            table[serial] =
                index % 10 == 0
                ? .revoked(at: now.addingTimeInterval(-Double(index % 86_400)), reason: .keyCompromise) : .good
            keys.append(serial)
        }
        let lookup = table

        // Requests built before timing, one CertID (SHA-1, as openssl sends) each; a random serial of the table.
        func makeRequests(nonce: Bool) throws -> [(der: [UInt8], id: OCSPCertificateID, nonce: [UInt8]?)] {
            var generator = SystemRandomNumberGenerator()
            return try (0..<requests).map { _ in
                let serial = keys.randomElement(using: &generator)!
                let id = try OCSPCertificateID(issuer: issuer, serial: serial)
                let value: [UInt8]? = nonce ? (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) } : nil
                return (OCSPRequest(certificateIDs: [id], nonce: value).derBytes, id, value)
            }
        }
        let plain = try makeRequests(nonce: false)
        let withNonce = try makeRequests(nonce: true)
        let parser = OCSPRequestParser()
        let producedAt = now
        let nextUpdate = now.addingTimeInterval(3_600)

        @Sendable func answer(_ der: [UInt8]) -> OCSPResponse {
            responder.respond(
                toDER: der, parser: parser, producedAt: producedAt, thisUpdate: producedAt, nextUpdate: nextUpdate,
                status: { lookup[$0] ?? .unknown })
        }

        var variants: [Variant] = []
        for (name, list) in [("no nonce", plain), ("nonce (32 bytes)", withNonce)] {
            // One thread, every response timed.
            progress("in process, \(name), one thread")
            for request in list.prefix(200) { blackHole(answer(request.der).derBytes.count) }
            var histogram = Histogram<UInt64>(
                lowestDiscernibleValue: 1, highestTrackableValue: 10_000_000_000, numberOfSignificantValueDigits: .three
            )
            var responses: [[UInt8]] = []
            responses.reserveCapacity(list.count)
            let clock = ContinuousClock()
            let start = clock.now
            for request in list {
                let before = clock.now
                let response = answer(request.der)
                histogram.record((clock.now - before).nanoseconds)
                responses.append(response.derBytes)
            }
            let seconds = (clock.now - start).seconds
            variants.append(
                Variant(
                    name: name, threads: 1, requests: list.count, seconds: seconds,
                    responsesPerSecond: Double(list.count) / seconds,
                    latency: MicrosecondLatency(nanoseconds: histogram), requestBytes: list[0].der.count,
                    responseBytes: responses[0].count))
            var bad = 0
            var firstProblem: String?
            for (request, response) in zip(list, responses) {
                if let problem = checkOCSPResponse(
                    response, id: request.id, expected: StatusKind(lookup[request.id.serial] ?? .unknown),
                    nonce: request.nonce, issuer: issuer)
                {
                    bad += 1
                    firstProblem = firstProblem ?? problem
                }
            }
            if bad > 0 { failures.append("in process, \(name): \(bad) bad responses (\(firstProblem ?? ""))") }

            // Every core: the same requests split over one task per core.
            let cores = ProcessInfo.processInfo.activeProcessorCount
            progress("in process, \(name), \(cores) threads")
            let ders = list.map(\.der)
            let multiStart = clock.now
            let answered = await withTaskGroup(of: Int.self) { group in
                for part in 0..<cores {
                    group.addTask {
                        var ok = 0
                        for index in stride(from: part, to: ders.count, by: cores)
                        where answer(ders[index]).status == .successful {
                            ok += 1
                        }
                        return ok
                    }
                }
                return await group.reduce(0, +)
            }
            let multiSeconds = (clock.now - multiStart).seconds
            if answered != list.count {
                failures.append("in process, \(name), \(cores) threads: \(answered) successful")
            }
            variants.append(
                Variant(
                    name: name, threads: cores, requests: list.count, seconds: multiSeconds,
                    responsesPerSecond: Double(list.count) / multiSeconds, latency: nil,
                    requestBytes: list[0].der.count, responseBytes: responses[0].count))
        }
        return InProcessOCSP(serials: serials, revoked: (serials + 9) / 10, variants: variants)
    }
}

/// `POST /ocsp` and `GET /ocsp/<base64>` on a real server's operations listener, with keep-alive connections.
struct HTTPOCSPRun: Codable, Sendable {
    struct Variant: Codable, Sendable {
        var name: String
        var requests: Int
        var connections: Int
        var seconds: Double
        var responsesPerSecond: Double
        var latency: MicrosecondLatency
        var cpuSeconds: Double
        var cpuMicrosecondsPerResponse: Double
        var cpuUtilization: Double
        var status200: Int
        var valid: Int
        /// Different response bodies among the valid ones. ECDSA signatures are randomized, so two equal bodies are
        /// one signed response served twice (the server's cache); `requests − distinct` were not signed anew.
        var distinctResponses: Int
    }

    /// False when the server answered the probe with 404: the routes do not exist in this build.
    var available: Bool
    var probeStatus: Int
    var credentials: Int
    var revoked: Int
    var variants: [Variant]

    static let credentialCount = 1_000

    static func execute(
        requests: Int, connections: Int, baselineSeconds: Double, failures: inout [String]
    ) async throws -> HTTPOCSPRun {
        let directory = try BenchDirectory(prefix: "devid-bench-ocsp-http")
        var logger = Logger(label: "devid-bench")
        logger.logLevel = .error
        var configuration = ServerConfiguration.testing(dataDirectory: directory.file("data"))
        configuration.caPassphrase = "devid-bench-passphrase"
        configuration.logLevel = .error
        progress("starting DevIDServerApp in \(directory.path)")
        let app: DevIDServerApp
        do {
            app = try await DevIDServerApp(configuration: configuration, clock: SystemWallClock(), logger: logger)
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
                state: app.state, opsPort: ports.ops, requests: requests, connections: connections,
                failures: &failures)
            await stop()
            return result
        } catch {
            await stop()
            throw error
        }
    }

    private static func measure(
        state: ServerState, opsPort: Int, requests: Int, connections: Int, failures: inout [String]
    ) async throws -> HTTPOCSPRun {
        // The registry: real LDevIDs from the server's issuing CA, a tenth of them revoked.
        let store = state.store
        let now = Date()
        let tenant = TenantID(rawValue: "bench")!
        try await store.createTenant(Tenant(id: tenant, displayName: "Benchmark", createdAt: now), audit: nil)
        let devices = (0..<100).map { index in
            Device(
                id: DeviceID(derivedFromHardwareSerial: "OCSP-\(index)"), tenant: tenant,
                hardwareSerial: "OCSP-\(index)", lot: nil, state: .active, createdAt: now)
        }
        _ = try await store.importDevices(
            devices,
            audit: state.auditor.event(
                actor: "devid-bench", action: "device.import", outcome: .success, reason: "benchmark", tenant: tenant))
        progress("issuing \(credentialCount) LDevIDs into the registry")
        let issuing = state.hierarchy.issuing
        var expected: [Certificate.SerialNumber: StatusKind] = [:]
        var serials: [Certificate.SerialNumber] = []
        var toRevoke: [DevIDCore.SerialNumber] = []
        for index in 0..<credentialCount {
            let device = devices[index % devices.count]
            let key = try KeyMaterial.generate(.p256)
            let certificate = try issuing.issueLDevID(
                device: device.id, tenant: tenant, trustDomain: state.hierarchy.trustDomain,
                publicKey: key.publicKey, now: now)
            try await store.insertCredential(
                Credential(
                    serial: certificate.devidSerial, deviceID: device.id, kind: .ldevid,
                    issuer: String(describing: certificate.issuer), notBefore: certificate.notValidBefore,
                    notAfter: certificate.notValidAfter,
                    publicKeySHA256: KeyMaterial.fingerprint(certificate.publicKey),
                    certificateSHA256: certificate.sha256Fingerprint, der: certificate.derBytes, createdAt: now),
                audit: state.auditor.event(
                    actor: "devid-bench", action: "est.enroll", outcome: .success, reason: "benchmark",
                    tenant: tenant, device: device.id, serial: certificate.devidSerial))
            serials.append(certificate.serialNumber)
            if index % 10 == 0 {
                toRevoke.append(certificate.devidSerial)
                expected[certificate.serialNumber] = .revoked
            } else {
                expected[certificate.serialNumber] = .good
            }
        }
        _ = try await store.revokeCredentials(
            toRevoke, reason: .keyCompromise, at: now,
            audit: state.auditor.event(
                actor: "devid-bench", action: "credential.revoke", outcome: .success, reason: "benchmark"))

        // Probe: does the server have the route?
        let issuer = issuing.certificate
        let probeID = try OCSPCertificateID(issuer: issuer, serial: serials[1])
        let probe = try await KeepAliveConnection.with(host: "127.0.0.1", port: opsPort) { connection in
            try await connection.send(
                method: .POST, path: "/ocsp", contentType: OCSPRequest.mediaType,
                body: ByteBuffer(bytes: OCSPRequest(certificateIDs: [probeID]).derBytes))
        }
        guard probe.status == 200 else {
            progress("POST /ocsp answered HTTP \(probe.status): no HTTP OCSP benchmark")
            return HTTPOCSPRun(
                available: false, probeStatus: probe.status, credentials: credentialCount, revoked: toRevoke.count,
                variants: [])
        }

        var variants: [Variant] = []
        let plan: [(name: String, method: HTTPMethod, nonce: Bool)] = [
            ("POST, no nonce", .POST, false), ("POST, nonce", .POST, true), ("GET, no nonce", .GET, false),
        ]
        for (name, method, nonce) in plan {
            var generator = SystemRandomNumberGenerator()
            // Requests, and for GET their paths, are built before timing: the client shares the process.
            let prepared = try (0..<requests).map {
                _ -> (id: OCSPCertificateID, der: [UInt8], path: String, nonce: [UInt8]?) in
                let serial = serials.randomElement(using: &generator)!
                let id = try OCSPCertificateID(issuer: issuer, serial: serial)
                let value: [UInt8]? = nonce ? (0..<32).map { _ in UInt8.random(in: 0...255, using: &generator) } : nil
                let der = OCSPRequest(certificateIDs: [id], nonce: value).derBytes
                return (id, der, method == .GET ? "/ocsp/" + Self.pathComponent(der) : "/ocsp", value)
            }
            progress("HTTP \(name): \(requests) requests on \(connections) keep-alive connections")
            let next = IndexDispenser()
            let clock = ContinuousClock()
            let cpuStart = processCPUSeconds()
            let start = clock.now
            let replies = try await withThrowingTaskGroup(of: [(Int, KeepAliveConnection.Reply)].self) { group in
                for _ in 0..<connections {
                    group.addTask {
                        try await KeepAliveConnection.with(host: "127.0.0.1", port: opsPort) { connection in
                            var mine: [(Int, KeepAliveConnection.Reply)] = []
                            while true {
                                let index = next.take()
                                guard index < prepared.count else { break }
                                let request = prepared[index]
                                let reply: KeepAliveConnection.Reply
                                if method == .GET {
                                    reply = try await connection.send(method: .GET, path: request.path)
                                } else {
                                    reply = try await connection.send(
                                        method: .POST, path: request.path, contentType: OCSPRequest.mediaType,
                                        body: ByteBuffer(bytes: request.der))
                                }
                                mine.append((index, reply))
                            }
                            return mine
                        }
                    }
                }
                var all: [KeepAliveConnection.Reply?] = Array(repeating: nil, count: prepared.count)
                for try await batch in group {
                    for (index, reply) in batch { all[index] = reply }
                }
                return all
            }
            let seconds = (clock.now - start).seconds
            let cpuSeconds = processCPUSeconds() - cpuStart

            var histogram = Histogram<UInt64>(
                lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three
            )
            var ok = 0
            var valid = 0
            var distinct = Set<ByteBuffer>()
            var firstProblem: String?
            for (request, reply) in zip(prepared, replies) {
                guard let reply else { continue }
                histogram.record(reply.latency.nanoseconds)
                guard reply.status == 200 else {
                    firstProblem = firstProblem ?? "HTTP \(reply.status)"
                    continue
                }
                ok += 1
                if let problem = checkOCSPResponse(
                    Array(buffer: reply.body), id: request.id, expected: expected[request.id.serial] ?? .unknown,
                    nonce: request.nonce, issuer: issuer)
                {
                    firstProblem = firstProblem ?? problem
                } else {
                    valid += 1
                    distinct.insert(reply.body)
                }
            }
            if ok != requests || valid != requests {
                failures.append("HTTP \(name): \(ok) of \(requests) HTTP 200, \(valid) valid (\(firstProblem ?? ""))")
            }
            let cores = ProcessInfo.processInfo.activeProcessorCount
            variants.append(
                Variant(
                    name: name, requests: requests, connections: connections, seconds: seconds,
                    responsesPerSecond: Double(requests) / seconds, latency: MicrosecondLatency(nanoseconds: histogram),
                    cpuSeconds: cpuSeconds, cpuMicrosecondsPerResponse: cpuSeconds * 1e6 / Double(requests),
                    cpuUtilization: cpuSeconds / (seconds * Double(cores)), status200: ok, valid: valid,
                    distinctResponses: distinct.count))
        }
        return HTTPOCSPRun(
            available: true, probeStatus: probe.status, credentials: credentialCount, revoked: toRevoke.count,
            variants: variants)
    }

    /// Base64 of the DER, percent-encoded for a path segment (RFC 6960 §A.1).
    static func pathComponent(_ der: [UInt8]) -> String {
        Data(der).base64EncodedString()
            .replacingOccurrences(of: "+", with: "%2B")
            .replacingOccurrences(of: "/", with: "%2F")
            .replacingOccurrences(of: "=", with: "%3D")
    }
}

struct OCSPReport: Codable, Sendable {
    var benchmark = "ocsp"
    var machine: MachineFacts
    var baseline: CryptoBaseline
    var inProcess: InProcessOCSP
    var http: HTTPOCSPRun?
    var failures: [String]

    func render() -> String {
        var setup = Table(title: "devid-bench ocsp")
        setup.add("machine", "\(machine.cores) cores, \(machine.cpuModel); load at start \(machine.loadAverageAtStart)")
        setup.add("date, build", "\(machine.date), \(machine.build)")
        setup.add(
            "run",
            "one CertID per request (SHA-1), responses signed by the issuing CA (P-256); status table of "
                + "\(inProcess.serials) serials, \(inProcess.revoked) revoked")
        let sign = baseline.operation(CryptoBaseline.p256Sign)

        var local = Table(title: "In process: OCSPRequestParser + OCSPResponder + dictionary lookup")
        for variant in inProcess.variants {
            let ceiling = sign.opsPerSecondOneCore * Double(variant.threads)
            local.add(
                "\(variant.name), \(variant.threads) thread\(variant.threads == 1 ? "" : "s")",
                "\(fixed(variant.responsesPerSecond, 0)) responses/s = \(percent(variant.responsesPerSecond / ceiling)) "
                    + "of the P-256 sign rate × \(variant.threads) (\(fixed(ceiling, 0))/s); "
                    + "request \(variant.requestBytes) B, response \(variant.responseBytes) B")
            if let latency = variant.latency {
                local.add("  latency µs", latency.line)
                local.add(
                    "  signing share",
                    "\(percent(sign.microsecondsPerOp / (1e6 / variant.responsesPerSecond))) of each response's time "
                        + "is the one P-256 signature (\(fixed(sign.microsecondsPerOp, 1)) µs)")
            }
        }

        var sections = [setup.render(), baseline.table().render(), local.render()]
        if let http {
            var remote = Table(title: "HTTP on the operations listener (keep-alive; client and server share the cores)")
            if !http.available {
                remote.add(
                    "not measured", "POST /ocsp answered HTTP \(http.probeStatus): the route is not in this build")
            }
            for variant in http.variants {
                remote.add(
                    variant.name,
                    "\(fixed(variant.responsesPerSecond, 0)) responses/s on \(variant.connections) connections = "
                        + "\(percent(variant.responsesPerSecond / sign.opsPerSecondAllCores)) of the P-256 sign rate × "
                        + "\(baseline.cores)")
                remote.add("  latency µs", variant.latency.line)
                remote.add(
                    "  CPU",
                    "\(fixed(variant.cpuMicrosecondsPerResponse, 0)) µs per response (client + server); "
                        + "cores \(percent(variant.cpuUtilization)) busy")
                remote.add("  checks", "\(variant.status200) HTTP 200, \(variant.valid) valid of \(variant.requests)")
                remote.add(
                    "  signed anew",
                    "\(variant.distinctResponses) distinct response bodies; "
                        + "\(variant.valid - variant.distinctResponses) answers were a response served again")
            }
            sections.append(remote.render())
        }
        var verdict = Table(title: "Checks (\(failures.isEmpty ? "all passed" : "FAILED"))")
        verdict.add(
            "checked",
            "every response parsed back: successful, signature valid, the table's status for the CertID, nonce echoed")
        for failure in failures { verdict.add("FAILED", failure) }
        sections.append(verdict.render())
        return sections.joined(separator: "\n")
    }
}
