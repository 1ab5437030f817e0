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
import X509

/// `devid-bench authz`: policy decisions per second (issue #7), in process (`DecisionEngine.decide`, then
/// `AuthzService.decide` with its audit writes) and through `POST /v1/authz/mqtt` on the operations listener with
/// keep-alive connections, against devices that enrolled for real, with `GET /healthz` as the transport floor.
struct AuthzBenchmark: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "authz",
        abstract: "Policy decisions: in process (engine, service) and through POST /v1/authz/mqtt with keep-alive."
    )

    @Option(name: .long, help: "Devices enrolled over EST before timing (the index holds their real credentials).")
    var devices = 1_000

    @Option(name: .long, help: "Decisions per in-process engine variant (DecisionEngine.decide).")
    var decisions = 400_000

    @Option(name: .long, help: "Decisions per in-process service variant (AuthzService.decide; audits denials).")
    var serviceDecisions = 10_000

    @Option(name: .long, help: "Requests per HTTP variant (0 to skip HTTP).")
    var httpRequests = 50_000

    @Option(name: .long, help: "Keep-alive connections for the HTTP variants, one worker each.")
    var connections = 16

    @OptionGroup var output: OutputOptions

    func validate() throws {
        guard (2...100_000).contains(devices) else { throw ValidationError("--devices must be 2-100000") }
        guard (8...100_000_000).contains(decisions) else { throw ValidationError("--decisions must be 8-100000000") }
        guard (8...10_000_000).contains(serviceDecisions) else {
            throw ValidationError("--service-decisions must be 8-10000000")
        }
        guard (0...10_000_000).contains(httpRequests) else {
            throw ValidationError("--http-requests must be 0-10000000")
        }
        guard (1...1_024).contains(connections) else { throw ValidationError("--connections must be 1-1024") }
    }

    func run() async throws {
        let machine = MachineFacts.current()
        progress("crypto baseline (\(output.baselineSeconds) s per operation)")
        let baseline = try CryptoBaseline.measure(
            seconds: output.baselineSeconds, names: [CryptoBaseline.p256Verify])
        var failures: [String] = []
        let run = try await AuthzRun.execute(
            devices: devices, decisions: decisions, serviceDecisions: serviceDecisions, httpRequests: httpRequests,
            connections: connections, failures: &failures)
        let report = AuthzReport(machine: machine, baseline: baseline, run: run, failures: failures)
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

/// One decision of the benchmark's mix and the answer it must get.
struct AuthzCase: Sendable {
    /// The four kinds of the mix, in the order they repeat.
    enum Kind: Int, CaseIterable, Sendable {
        /// `publish tenants/<t>/devices/<own id>/telemetry/temp`: allowed (counted only).
        case publishOwn
        /// `publish tenants/<t>/devices/<another id>/telemetry/temp`: denied `topic_not_allowed` (audited).
        case publishOther
        /// `subscribe tenants/<t>/devices/<own id>/commands/#`: allowed (counted only).
        case subscribeOwn
        /// `connect`: allowed (audited, one event per broker session).
        case connect
    }

    var kind: Kind
    var byFingerprint: Bool
    var device: DeviceID
    var fingerprint: String
    var action: AuthzAction
    var expectedAllowed: Bool
    var expectedReason: AuthzReason

    var presented: AuthzService.Presented { byFingerprint ? .fingerprint(fingerprint) : .device(device) }

    var query: DecisionEngine.Query {
        DecisionEngine.Query(subject: byFingerprint ? .fingerprint(fingerprint) : .device(device), action: action)
    }

    /// The `POST /v1/authz/mqtt` body.
    var json: ByteBuffer {
        var fields: [String: String] = [:]
        if byFingerprint {
            fields["fingerprint"] = fingerprint
        } else {
            fields["device"] = device.rawValue
        }
        switch action {
        case .connect:
            fields["action"] = "connect"
        case .publish(let topic):
            fields["action"] = "publish"
            fields["topic"] = topic
        case .subscribe(let topic):
            fields["action"] = "subscribe"
            fields["topic"] = topic
        case .scope:
            preconditionFailure("not an MQTT action")
        }
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        return ByteBuffer(bytes: (try? encoder.encode(fields)) ?? Data())
    }

    /// The mix: case `j` is kind `j mod 4` for device `(j ÷ 8) mod N`, by device id or by fingerprint in turn
    /// (`(j ÷ 4) mod 2`); the other device of `publishOther` is the next one. `only` restricts it to some kinds.
    static func mix(
        count: Int, tenant: TenantID, fleet: [(id: DeviceID, fingerprint: String)], only: [Kind] = Kind.allCases
    ) -> [AuthzCase] {
        (0..<count).map { index in
            let kind = only[index % only.count]
            let byFingerprint = (index / only.count) % 2 == 1
            let position = (index / (2 * only.count)) % fleet.count
            let device = fleet[position]
            let other = fleet[(position + 1) % fleet.count]
            let prefix = "tenants/\(tenant.rawValue)/devices/"
            let action: AuthzAction
            switch kind {
            case .publishOwn: action = .publish(topic: prefix + device.id.rawValue + "/telemetry/temp")
            case .publishOther: action = .publish(topic: prefix + other.id.rawValue + "/telemetry/temp")
            case .subscribeOwn: action = .subscribe(topic: prefix + device.id.rawValue + "/commands/#")
            case .connect: action = .connect
            }
            return AuthzCase(
                kind: kind, byFingerprint: byFingerprint, device: device.id, fingerprint: device.fingerprint,
                action: action, expectedAllowed: kind != .publishOther,
                expectedReason: kind == .publishOther ? .topicNotAllowed : .ok)
        }
    }

    /// Nil if `decision` is the expected one for this case, else what is wrong.
    func problem(allowed: Bool, reason: String, device answered: String?) -> String? {
        guard allowed == expectedAllowed, reason == expectedReason.rawValue else {
            return "\(kind) \(byFingerprint ? "by fingerprint" : "by device"): \(allowed ? "allow" : "deny") "
                + "\(reason), expected \(expectedAllowed ? "allow" : "deny") \(expectedReason.rawValue)"
        }
        guard answered == device.rawValue else { return "\(kind): answered for device \(answered ?? "none")" }
        return nil
    }
}

/// Setup, in-process variants and HTTP variants, on one server.
struct AuthzRun: Codable, Sendable {
    struct Variant: Codable, Sendable {
        var name: String
        /// Threads (in process) or keep-alive connections (HTTP).
        var parallelism: Int
        var decisions: Int
        var seconds: Double
        var decisionsPerSecond: Double
        /// Per decision (one thread) or per request (HTTP, from sending to the last byte of the answer). Nil for
        /// the multi-threaded in-process runs.
        var latency: MicrosecondLatency?
        var cpuMicrosecondsPerDecision: Double
        var cpuUtilization: Double
        /// Decisions that wrote an audit event (denials and connect grants); HTTP 200s for HTTP variants.
        var audited: Int
        var status200: Int
        var correct: Int
        var requestBytes: Int
    }

    var devices: Int
    var enrollSeconds: Double
    var warmSeconds: Double
    var index: [String: Int]
    var auditEventsBefore: Int
    var auditEventsAfter: Int
    /// Events with an `authz.` action appended after the warm-up: must equal the audited decisions.
    var authzAuditEvents: Int
    var engine: [Variant]
    var service: [Variant]
    var http: [Variant]
    var healthz: Variant?

    static func execute(
        devices count: Int, decisions: Int, serviceDecisions: Int, httpRequests: Int, connections: Int,
        failures: inout [String]
    ) async throws -> AuthzRun {
        let directory = try BenchDirectory(prefix: "devid-bench-authz")
        var logger = Logger(label: "devid-bench")
        logger.logLevel = .error
        var configuration = ServerConfiguration.testing(dataDirectory: directory.file("data"))
        configuration.caPassphrase = "devid-bench-passphrase"
        configuration.logLevel = .error
        progress("starting DevIDServerApp on a manual clock in \(directory.path)")
        // A clock that does not move keeps every index entry fresh (`DecisionEngine.maximumAge` is measured on it),
        // so the timed decisions never reload from the store. Starts at the real time for the client's TLS checks.
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
                state: app.state, clock: clock, ports: ports, count: count, decisions: decisions,
                serviceDecisions: serviceDecisions, httpRequests: httpRequests, connections: connections,
                failures: &failures)
            await stop()
            return result
        } catch {
            await stop()
            throw error
        }
    }

    // swiftlint:disable:next function_body_length
    private static func measure(
        state: ServerState, clock: ManualWallClock, ports: (est: Int, ops: Int), count: Int, decisions: Int,
        serviceDecisions: Int, httpRequests: Int, connections: Int, failures: inout [String]
    ) async throws -> AuthzRun {
        let store = state.store
        let tenant = TenantID(rawValue: "bench")!
        let now = clock.now()
        let wall = ContinuousClock()
        let cores = ProcessInfo.processInfo.activeProcessorCount

        // Setup (not timed): the allowlist, then every device enrolls with its IDevID, as in `devid-bench rotate`.
        try await store.createTenant(Tenant(id: tenant, displayName: "Benchmark", createdAt: now), audit: nil)
        let serials = (1...count).map { index -> String in
            let digits = String(index)
            return "AUTHZ-" + String(repeating: "0", count: max(0, 6 - digits.count)) + digits
        }
        let ids = serials.map { DeviceID(derivedFromHardwareSerial: $0) }
        _ = try await store.importDevices(
            zip(ids, serials).map {
                Device(id: $0, tenant: tenant, hardwareSerial: $1, lot: nil, state: .manufactured, createdAt: now)
            },
            audit: state.auditor.event(
                actor: "devid-bench", action: "device.import", outcome: .success,
                reason: "benchmark allowlist of \(count) devices", tenant: tenant))
        guard let manufacturer = state.hierarchy.manufacturer else {
            throw BenchError("the server has no manufacturer CA")
        }
        let root = try NIOSSLCertificate(bytes: state.hierarchy.root.derBytes, format: .der)
        let client = OneShotEnrollment(
            host: "127.0.0.1", port: ports.est, group: MultiThreadedEventLoopGroup.singleton,
            counters: ConnectionCounters())
        let trustDomain = state.hierarchy.trustDomain
        progress("setup: enrolling \(count) devices with their IDevIDs over EST (32 workers)")
        let enrollStart = wall.now
        let fingerprints: [String] = try await inParallel(count: count, workers: 32) { index in
            let device = ids[index]
            let (idevidKey, idevidPKCS8) = try KeyMaterial.generateWithDER(.p256)
            let idevid = try manufacturer.issueIDevID(
                hardwareSerial: serials[index], publicKey: idevidKey.publicKey, now: now)
            let context = try RotationRun.deviceTLSContext(certificate: idevid, pkcs8: idevidPKCS8, root: root)
            let ldevidKey = try KeyMaterial.generate(.p256)
            let outcome = try await client.run(
                tlsContext: context, path: "/.well-known/est/simpleenroll",
                body: try RotationRun.csrBody(key: ldevidKey, device: device, tenant: tenant))
            guard outcome.status == 200,
                let certificate = RotationRun.issuedCertificate(
                    outcome.body, publicKey: ldevidKey.publicKey, device: device, tenant: tenant,
                    trustDomain: trustDomain)
            else { throw BenchError("setup enrollment of \(device): HTTP \(outcome.status)") }
            return certificate.sha256Fingerprint
        }
        let enrollSeconds = (wall.now - enrollStart).seconds
        let fleet = Array(zip(ids, fingerprints)).map { (id: $0.0, fingerprint: $0.1) }

        // Warm-up (not timed): one `connect` by fingerprint per device through the service fills the index and
        // confirms every credential (rotation step 3), so no timed decision writes a confirmation.
        progress("setup: one connect by fingerprint per device (fills the index, confirms the credentials)")
        let service = AuthzService(state: state)
        let warmStart = wall.now
        let warmed: [Bool] = try await inParallel(count: count, workers: 8) { index in
            try await service.decide(.fingerprint(fleet[index].fingerprint), action: .connect).allowed
        }
        let warmSeconds = (wall.now - warmStart).seconds
        if warmed.contains(false) { failures.append("warm-up: \(warmed.filter { !$0 }.count) connects denied") }
        let size = state.authz.size
        if size.devices != count || size.credentials != count {
            failures.append("index holds \(size.devices) devices, \(size.credentials) credentials, not \(count)")
        }
        let auditBefore = try await store.auditEvents(AuditFilter(limit: 1)).first.map { Int($0.sequence) } ?? 0

        // In process, engine only: no I/O, one lock.
        let engine = state.authz
        var engineVariants: [Variant] = []
        do {
            let cases = AuthzCase.mix(count: decisions, tenant: tenant, fleet: fleet)
            let queries = cases.map(\.query)
            progress("in process: DecisionEngine.decide, \(decisions) decisions, one thread")
            for query in queries.prefix(10_000) { blackHole(engine.decide(query, now: now)) }
            var histogram = nanosecondHistogram()
            var answers: [DecisionEngine.Lookup] = []
            answers.reserveCapacity(queries.count)
            let cpuStart = processCPUSeconds()
            let start = wall.now
            for query in queries {
                let before = wall.now
                let answer = engine.decide(query, now: now)
                histogram.record((wall.now - before).nanoseconds)
                answers.append(answer)
            }
            let seconds = (wall.now - start).seconds
            let cpu = processCPUSeconds() - cpuStart
            var correct = 0
            var firstProblem: String?
            for (item, answer) in zip(cases, answers) {
                guard case .decided(let decision, _) = answer else {
                    firstProblem = firstProblem ?? "\(answer)"
                    continue
                }
                if let problem = item.problem(
                    allowed: decision.allowed, reason: decision.reason.rawValue, device: decision.device?.rawValue)
                {
                    firstProblem = firstProblem ?? problem
                } else {
                    correct += 1
                }
            }
            if correct != cases.count {
                failures.append("engine: \(correct) of \(cases.count) correct (\(firstProblem ?? ""))")
            }
            engineVariants.append(
                Variant(
                    name: "DecisionEngine.decide", parallelism: 1, decisions: queries.count, seconds: seconds,
                    decisionsPerSecond: Double(queries.count) / seconds,
                    latency: MicrosecondLatency(nanoseconds: histogram),
                    cpuMicrosecondsPerDecision: cpu * 1e6 / Double(queries.count),
                    cpuUtilization: cpu / (seconds * Double(cores)),
                    audited: 0, status200: 0, correct: correct, requestBytes: 0))

            progress("in process: DecisionEngine.decide, \(decisions) decisions, \(cores) threads")
            let multiCPUStart = processCPUSeconds()
            let multiStart = wall.now
            let allowed = await withTaskGroup(of: Int.self) { group in
                for part in 0..<cores {
                    group.addTask {
                        var allowed = 0
                        for index in stride(from: part, to: queries.count, by: cores) {
                            if case .decided(let decision, _) = engine.decide(queries[index], now: now),
                                decision.allowed
                            {
                                allowed += 1
                            }
                        }
                        return allowed
                    }
                }
                return await group.reduce(0, +)
            }
            let multiSeconds = (wall.now - multiStart).seconds
            let multiCPU = processCPUSeconds() - multiCPUStart
            let expectedAllowed = cases.filter(\.expectedAllowed).count
            if allowed != expectedAllowed {
                failures.append("engine, \(cores) threads: \(allowed) allowed, expected \(expectedAllowed)")
            }
            engineVariants.append(
                Variant(
                    name: "DecisionEngine.decide", parallelism: cores, decisions: queries.count,
                    seconds: multiSeconds, decisionsPerSecond: Double(queries.count) / multiSeconds, latency: nil,
                    cpuMicrosecondsPerDecision: multiCPU * 1e6 / Double(queries.count),
                    cpuUtilization: multiCPU / (multiSeconds * Double(cores)), audited: 0, status200: 0,
                    correct: allowed == expectedAllowed ? queries.count : 0, requestBytes: 0))
        }

        // In process, the service: the engine plus counting and, for denials and connects, one audit append each.
        var serviceVariants: [Variant] = []
        let servicePlan: [(name: String, kinds: [AuthzCase.Kind])] = [
            ("AuthzService.decide, mix", AuthzCase.Kind.allCases),
            ("AuthzService.decide, grants not audited", [.publishOwn, .subscribeOwn]),
        ]
        for (name, kinds) in servicePlan {
            let cases = AuthzCase.mix(count: serviceDecisions, tenant: tenant, fleet: fleet, only: kinds)
            let audited = cases.filter { $0.kind == .publishOther || $0.kind == .connect }.count
            for threads in [1, cores] {
                progress("in process: \(name), \(serviceDecisions) decisions, \(threads) tasks")
                let next = IndexDispenser()
                let cpuStart = processCPUSeconds()
                let start = wall.now
                let results = try await withThrowingTaskGroup(of: [(Int, AuthzDecision, UInt64)].self) { group in
                    for _ in 0..<threads {
                        group.addTask {
                            let clock = ContinuousClock()
                            var mine: [(Int, AuthzDecision, UInt64)] = []
                            while true {
                                let index = next.take()
                                guard index < cases.count else { break }
                                let before = clock.now
                                let decision = try await service.decide(
                                    cases[index].presented, action: cases[index].action)
                                mine.append((index, decision, (clock.now - before).nanoseconds))
                            }
                            return mine
                        }
                    }
                    var all: [(Int, AuthzDecision, UInt64)] = []
                    for try await batch in group { all += batch }
                    return all
                }
                let seconds = (wall.now - start).seconds
                let cpu = processCPUSeconds() - cpuStart
                var histogram = nanosecondHistogram()
                var correct = 0
                var firstProblem: String?
                for (index, decision, nanoseconds) in results {
                    histogram.record(nanoseconds)
                    if let problem = cases[index].problem(
                        allowed: decision.allowed, reason: decision.reason.rawValue,
                        device: decision.device?.rawValue)
                    {
                        firstProblem = firstProblem ?? problem
                    } else {
                        correct += 1
                    }
                }
                if correct != cases.count {
                    failures.append(
                        "\(name), \(threads) tasks: \(correct) of \(cases.count) correct (\(firstProblem ?? ""))")
                }
                serviceVariants.append(
                    Variant(
                        name: name, parallelism: threads, decisions: cases.count, seconds: seconds,
                        decisionsPerSecond: Double(cases.count) / seconds,
                        latency: MicrosecondLatency(nanoseconds: histogram),
                        cpuMicrosecondsPerDecision: cpu * 1e6 / Double(cases.count),
                        cpuUtilization: cpu / (seconds * Double(cores)), audited: audited, status200: 0,
                        correct: correct, requestBytes: 0))
            }
        }

        // Over HTTP, on the operations listener.
        var httpVariants: [Variant] = []
        var healthz: Variant?
        var warmUpAudits = 0
        if httpRequests > 0 {
            let tokenPath = state.configuration.secretsDirectory + "/authz-token"
            let token = try String(contentsOfFile: tokenPath, encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            let headers = [("Authorization", "Bearer " + token)]

            // The transport floor: GET /healthz (one registry read, `credentialCount`) on the same connections.
            healthz = try await httpVariant(
                name: "GET /healthz", port: ports.ops, connections: connections, requests: httpRequests,
                headers: [], cases: nil, failures: &failures)
            let plan: [(name: String, kinds: [AuthzCase.Kind])] = [
                ("POST /v1/authz/mqtt, mix", AuthzCase.Kind.allCases),
                ("POST /v1/authz/mqtt, grants not audited", [.publishOwn, .subscribeOwn]),
            ]
            for (name, kinds) in plan {
                let cases = AuthzCase.mix(count: httpRequests, tenant: tenant, fleet: fleet, only: kinds)
                var variant = try await httpVariant(
                    name: name, port: ports.ops, connections: connections, requests: httpRequests,
                    headers: headers, cases: cases, failures: &failures)
                variant.audited = cases.filter { $0.kind == .publishOther || $0.kind == .connect }.count
                httpVariants.append(variant)
                // The untimed warm-up requests (the first cases again) are audited too.
                warmUpAudits +=
                    cases.prefix(min(httpRequests, connections * warmUpPerConnection))
                    .filter { $0.kind == .publishOther || $0.kind == .connect }.count
            }
        }
        // Decisions append audit events (denials and connects) and nothing else does during the timed parts.
        let appended = try await store.auditEvents(
            AuditFilter(limit: 100_000_000, afterSequence: Int64(auditBefore)))
        let auditAfter = appended.map { Int($0.sequence) }.max() ?? auditBefore
        let authzAudits = appended.filter { $0.action.hasPrefix("authz.") }.count
        let expectedAudits =
            serviceVariants.map(\.audited).reduce(0, +) + httpVariants.map(\.audited).reduce(0, +) + warmUpAudits
        if authzAudits != expectedAudits {
            failures.append(
                "the audit trail gained \(authzAudits) authz events, expected \(expectedAudits) (denials and connects)")
        }
        let finalSize = state.authz.size
        return AuthzRun(
            devices: count, enrollSeconds: enrollSeconds, warmSeconds: warmSeconds,
            index: ["devices": finalSize.devices, "credentials": finalSize.credentials, "tenants": finalSize.tenants],
            auditEventsBefore: auditBefore, auditEventsAfter: auditAfter, authzAuditEvents: authzAudits,
            engine: engineVariants,
            service: serviceVariants, http: httpVariants, healthz: healthz)
    }

    /// Untimed requests per connection before each HTTP variant.
    static let warmUpPerConnection = 20

    /// The JSON answer of `POST /v1/authz/mqtt`.
    private struct Answer: Decodable {
        var result: String
        var reason: String
        var device: String?
    }

    /// `requests` requests over `connections` keep-alive connections: `cases` as `POST /v1/authz/mqtt`, or
    /// `GET /healthz` when `cases` is nil. Every answer must be HTTP 200 and, for decisions, the expected one.
    private static func httpVariant(
        name: String, port: Int, connections: Int, requests: Int, headers: [(String, String)], cases: [AuthzCase]?,
        failures: inout [String]
    ) async throws -> Variant {
        let bodies = cases?.map(\.json)
        progress("HTTP \(name): \(requests) requests on \(connections) keep-alive connections")
        // Warm-up: the first `warmUpPerConnection` × connections requests, not timed.
        try await withThrowingTaskGroup(of: Void.self) { group in
            for part in 0..<connections {
                group.addTask {
                    try await KeepAliveConnection.with(host: "127.0.0.1", port: port) { connection in
                        for index in stride(
                            from: part, to: min(requests, connections * warmUpPerConnection), by: connections)
                        {
                            _ = try await AuthzRun.send(&connection, bodies: bodies, index: index, headers: headers)
                        }
                    }
                }
            }
            try await group.waitForAll()
        }
        let next = IndexDispenser()
        let wall = ContinuousClock()
        let cpuStart = processCPUSeconds()
        let start = wall.now
        let replies = try await withThrowingTaskGroup(of: [(Int, KeepAliveConnection.Reply)].self) { group in
            for _ in 0..<connections {
                group.addTask {
                    try await KeepAliveConnection.with(host: "127.0.0.1", port: port) { connection in
                        var mine: [(Int, KeepAliveConnection.Reply)] = []
                        while true {
                            let index = next.take()
                            guard index < requests else { break }
                            let reply = try await AuthzRun.send(
                                &connection, bodies: bodies, index: index, headers: headers)
                            mine.append((index, reply))
                        }
                        return mine
                    }
                }
            }
            var all: [KeepAliveConnection.Reply?] = Array(repeating: nil, count: requests)
            for try await batch in group {
                for (index, reply) in batch { all[index] = reply }
            }
            return all
        }
        let seconds = (wall.now - start).seconds
        let cpu = processCPUSeconds() - cpuStart

        var histogram = nanosecondHistogram()
        var ok = 0
        var correct = 0
        var firstProblem: String?
        let decoder = JSONDecoder()
        for (index, reply) in replies.enumerated() {
            guard let reply else { continue }
            histogram.record(reply.latency.nanoseconds)
            guard reply.status == 200 else {
                firstProblem = firstProblem ?? "HTTP \(reply.status): \(String(buffer: reply.body).prefix(200))"
                continue
            }
            ok += 1
            guard let cases else {
                correct += 1
                continue
            }
            // Every answer is checked, not a sample: decoding 50,000 small documents takes well under a second.
            guard let answer = try? decoder.decode(Answer.self, from: Data(Array(buffer: reply.body))) else {
                firstProblem = firstProblem ?? "undecodable answer \(String(buffer: reply.body).prefix(200))"
                continue
            }
            if let problem = cases[index].problem(
                allowed: answer.result == "allow", reason: answer.reason, device: answer.device)
            {
                firstProblem = firstProblem ?? problem
            } else {
                correct += 1
            }
        }
        if ok != requests || correct != requests {
            failures.append("HTTP \(name): \(ok) of \(requests) HTTP 200, \(correct) correct (\(firstProblem ?? ""))")
        }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        return Variant(
            name: name, parallelism: connections, decisions: requests, seconds: seconds,
            decisionsPerSecond: Double(requests) / seconds, latency: MicrosecondLatency(nanoseconds: histogram),
            cpuMicrosecondsPerDecision: cpu * 1e6 / Double(requests), cpuUtilization: cpu / (seconds * Double(cores)),
            audited: 0, status200: ok, correct: correct, requestBytes: bodies?.first?.readableBytes ?? 0)
    }

    private static func send(
        _ connection: inout KeepAliveConnection, bodies: [ByteBuffer]?, index: Int, headers: [(String, String)]
    ) async throws -> KeepAliveConnection.Reply {
        if let bodies {
            return try await connection.send(
                method: .POST, path: "/v1/authz/mqtt", headers: headers, contentType: "application/json",
                body: bodies[index])
        }
        return try await connection.send(method: .GET, path: "/healthz", headers: headers)
    }

    private static func nanosecondHistogram() -> Histogram<UInt64> {
        Histogram<UInt64>(
            lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .three)
    }

    /// Runs `body` for indexes `0..<count` with `workers` workers; results in index order; the first error stops.
    private static func inParallel<T: Sendable>(
        count: Int, workers: Int, _ body: @escaping @Sendable (Int) async throws -> T
    ) async throws -> [T] {
        let next = IndexDispenser()
        return try await withThrowingTaskGroup(of: [(Int, T)].self) { group in
            for _ in 0..<min(workers, count) {
                group.addTask {
                    var mine: [(Int, T)] = []
                    while true {
                        let index = next.take()
                        guard index < count else { break }
                        mine.append((index, try await body(index)))
                    }
                    return mine
                }
            }
            var results = [T?](repeating: nil, count: count)
            for try await batch in group {
                for (index, value) in batch { results[index] = value }
            }
            return results.map { $0! }
        }
    }
}


struct AuthzReport: Codable, Sendable {
    var benchmark = "authz"
    var machine: MachineFacts
    var baseline: CryptoBaseline
    var run: AuthzRun
    var failures: [String]

    func render() -> String {
        let verify = baseline.operation(CryptoBaseline.p256Verify)
        var setup = Table(title: "devid-bench authz")
        setup.add("machine", "\(machine.cores) cores, \(machine.cpuModel); load at start \(machine.loadAverageAtStart)")
        setup.add("date, build", "\(machine.date), \(machine.build)")
        setup.add(
            "setup (not timed)",
            "\(run.devices) devices enrolled over EST (IDevID mTLS) in \(fixed(run.enrollSeconds, 1)) s; one connect "
                + "by fingerprint each in \(fixed(run.warmSeconds, 1)) s (index filled, credentials confirmed)")
        setup.add(
            "index",
            "\(run.index["devices"] ?? 0) devices, \(run.index["credentials"] ?? 0) credentials, "
                + "\(run.index["tenants"] ?? 0) tenant (default topic policy); clock fixed, so entries stay fresh")
        setup.add(
            "mix",
            "publish own telemetry (allow), publish another device's telemetry (deny topic_not_allowed), subscribe "
                + "own commands/# (allow), connect (allow); by device id and by fingerprint in turn")

        func rate(_ variant: AuthzRun.Variant, unit: String) -> String {
            "\(fixed(variant.decisionsPerSecond, 0)) \(unit)/s (\(variant.decisions) in \(fixed(variant.seconds, 3)) s)"
        }
        var local = Table(title: "In process")
        for variant in run.engine + run.service {
            let label = "\(variant.name), \(variant.parallelism) thread\(variant.parallelism == 1 ? "" : "s")"
            local.add(label, rate(variant, unit: "decisions"))
            if let latency = variant.latency {
                if variant.name == "DecisionEngine.decide" {
                    local.add(
                        "  latency ns",
                        "p50 \(fixed(latency.p50Us * 1_000, 0))  p90 \(fixed(latency.p90Us * 1_000, 0))  "
                            + "p99 \(fixed(latency.p99Us * 1_000, 0))  p99.9 \(fixed(latency.p999Us * 1_000, 0))  "
                            + "max \(fixed(latency.maxUs * 1_000, 0))  (mean \(fixed(latency.meanUs * 1_000, 0)); "
                            + "includes ~2 clock reads)")
                } else {
                    local.add("  latency µs", latency.line)
                }
            }
            local.add(
                "  CPU",
                "\(fixed(variant.cpuMicrosecondsPerDecision, 2)) µs per decision; "
                    + "cores \(percent(variant.cpuUtilization)) busy"
                    + (variant.audited > 0 ? "; \(variant.audited) audit events written" : ""))
            local.add("  checked", "\(variant.correct) of \(variant.decisions) answers as expected")
        }

        var sections = [setup.render(), baseline.table().render(), local.render()]
        if let healthz = run.healthz {
            var remote = Table(
                title: "HTTP on the operations listener (keep-alive; client and server share the cores)")
            for variant in [healthz] + run.http {
                remote.add(
                    variant.name,
                    rate(variant, unit: variant.name.hasPrefix("GET") ? "requests" : "decisions")
                        + " on \(variant.parallelism) connections"
                        + (variant.requestBytes > 0 ? "; request body \(variant.requestBytes) B" : ""))
                if let latency = variant.latency { remote.add("  latency µs", latency.line) }
                remote.add(
                    "  CPU",
                    "\(fixed(variant.cpuMicrosecondsPerDecision, 0)) µs per request (client + server); "
                        + "cores \(percent(variant.cpuUtilization)) busy"
                        + (variant.audited > 0 ? "; \(variant.audited) audit events written" : ""))
                remote.add(
                    "  checks",
                    "\(variant.status200) HTTP 200 of \(variant.decisions); \(variant.correct) answers as expected")
                if !variant.name.hasPrefix("GET") {
                    remote.add(
                        "  ÷ GET /healthz",
                        "\(percent(variant.decisionsPerSecond / healthz.decisionsPerSecond)) of the transport floor "
                            + "(\(fixed(healthz.decisionsPerSecond, 0))/s)")
                }
            }
            sections.append(remote.render())
        }

        var ratios = Table(title: "Against the baselines of this run")
        if let engine = run.engine.first {
            ratios.add(
                "engine, 1 thread ÷ P-256 verify",
                "\(fixed(engine.decisionsPerSecond / verify.opsPerSecondOneCore, 1))× the one-core verify rate "
                    + "(\(fixed(verify.opsPerSecondOneCore, 0))/s): a decision costs "
                    + "\(percent((1e6 / engine.decisionsPerSecond) / verify.microsecondsPerOp)) of one verify")
        }
        if let best = run.http.first {
            ratios.add(
                "HTTP mix ÷ P-256 verify",
                "\(percent(best.decisionsPerSecond / verify.opsPerSecondAllCores)) of the verify rate × "
                    + "\(baseline.cores) cores (\(fixed(verify.opsPerSecondAllCores, 0))/s)")
            if let engine = run.engine.last {
                ratios.add(
                    "HTTP mix ÷ engine",
                    "\(percent(best.decisionsPerSecond / engine.decisionsPerSecond)) of the in-process engine on "
                        + "\(engine.parallelism) threads")
            }
        }
        sections.append(ratios.render())

        var verdict = Table(title: "Checks (\(failures.isEmpty ? "all passed" : "FAILED"))")
        verdict.add(
            "checked",
            "every answer: allow/deny and reason as expected, for the device asked about; every HTTP answer 200; "
                + "authz audit events = denials + connects (\(run.authzAuditEvents) of "
                + "\(run.auditEventsAfter - run.auditEventsBefore) appended)")
        for failure in failures { verdict.add("FAILED", failure) }
        sections.append(verdict.render())
        return sections.joined(separator: "\n")
    }
}
