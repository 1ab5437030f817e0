import AsyncHTTPClient
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Logging
import ServiceLifecycle
import X509
import Testing

/// Issue #13: strangers cannot turn failed requests into audit rows. Failures that name nobody are counted and
/// written in aggregate; failures of an identified token or device stay one row each.
@Suite("Anonymous failures are audited in aggregate", .serialized)
struct AnonymousFailureAuditTests {
    @Test("200 bad-token admin requests write 2 rows, not 200: the first at once, one summary with the count at flush")
    func badTokenFlood() async throws {
        let server = try await LiveServer()
        let statuses = try await withClient(try server.client()) { client in
            var statuses: [Int] = []
            for _ in 0..<200 {
                statuses.append(
                    try await client.send(
                        "GET", server.opsURL + "/v1/admin/ca", headers: [("Authorization", "Bearer devid_adm_nope")]
                    ).status)
            }
            return statuses
        }
        #expect(statuses.allSatisfy { $0 == 401 })
        let filter = AuditFilter(action: "admin.auth", outcome: .denied, limit: 1000)
        let before = try await server.state.store.auditEvents(filter)
        // The server's own flusher also runs, every 60 s of real time: on a machine loaded by the whole suite the 200
        // requests took up to 2 minutes (CI), so windows can close mid-flood. Each window writes its first failure
        // at once and, if more came, one summary at flush ("<n> from <address> in <s> s (first recorded alone)",
        // <s> by the server's clock, which this test does not move). What must hold: rows are windows, not requests,
        // and every failure is counted exactly once.
        let alone = "invalid admin token: GET /v1/admin/ca"
        #expect(before.count <= 7, "a few windows at most, not a row per request: \(before.map(\.reason))")
        #expect(before.last?.reason == alone)
        let quiet = before.count == 1
        if quiet {
            #expect(await server.state.anonymousFailures.pending == 199)
        }

        server.clock.advance(by: 60)
        let written = await server.state.anonymousFailures.flush()
        #expect(written == 1 || (!quiet && written == 0), "one summary, unless the last window held one failure")
        let after = try await server.state.store.auditEvents(filter)
        #expect(after.count == before.count + written)
        let summary = try #require(after.first)
        #expect(summary.actor == "anonymous")
        let pattern = #"^[0-9]+ from 127\.0\.0\.1 in [0-9]+ s \(first recorded alone\): invalid admin token: GET /v1/admin/ca$"#
        let summaries = after.filter { $0.reason.range(of: pattern, options: .regularExpression) != nil }
        let firsts = after.filter { $0.reason == alone }
        #expect(summaries.count + firsts.count == after.count, "\(after.map(\.reason))")
        // A summary counts its window's first failure too; a window of one failure has no summary.
        let counted = summaries.compactMap { Int($0.reason.prefix { $0.isNumber }) }.reduce(0, +)
        #expect(counted + (firsts.count - summaries.count) == 200, "every failure once: \(after.map(\.reason))")
        if quiet {
            #expect(summary.reason == "200 from 127.0.0.1 in 60 s (first recorded alone): " + alone)
        }
        #expect(!after.contains { $0.reason.contains("devid_adm_nope") }, "no presented token in the trail")
        #expect(await server.state.anonymousFailures.flush() == 0, "nothing left to write")
        #expect(try await server.state.store.verifyAuditChain() == nil)
        try await server.stop()
    }

    @Test("a revoked admin token names a token: each of its refusals is still one row")
    func identifiedTokenStaysIndividual() async throws {
        let server = try await LiveServer()
        let admin = [("Authorization", "Bearer \(server.adminToken)"), ("Content-Type", "application/json")]
        let (created, statuses) = try await withClient(try server.client()) { client in
            let created = try await client.send(
                "POST", server.opsURL + "/v1/admin/admin-tokens", headers: admin,
                body: #"{"name":"ops-bot","role":"operator"}"#)
            let decoded = try JSONDecoder().decode([String: AnyDecodable].self, from: Data(created.body.utf8))
            let id = decoded["id"]?.string ?? ""
            let secret = decoded["token"]?.string ?? ""
            _ = try await client.send("POST", server.opsURL + "/v1/admin/admin-tokens/\(id)/revoke", headers: admin)
            var statuses: [Int] = []
            for _ in 0..<3 {
                statuses.append(
                    try await client.send(
                        "GET", server.opsURL + "/v1/admin/devices", headers: [("Authorization", "Bearer \(secret)")]
                    ).status)
            }
            return (created.status, statuses)
        }
        #expect(created == 201)
        #expect(statuses == [401, 401, 401])
        let denials = try await server.state.store.auditEvents(
            AuditFilter(action: "admin.auth", outcome: .denied, limit: 100))
        #expect(denials.filter { $0.reason.hasPrefix("revoked admin token ops-bot") }.count == 3)
        #expect(await server.state.anonymousFailures.pending == 0)
        try await server.stop()
    }

    @Test("unknown claim tokens and refused handshakes are counted per source; the summary names the address")
    func claimTokensAndHandshakes() async throws {
        let f = try await ESTFixture()
        let csr = try ESTFixture.csr(commonName: "dev", key: try KeyMaterial.generate(.p256))
        let replies = try await withClient(try f.server.client()) { client in
            var statuses: [Int] = []
            for _ in 0..<5 {
                statuses.append(
                    try await f.post(
                        "simpleenroll", csr: csr, client: client,
                        headers: [("Authorization", "Bearer devid_ct_notarealtoken")]
                    ).status)
            }
            return statuses
        }
        #expect(replies == [401, 401, 401, 401, 401])
        let stranger = try TestChain(clock: f.server.clock)
        defer { stranger.directory.remove() }
        let (key, cert) = try stranger.ldevid(device: "intruder")
        for _ in 0..<3 {
            await #expect(throws: (any Error).self) {
                try await withClient(try f.server.client(certificate: [cert], key: key)) {
                    try await $0.send("GET", f.server.estURL + "/v1/tls/peer")
                }
            }
        }
        #expect(try await f.store.auditEvents(AuditFilter(action: "est.enroll", limit: 100)).count == 1)
        #expect(try await f.store.auditEvents(AuditFilter(action: "tls.client_auth", limit: 100)).count == 1)
        #expect(await f.server.state.anonymousFailures.flush() == 2)
        let enroll = try await f.store.auditEvents(AuditFilter(action: "est.enroll", limit: 100))
        #expect(enroll.first?.reason == "5 from 127.0.0.1 in 0 s (first recorded alone): invalid claim token")
        let tls = try await f.store.auditEvents(AuditFilter(action: "tls.client_auth", limit: 100))
        #expect(tls.count == 2)
        #expect(
            tls.first?.reason
                == "3 from 127.0.0.1 in 0 s (first recorded alone): certificate does not chain to a trusted CA")
        #expect(tls.first?.serial == cert.devidSerial, "the summary keeps the serial the certificate claimed")
        try await f.server.stop()
    }

    @Test("EST requests refused before authentication (wrong Content-Type) are counted, not a row each")
    func wrongContentType() async throws {
        let server = try await LiveServer()
        let statuses = try await withClient(try server.client()) { client in
            var statuses: [Int] = []
            for _ in 0..<20 {
                statuses.append(
                    try await client.send(
                        "POST", server.estURL + "/.well-known/est/simpleenroll",
                        headers: [("Content-Type", "text/plain")], body: "x"
                    ).status)
            }
            return statuses
        }
        #expect(statuses.allSatisfy { $0 == 415 })
        #expect(try await server.state.store.auditEvents(AuditFilter(action: "est.enroll", limit: 100)).count == 1)
        await server.state.anonymousFailures.flush()
        let rows = try await server.state.store.auditEvents(AuditFilter(action: "est.enroll", limit: 100))
        #expect(rows.map(\.reason) == [
            "20 from 127.0.0.1 in 0 s (first recorded alone): Content-Type must be application/pkcs10",
            "Content-Type must be application/pkcs10",
        ])
        try await server.stop()
    }

    @Test("groups are capped per window: the rest fold into one 'other sources' row per action")
    func cappedGroups() async throws {
        let clock = ManualWallClock(Date(timeIntervalSince1970: 1_790_000_000))
        let store = MemoryStore()
        let auditor = Auditor(store: store, clock: clock, logger: Logger(label: "test"))
        let failures = AnonymousFailures(auditor: auditor, clock: clock, maximumKeys: 3)
        for index in 0..<10 {
            await failures.record(action: "admin.auth", reason: "invalid admin token: GET /p\(index)", source: "192.0.2.7")
        }
        for _ in 0..<4 {
            await failures.record(action: "tls.client_auth", reason: "certificate does not chain", source: "192.0.2.7")
        }
        #expect(try await store.auditEvents(AuditFilter(limit: 100)).count == 3, "only the 3 kept groups, at once")
        clock.advance(by: 30)
        #expect(await failures.flush() == 2)
        let rows = try await store.auditEvents(AuditFilter(limit: 100, oldestFirst: true))
        #expect(rows.count == 5)
        #expect(rows.map(\.reason).suffix(2) == [
            "7 from other sources in 30 s (over 3 kinds of failure)",
            "4 from other sources in 30 s (over 3 kinds of failure)",
        ])
        #expect(rows.suffix(2).map(\.action) == ["admin.auth", "tls.client_auth"])
    }

    @Test("the flusher writes the summary every interval, and what is left at graceful shutdown")
    func flusherService() async throws {
        let clock = ManualWallClock(Date(timeIntervalSince1970: 1_790_000_000))
        let store = MemoryStore()
        let failures = AnonymousFailures(
            auditor: Auditor(store: store, clock: clock, logger: Logger(label: "test")), clock: clock)
        for _ in 0..<3 { await failures.record(action: "admin.auth", reason: "missing admin token", source: "::1") }
        let flusher = AnonymousFailureFlusher(failures: failures, clock: ContinuousClock(), interval: .milliseconds(50))
        let group = ServiceGroup(configuration: .init(services: [flusher], logger: Logger(label: "test")))
        let running = Task { try await group.run() }
        // Up to 30 s (a 50 ms timer, but beside every other suite on two cores), until the row is written.
        let expected = "3 from ::1 in 0 s (first recorded alone): missing admin token"
        var waited = 0
        while try await store.auditEvents(AuditFilter(limit: 10)).first?.reason != expected, waited < 1_500 {
            try await Task.sleep(for: .milliseconds(20))
            waited += 1
        }
        #expect(await failures.pending == 0)
        #expect(try await store.auditEvents(AuditFilter(limit: 10)).first?.reason == expected)
        await failures.record(action: "admin.auth", reason: "invalid admin token", source: "::1")
        await failures.record(action: "admin.auth", reason: "invalid admin token", source: "::1")
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(await failures.pending == 0, "shutdown flushed the rest")
        #expect(try await store.auditEvents(AuditFilter(limit: 10)).first?.reason
            == "2 from ::1 in 0 s (first recorded alone): invalid admin token")
    }

    @Test("the source is the IP address only, bounded, printable", arguments: [
        ("203.0.113.9", "203.0.113.9"), ("::1", "::1"), (nil, "unknown"), ("", "unknown"),
        ("1.2.3.4\n5; rm", "1.2.3.45"),
    ] as [(String?, String)])
    func source(_ raw: String?, _ expected: String) async throws {
        let clock = ManualWallClock(Date(timeIntervalSince1970: 1_790_000_000))
        let store = MemoryStore()
        let failures = AnonymousFailures(
            auditor: Auditor(store: store, clock: clock, logger: Logger(label: "test")), clock: clock)
        await failures.record(action: "authz.auth", reason: "invalid authz token", source: raw)
        await failures.record(action: "authz.auth", reason: "invalid authz token", source: raw)
        await failures.flush()
        let rows = try await store.auditEvents(AuditFilter(limit: 10))
        #expect(rows.first?.reason == "2 from \(expected) in 0 s (first recorded alone): invalid authz token")
    }
}

/// Just enough JSON to read two string fields.
private struct AnyDecodable: Decodable {
    let string: String?
    init(from decoder: any Decoder) throws {
        string = try? decoder.singleValueContainer().decode(String.self)
    }
}
