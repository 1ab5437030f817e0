import DevIDAgent
import DevIDServer
import DevIDTesting
import Foundation
import Testing
import SwiftASN1
import X509

/// Three `devid serve` processes on one PostgreSQL registry, as docs/deployment.md describes them: the same CA
/// hierarchy and secrets (a copy of the first server's data directory), one database. What one server changes,
/// every other applies within a second, and a claim token spent at one is spent at all.
@Suite("Several servers on one PostgreSQL registry", .serialized)
struct MultiServerTests {
    struct Cluster {
        let work: TemporaryDirectory
        let servers: [ServeProcess]
        let endpoints: [ServerEndpoints]
        let adminToken: String
        /// The database the servers share, and its URL.
        let databaseName: String?
        let databaseURL: String?

        func dataDir(_ index: Int) -> String { work.file("server-\(index)") }
        var root: String { work.file("server-0/ca/root.crt") }

        func devid(_ arguments: [String], server index: Int) async throws -> ServeCLITests.CommandResult {
            try await ServeCLITests.devid(arguments + ["--data-dir", dataDir(index)], in: work.path)
        }

        /// `curl` with the LDevID in `stateDir` to `GET /v1/device/status` (the agent's check-in) of a server.
        func checkIn(_ stateDir: String, server index: Int) async throws -> Int {
            let result = try await ExternalTool.runAsync([
                "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", root, "--cert", "\(stateDir)/cert.pem",
                "--key", "\(stateDir)/key.pem", endpoints[index].estURL + "/v1/device/status",
            ])
            return Int(result.stdout) ?? 0
        }

        /// An admin API `GET` on a server's operations listener, as JSON.
        func adminGet(_ path: String, server index: Int) async throws -> [String: Any] {
            let result = try await ExternalTool.runAsync([
                "curl", "-s", "-H", "Authorization: Bearer \(adminToken)", endpoints[index].opsURL + path,
            ])
            return (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]) ?? [:]
        }

        /// The issuing CA's CRL as a server serves it (DER).
        func crl(server index: Int) async throws -> Data {
            let path = work.file("crl-\(index)-\(UUID().uuidString.prefix(6)).der")
            _ = try await ExternalTool.runAsync([
                "curl", "-s", "--max-time", "10", "-o", path, endpoints[index].opsURL + "/crl/issuing.crl",
            ])
            return (try? Data(contentsOf: URL(fileURLWithPath: path))) ?? Data()
        }

        /// The CRL number of the issuing CA's CRL a server serves (0 if none).
        func crlNumber(server index: Int) async throws -> UInt64 {
            let result = try await devid(["crl", "fetch", "--json"], server: index)
            let view = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
            return (view?["number"] as? NSNumber)?.uint64Value ?? 0
        }

        /// The index of the server whose log says it holds the job lease, waiting up to `timeout` for one.
        func leaseHolder(among indices: [Int], servers: [ServeProcess], timeout: TimeInterval = 10) async throws -> Int? {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                for index in indices where servers[index].stderr().contains("this server holds the job lease") {
                    return index
                }
                try await Task.sleep(for: .milliseconds(50))
            }
            return nil
        }

        /// The decision API of a server for a device's MQTT connect.
        func decision(device: String, server index: Int) async throws -> String {
            let result = try await ExternalTool.runAsync([
                "curl", "-sS", "--max-time", "30", "-H", "Authorization: Bearer \(adminToken)", "-H",
                "Content-Type: application/json", endpoints[index].opsURL + "/v1/authz/mqtt", "-d",
                #"{"device":"\#(device)","action":"connect"}"#, "-w", "\n%{http_code}",
            ])
            let answer = try? JSONSerialization.jsonObject(
                with: Data((result.stdout.split(separator: "\n").first ?? "").utf8)) as? [String: Any]
            return answer?["result"] as? String ?? "\(result.stdout) \(result.stderr)"
        }
    }

    /// Copies the data directory of a running server. A file the server replaces meanwhile (written under a temporary
    /// name, then renamed: its CRLs) can vanish between the copy's listing and its reading of that file (CI rehearsal of
    /// e76d174: `.partitions.json.….tmp`); the copy then starts again, at most five times.
    static func copyRunningDataDirectory(_ source: String, to destination: String) throws {
        for attempt in 1...5 {
            do {
                try FileManager.default.copyItem(atPath: source, toPath: destination)
                return
            } catch {
                if attempt == 5 { throw error }
                try? FileManager.default.removeItem(atPath: destination)
            }
        }
    }

    /// Starts `count` servers on a new database of the sandbox; the first creates the CA, the others start from a copy
    /// of its data directory.
    static func withCluster(count: Int, _ body: (Cluster) async throws -> Void) async throws {
        let sandbox = try PostgresSandbox()
        let passwordFile = try #require(ProcessInfo.processInfo.environment[PostgresSandbox.passwordFileVariable])
        try await sandbox.withDatabase { database in
            let work = try TemporaryDirectory(prefix: "devid-multi")
            defer { work.remove() }
            let environment = ["DEVID_REGISTRY": database.url, "DEVID_REGISTRY_PASSWORD_FILE": passwordFile]
            var servers: [ServeProcess] = []
            defer { for server in servers { server.kill() } }
            var endpoints: [ServerEndpoints] = []
            for index in 0..<count {
                let dataDir = work.file("server-\(index)")
                if index > 0 {
                    try Self.copyRunningDataDirectory(work.file("server-0"), to: dataDir)
                    try? FileManager.default.removeItem(atPath: "\(dataDir)/server.json")
                }
                let server = try ServeProcess.start(dataDir: dataDir, workingDirectory: work.path, environment: environment)
                servers.append(server)
                endpoints.append(try await server.waitUntilListening(timeout: ServeCLITests.startTimeout))
            }
            let adminToken = try String(contentsOfFile: work.file("server-0/secrets/admin-token"), encoding: .utf8)
                .trimmingCharacters(in: .whitespacesAndNewlines)
            try await body(
                Cluster(
                    work: work, servers: servers, endpoints: endpoints, adminToken: adminToken,
                    databaseName: database.name, databaseURL: database.url))
        }
    }

    @Test(
        "a device revoked through one server is refused by another within a second: check-in, OCSP, CRL, decisions",
        .timeLimit(.minutes(5)))
    func revocationReachesEveryServer() async throws {
        try await Self.withCluster(count: 3) { cluster in
            let tenant = try await cluster.devid(["tenant", "create", "acme"], server: 0)
            try #require(tenant.succeeded, "\(tenant)")
            // The token is created through server 1 and spent through server 2.
            let token = try await cluster.devid(
                ["token", "create", "--tenant", "acme", "--device", "sensor-1", "--json"], server: 1)
            try #require(token.succeeded, "\(token)")
            let secret = try #require(
                (try JSONSerialization.jsonObject(with: Data(token.stdout.utf8)) as? [String: Any])?["token"] as? String)
            let stateDir = cluster.work.file("sensor-1")
            let enroll = try await ServeCLITests.devid(
                [
                    "agent", "enroll", "--server", cluster.endpoints[2].estURL, "--trust-bundle", cluster.root,
                    "--state-dir", stateDir, "--token", secret, "--device", "sensor-1",
                ], in: cluster.work.path)
            try #require(enroll.succeeded, "\(enroll)")
            let identity = try #require(
                try JSONSerialization.jsonObject(
                    with: try Data(contentsOf: URL(fileURLWithPath: "\(stateDir)/identity.json"))) as? [String: Any])
            let serial = try #require(identity["serial"] as? String)

            // Server 0 never saw the enrollment; it knows the device within a second all the same.
            #expect(try await cluster.checkIn(stateDir, server: 0) == 200)
            #expect(try await cluster.decision(device: "sensor-1", server: 0) == "allow")

            let revoke = try await cluster.devid(
                ["revoke", "--device", "sensor-1", "--reason", "keyCompromise"], server: 1)
            try #require(revoke.succeeded, "\(revoke)")
            let revoked = Date()

            // Polled on server 0 until each answer has changed; each must within a second of the revocation.
            var checkInRefused: TimeInterval?
            var decisionDenied: TimeInterval?
            var ocspRevoked: TimeInterval?
            var crlListed: TimeInterval?
            while Date().timeIntervalSince(revoked) < 5,
                checkInRefused == nil || decisionDenied == nil || ocspRevoked == nil || crlListed == nil
            {
                let elapsed = { Date().timeIntervalSince(revoked) }
                if checkInRefused == nil, try await cluster.checkIn(stateDir, server: 0) != 200 {
                    checkInRefused = elapsed()
                }
                if decisionDenied == nil, try await cluster.decision(device: "sensor-1", server: 0) == "deny" {
                    decisionDenied = elapsed()
                }
                if ocspRevoked == nil || crlListed == nil {
                    let view = try await cluster.adminGet("/v1/admin/certificates/\(serial)", server: 0)
                    if ocspRevoked == nil, (view["ocsp"] as? [String: Any])?["status"] as? String == "revoked" {
                        ocspRevoked = elapsed()
                    }
                    if crlListed == nil, (view["crl"] as? [String: Any])?["listed"] as? Bool == true {
                        crlListed = elapsed()
                    }
                }
            }
            let times = "check-in \(checkInRefused ?? -1) s, decision \(decisionDenied ?? -1) s, OCSP \(ocspRevoked ?? -1) s, CRL \(crlListed ?? -1) s"
            #expect(checkInRefused.map { $0 < 1 } == true, "\(times)")
            #expect(decisionDenied.map { $0 < 1 } == true, "\(times)")
            #expect(ocspRevoked.map { $0 < 1 } == true, "\(times)")
            #expect(crlListed.map { $0 < 1 } == true, "\(times)")
            print("revocation through server 1 seen by server 0: \(times)")

            // Every server serves the one CRL the job-lease holder built and stored: the same number, the same bytes
            // (never two CRLs under one number, smallstep/certificates#1351).
            var numbers: [Int] = []
            for index in 0..<3 {
                let deadline = Date().addingTimeInterval(5)
                var crl: [String: Any] = [:]
                while Date() < deadline {
                    crl = try await cluster.adminGet("/v1/admin/certificates/\(serial)", server: index)["crl"]
                        as? [String: Any] ?? [:]
                    if crl["listed"] as? Bool == true { break }
                    try await Task.sleep(for: .milliseconds(50))
                }
                #expect(crl["listed"] as? Bool == true, "server \(index): \(crl)")
                numbers.append(crl["number"] as? Int ?? 0)
            }
            #expect(Set(numbers).count == 1, "CRL numbers of the three servers: \(numbers)")
            var crls: [Data] = []
            for index in 0..<3 { crls.append(try await cluster.crl(server: index)) }
            #expect(Set(crls).count == 1 && !crls[0].isEmpty, "the three servers serve different CRLs")

            // A live setting set through one server is in effect on another within a second.
            let set = try await cluster.devid(["settings", "set", "ldevid.lifetime.days=14"], server: 2)
            try #require(set.succeeded, "\(set)")
            let setAt = Date()
            var lifetime = ""
            while Date().timeIntervalSince(setAt) < 5 {
                lifetime = try await cluster.devid(["profile", "show"], server: 0).stdout
                if lifetime.contains("lifetime:            14 days") { break }
                try await Task.sleep(for: .milliseconds(50))
            }
            let settingSeen = Date().timeIntervalSince(setAt)
            #expect(lifetime.contains("lifetime:            14 days"), "\(lifetime)")
            #expect(settingSeen < 1, "the setting reached server 0 after \(settingSeen) s")

            // One chain across the three servers' writes.
            let verify = try await cluster.devid(["audit", "verify"], server: 2)
            #expect(verify.succeeded, "\(verify)")
        }
    }

    @Test("one single-use claim token sent to three servers at the same instant: exactly one certificate",
        .timeLimit(.minutes(5)))
    func claimTokenRace() async throws {
        try await Self.withCluster(count: 3) { cluster in
            let tenant = try await cluster.devid(["tenant", "create", "acme"], server: 0)
            try #require(tenant.succeeded, "\(tenant)")
            for round in 1...3 {
                let device = "race-\(round)"
                let token = try await cluster.devid(
                    ["token", "create", "--tenant", "acme", "--device", device, "--json"], server: round % 3)
                try #require(token.succeeded, "\(token)")
                let secret = try #require(
                    (try JSONSerialization.jsonObject(with: Data(token.stdout.utf8)) as? [String: Any])?["token"]
                        as? String)
                let results = try await withThrowingTaskGroup(of: ServeCLITests.CommandResult.self) { group in
                    for index in 0..<3 {
                        group.addTask {
                            try await ServeCLITests.devid(
                                [
                                    "agent", "enroll", "--server", cluster.endpoints[index].estURL, "--trust-bundle",
                                    cluster.root, "--state-dir", cluster.work.file("\(device)-\(index)"), "--token",
                                    secret, "--device", device,
                                ], in: cluster.work.path)
                        }
                    }
                    return try await group.reduce(into: []) { $0.append($1) }
                }
                #expect(results.filter(\.succeeded).count == 1, "\(results)")
                for refused in results where !refused.succeeded {
                    #expect(refused.stderr.contains("claim token used up"), "\(refused)")
                }
                let detail = try await cluster.adminGet("/v1/admin/devices/\(device)", server: round % 3)
                #expect((detail["credentials"] as? [Any])?.count == 1, "\(detail)")
            }
        }
    }

    /// What docs/deployment.md promises when the database is unreachable: enrollment refuses with 503 and Retry-After
    /// (nothing issued), decisions, OCSP and the CRL answer from memory, and the server recovers by itself.
    @Test("the registry unreachable: enrollment 503 with Retry-After; decisions, OCSP, CRL answer; then recovery",
        .timeLimit(.minutes(5)))
    func registryOutage() async throws {
        let sandbox = try PostgresSandbox()
        try await Self.withCluster(count: 1) { cluster in
            let tenant = try await cluster.devid(["tenant", "create", "acme"], server: 0)
            try #require(tenant.succeeded, "\(tenant)")
            let endpoints = cluster.endpoints[0]
            let tokens = try await FaultHarness.makeTokens(
                count: 3, tenant: "acme", prefix: "outage", opsURL: endpoints.opsURL, adminToken: cluster.adminToken)
            let root = try FaultHarness.root(cluster.dataDir(0))
            let dataDir = cluster.dataDir(0)
            // Two devices enrolled; only the first is asked about (decision, OCSP) before the outage.
            var pems: [String] = []
            for index in [0, 2] {
                let certificate = try await FaultHarness.enroll(
                    estURL: endpoints.estURL, root: root, token: tokens[index],
                    csr: try FaultHarness.csr(device: tokens[index].device))
                let pem = cluster.work.file("device-\(index).pem")
                try certificate.serializeAsPEM().pemString.write(toFile: pem, atomically: true, encoding: .utf8)
                pems.append(pem)
            }
            func ocsp(_ pem: String) throws -> String {
                try AuditTamperTests.run(
                    "openssl",
                    [
                        "ocsp", "-issuer", "\(dataDir)/ca/issuing.crt", "-cert", pem, "-url", endpoints.opsURL + "/ocsp",
                        "-CAfile", "\(dataDir)/ca/root.crt", "-no_nonce", "-timeout", "30",
                    ], allowFailure: true)
            }
            #expect(try await cluster.decision(device: tokens[0].device, server: 0) == "allow")
            let decidedAt = ContinuousClock.now
            #expect(try ocsp(pems[0]).contains("\(pems[0]): good"))

            // The database refuses every connection, and the server's are closed.
            let database = try #require(cluster.databaseName)
            try await sandbox.run("ALTER DATABASE \(database) ALLOW_CONNECTIONS false")
            try await sandbox.run(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '\(database)'")

            do {
                _ = try await FaultHarness.enroll(
                    estURL: endpoints.estURL, root: root, token: tokens[1],
                    csr: try FaultHarness.csr(device: tokens[1].device))
                Issue.record("an enrollment succeeded without its registry")
            } catch let error as AgentError {
                #expect(error.status == 503, "\(error)")
                #expect(error.retryAfter == 10, "\(error)")
                #expect(error.serverReason == "the registry is unavailable; nothing was issued; retry later", "\(error)")
            }
            // Past the decision index's 5 s reload age: the entry cannot be reloaded, and answers from memory.
            try await Task.sleep(until: decidedAt + .seconds(6))
            let during = try await cluster.decision(device: tokens[0].device, server: 0)
            #expect(during == "allow", "\(during) \(cluster.servers[0].stderr().split(separator: "\n").filter { !$0.contains("PostgresNIO") }.suffix(15).joined(separator: "\n"))")
            // A device never asked about: no entry in memory, a 503 the broker retries.
            let unknown = try await cluster.decision(device: tokens[2].device, server: 0)
            #expect(unknown.contains("503"), "\(unknown)")
            // OCSP: the first device's answer is cached; the second's comes from the CRL this server publishes.
            #expect(try ocsp(pems[0]).contains("\(pems[0]): good"))
            let fromCRL = try ocsp(pems[1])
            #expect(fromCRL.contains("\(pems[1]): good"), "\(fromCRL)")
            // An admin write: 503 from the route edge, nothing changed.
            let write = try await FaultHarness.admin(
                "POST", endpoints.opsURL, "/v1/admin/tenants", token: cluster.adminToken, json: ["id": "during"])
            #expect(write.status == 503, "\(write.status) \(String(decoding: write.body, as: UTF8.self))")
            #expect(
                String(decoding: write.body, as: UTF8.self)
                    == "the registry is unavailable: nothing was changed; retry later\n")
            let crl = try AuditTamperTests.run(
                "curl", ["-sS", "--max-time", "30", "-o", "/dev/null", "-w", "%{http_code}", endpoints.opsURL + "/crl/issuing.crl"])
            #expect(crl == "200", "\(crl)")
            #expect(cluster.servers[0].process.isRunning)

            // The database is back: the refused token enrolls (it was not spent), with no restart.
            try await sandbox.run("ALTER DATABASE \(database) ALLOW_CONNECTIONS true")
            let deadline = ContinuousClock.now + .seconds(30)
            var recovered: Certificate?
            while recovered == nil, ContinuousClock.now < deadline {
                do {
                    recovered = try await FaultHarness.enroll(
                        estURL: endpoints.estURL, root: root, token: tokens[1],
                        csr: try FaultHarness.csr(device: tokens[1].device))
                } catch let error as AgentError where error.status == 503 {
                    try await Task.sleep(for: .milliseconds(200))
                }
            }
            #expect(recovered != nil, "no enrollment within 30 s of the database's return")
            let verify = try await cluster.devid(["audit", "verify"], server: 0)
            #expect(verify.succeeded, "\(verify)")
        }
    }

    /// Three servers restarted one after the other (SIGINT, then a start on the same data directory and ports) while
    /// devices keep enrolling through all three, retrying on connection errors as the agent does: every device gets
    /// exactly one certificate, recorded, and no token is spent without one.
    @Test("a rolling restart of three servers during a stream of enrollments loses none", .timeLimit(.minutes(5)))
    func rollingRestart() async throws {
        try await Self.withCluster(count: 3) { cluster in
            let tenant = try await cluster.devid(["tenant", "create", "acme"], server: 0)
            try #require(tenant.succeeded, "\(tenant)")
            let tokens = try await FaultHarness.makeTokens(
                count: 45, tenant: "acme", prefix: "roll", opsURL: cluster.endpoints[0].opsURL,
                adminToken: cluster.adminToken)
            let root = try FaultHarness.root(cluster.dataDir(0))
            let endpoints = cluster.endpoints

            // The stream: 3 workers, each enrolling its devices one after the other, spread over the servers.
            let stream = Task { () -> [String: (serial: String, attempts: Int)] in
                try await withThrowingTaskGroup(of: [String: (serial: String, attempts: Int)].self) { group in
                    for worker in 0..<3 {
                        group.addTask {
                            var issued: [String: (serial: String, attempts: Int)] = [:]
                            for (index, token) in tokens.enumerated() where index % 3 == worker {
                                let csr = try FaultHarness.csr(device: token.device)
                                var attempt = 0
                                while true {
                                    attempt += 1
                                    let server = endpoints[(index + attempt) % 3]
                                    do {
                                        let certificate = try await FaultHarness.enroll(
                                            estURL: server.estURL, root: root, token: token, csr: csr,
                                            timeout: .seconds(30))
                                        issued[token.device] = (FaultHarness.serial(certificate), attempt)
                                        break
                                    } catch let error as AgentError where error.status.map({ $0 < 500 && $0 != 429 }) == true {
                                        // A refusal, not a restart: what must never happen here.
                                        throw error
                                    } catch {
                                        guard attempt < 60 else { throw error }
                                        try await Task.sleep(for: .milliseconds(100))
                                    }
                                }
                                try await Task.sleep(for: .milliseconds(50))
                            }
                            return issued
                        }
                    }
                    return try await group.reduce(into: [:]) { $0.merge($1) { first, _ in first } }
                }
            }

            // The restarts, one server at a time, while the stream runs.
            var restarted: [ServeProcess] = []
            defer { for server in restarted { server.kill() } }
            let environment = [
                "DEVID_REGISTRY": try #require(cluster.databaseURL),
                "DEVID_REGISTRY_PASSWORD_FILE": try #require(
                    ProcessInfo.processInfo.environment[PostgresSandbox.passwordFileVariable]),
            ]
            for index in 0..<3 {
                try await Task.sleep(for: .milliseconds(700))
                let stopped = try await cluster.servers[index].interrupt(timeout: 30)
                #expect(stopped.exitedNormally && stopped.status == 0, "server \(index): \(stopped)")
                let estPort = Int(endpoints[index].estURL.split(separator: ":").last ?? "") ?? 0
                let opsPort = Int(endpoints[index].opsURL.split(separator: ":").last ?? "") ?? 0
                let server = try ServeProcess.start(
                    dataDir: cluster.dataDir(index), workingDirectory: cluster.work.path, environment: environment,
                    estPort: estPort, opsPort: opsPort)
                restarted.append(server)
                _ = try await server.waitUntilListening(timeout: ServeCLITests.startTimeout)
            }

            let issued = try await stream.value
            #expect(issued.count == tokens.count, "\(issued.count) of \(tokens.count) devices enrolled")
            #expect(Set(issued.values.map(\.serial)).count == issued.count, "a serial was issued twice")
            let retried = issued.values.filter { $0.attempts > 1 }.count
            print("rolling restart: \(issued.count) enrolled, \(retried) after a retry")
            // Exactly one recorded credential per device: none issued without reaching its device.
            for token in tokens {
                let detail = try await cluster.adminGet("/v1/admin/devices/\(token.device)", server: 1)
                let serials = (detail["credentials"] as? [[String: Any]] ?? []).compactMap { $0["serial"] as? String }
                #expect(serials == [issued[token.device]?.serial].compactMap { $0 }, "\(token.device): \(serials)")
            }
            let verify = try await cluster.devid(["audit", "verify"], server: 2)
            #expect(verify.succeeded, "\(verify)")
        }
    }

    /// The server holding the job lease is killed with SIGKILL: another takes the lease within seconds, builds the
    /// next CRL under a strictly greater number, and every survivor serves it.
    @Test("kill -9 of the job-lease holder: another takes over, the next CRL's number is greater", .timeLimit(.minutes(5)))
    func leaseHolderKilled() async throws {
        try await Self.withCluster(count: 3) { cluster in
            let tenant = try await cluster.devid(["tenant", "create", "acme"], server: 0)
            try #require(tenant.succeeded, "\(tenant)")
            let tokens = try await FaultHarness.makeTokens(
                count: 2, tenant: "acme", prefix: "lease", opsURL: cluster.endpoints[0].opsURL,
                adminToken: cluster.adminToken)
            let root = try FaultHarness.root(cluster.dataDir(0))
            for token in tokens {
                _ = try await FaultHarness.enroll(
                    estURL: cluster.endpoints[1].estURL, root: root, token: token,
                    csr: try FaultHarness.csr(device: token.device))
            }
            let holder = try #require(
                try await cluster.leaseHolder(among: [0, 1, 2], servers: cluster.servers), "no server holds the lease")
            let survivors = [0, 1, 2].filter { $0 != holder }
            // Wait until every server serves the holder's newest CRL, then remember its number.
            var before: UInt64 = 0
            let settled = Date().addingTimeInterval(10)
            while Date() < settled {
                let numbers = [try await cluster.crlNumber(server: holder)]
                    + (try await survivors.asyncMap { try await cluster.crlNumber(server: $0) })
                if Set(numbers).count == 1, numbers[0] > 0 {
                    before = numbers[0]
                    break
                }
                try await Task.sleep(for: .milliseconds(100))
            }
            try #require(before > 0, "the servers never agreed on a CRL")

            cluster.servers[holder].kill()
            let killed = Date()
            let successor = try #require(
                try await cluster.leaseHolder(among: survivors, servers: cluster.servers, timeout: 15),
                "no survivor took the lease within 15 s")
            let takeover = Date().timeIntervalSince(killed)
            #expect(takeover < 5, "the lease was taken over after \(takeover) s")

            let revoke = try await cluster.devid(["revoke", "--device", tokens[0].device], server: survivors[0])
            try #require(revoke.succeeded, "\(revoke)")
            let deadline = Date().addingTimeInterval(10)
            var after: [UInt64] = []
            while Date() < deadline {
                after = try await survivors.asyncMap { try await cluster.crlNumber(server: $0) }
                if after.allSatisfy({ $0 > before }), Set(after).count == 1 { break }
                try await Task.sleep(for: .milliseconds(100))
            }
            #expect(after.allSatisfy { $0 > before } && Set(after).count == 1, "CRL numbers \(before) then \(after)")
            print("job lease: server \(holder) killed, server \(successor) took over in \(takeover) s; CRL \(before) -> \(after)")
        }
    }
}

extension Array {
    func asyncMap<T>(_ transform: (Element) async throws -> T) async rethrows -> [T] {
        var results: [T] = []
        for element in self { results.append(try await transform(element)) }
        return results
    }
}
