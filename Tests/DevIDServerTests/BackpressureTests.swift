import AsyncHTTPClient
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Testing
import X509

/// Issue #13: token buckets per client (429 + Retry-After) and a cap on enrollments in flight (503 + Retry-After),
/// decided before any CSR is read; OCSP, CRLs and the decision API are never throttled by them.
@Suite("Back-pressure: 429 and 503 with Retry-After", .serialized)
struct BackpressureTests {
    static let t0 = Date(timeIntervalSince1970: 1_790_000_000)

    @Test("a bucket refills at its rate on the injected clock; a refused request takes nothing from other buckets")
    func bucketRefills() async {
        let clock = ManualWallClock(Self.t0)
        let limiter = RateLimiter(clock: clock)
        let slow = RateLimits.Rate(perSecond: 0.5, burst: 2)
        let wide = RateLimits.Rate(perSecond: 100, burst: 3)
        let source = RateLimiter.Key(.source, area: "est", "192.0.2.1")
        let global = RateLimiter.Key(.global, area: "est", "all")
        #expect(await limiter.admit([(source, slow), (global, wide)]) == nil)
        #expect(await limiter.admit([(source, slow), (global, wide)]) == nil)
        let refused = await limiter.admit([(source, slow), (global, wide)])
        #expect(refused?.retryAfter == 2, "one token at 0.5/s")
        #expect(refused?.scope == .source)
        #expect(await limiter.admit([(global, wide)]) == nil, "the refusal took nothing from the global bucket")
        #expect(await limiter.admit([(global, wide)]) != nil, "3 taken in all")
        clock.advance(by: 2)
        #expect(await limiter.admit([(source, slow)]) == nil)
        #expect(await limiter.admit([(source, .unlimited)]) == nil, "a rate of 0 is no limit")
        #expect(await limiter.refusals[.source] == 1)
    }

    @Test("a clock set back does not lock a client out until it catches up")
    func clockSetBack() async {
        let clock = ManualWallClock(Self.t0)
        let limiter = RateLimiter(clock: clock)
        let rate = RateLimits.Rate(perSecond: 1, burst: 1)
        let key = RateLimiter.Key(.device, area: "checkin", "d-1")
        #expect(await limiter.admit([(key, rate)]) == nil)
        clock.advance(by: -86_400)
        #expect(await limiter.admit([(key, rate)])?.retryAfter == 1, "no token yet, and told to wait 1 s, not a day")
        clock.advance(by: 1)
        #expect(await limiter.admit([(key, rate)]) == nil)
    }

    @Test("the in-flight cap keeps a reserve that only renewals may take")
    func gateReserve() async {
        let gate = EnrollmentGate(capacity: 3, reserve: 1)
        #expect(await gate.enter(priority: false))
        #expect(await gate.enter(priority: false))
        #expect(await !gate.enter(priority: false), "the last slot is for renewals")
        #expect(await gate.enter(priority: true))
        #expect(await !gate.enter(priority: true), "saturated")
        await gate.leave()
        #expect(await gate.enter(priority: true))
        #expect(await gate.refusals == 2)
        #expect(await EnrollmentGate(capacity: 0, reserve: 0).enter(priority: false), "0 = no cap")
    }

    @Test("EST over the per-source bucket: 429, Retry-After, rate_limited, nothing stored, one audit row for the lot")
    func estPerSource() async throws {
        let server = try await LiveServer(clock: ManualWallClock(Self.t0)) {
            $0.rateLimits.perSource = .init(perSecond: 0.1, burst: 2)
        }
        let csr = try ESTFixture.csr(commonName: "dev", key: try KeyMaterial.generate(.p256))
        let replies = try await withClient(try server.client()) { client in
            var replies: [Reply] = []
            for _ in 0..<6 {
                replies.append(
                    try await client.send(
                        "POST", server.estURL + "/.well-known/est/simpleenroll",
                        headers: [("Content-Type", "application/pkcs10"), ("Authorization", "Bearer devid_ct_nope")],
                        body: ESTBase64.encode(csr)))
            }
            return replies
        }
        #expect(replies.map(\.status) == [401, 401, 429, 429, 429, 429])
        let limited = replies[2]
        #expect(limited.header("Retry-After") == "10")
        #expect(limited.header("DevID-Refusal") == "rate_limited")
        #expect(limited.body == "rate limited: too many requests for this source address\n")
        #expect(try await server.state.store.credentialCount() == 0)
        let rows = try await server.state.store.auditEvents(AuditFilter(action: "est.enroll", limit: 100))
        #expect(rows.count == 2, "first invalid token, first rate refusal: \(rows.map(\.reason))")
        await server.state.anonymousFailures.flush()
        let after = try await server.state.store.auditEvents(AuditFilter(action: "est.enroll", limit: 100))
        #expect(after.contains { $0.reason.hasPrefix("4 from 127.0.0.1 in 0 s (first recorded alone): rate limited") })

        server.clock.advance(by: 10)
        let again = try await withClient(try server.client()) {
            try await $0.send(
                "POST", server.estURL + "/.well-known/est/simpleenroll",
                headers: [("Content-Type", "application/pkcs10"), ("Authorization", "Bearer devid_ct_nope")],
                body: ESTBase64.encode(csr))
        }
        #expect(again.status == 401, "after Retry-After the bucket has a token again")
        try await server.stop()
    }

    @Test("a claim token's own bucket: another token from the same address still gets through")
    func perClaimToken() async throws {
        let server = try await LiveServer(clock: ManualWallClock(Self.t0)) {
            $0.rateLimits.perClaimToken = .init(perSecond: 1.0 / 30, burst: 1)
        }
        let csr = ESTBase64.encode(try ESTFixture.csr(commonName: "dev", key: try KeyMaterial.generate(.p256)))
        let statuses = try await withClient(try server.client()) { client in
            var statuses: [(Int, String?)] = []
            for token in ["devid_ct_a", "devid_ct_a", "devid_ct_b"] {
                let reply = try await client.send(
                    "POST", server.estURL + "/.well-known/est/simpleenroll",
                    headers: [("Content-Type", "application/pkcs10"), ("Authorization", "Bearer \(token)")], body: csr)
                statuses.append((reply.status, reply.header("Retry-After")))
            }
            return statuses
        }
        #expect(statuses.map(\.0) == [401, 429, 401])
        #expect(statuses[1].1 == "30")
        try await server.stop()
    }

    @Test("the reserve is for renewals about to expire: from the policy's earliest jittered renewal point on")
    func renewalPriorityWindow() {
        // A 30-day LDevID backdated 5 minutes, the default policy: renewal at 2/3, ±10 % of the renewal window.
        let policy = RotationPolicy()
        let notBefore = Self.t0.addingTimeInterval(-300)
        let notAfter = notBefore.addingTimeInterval(30 * 86_400)
        let start = policy.renewalStart(notBefore: notBefore, notAfter: notAfter)
        let earliest = start.addingTimeInterval(-0.1 * notAfter.timeIntervalSince(start))
        #expect(RenewalPriority.priorityStart(notBefore: notBefore, notAfter: notAfter, policy: policy) == earliest)
        func urgent(_ now: Date) -> Bool {
            RenewalPriority.isUrgent(notBefore: notBefore, notAfter: notAfter, now: now, policy: policy)
        }
        #expect(!urgent(Self.t0), "just issued")
        #expect(!urgent(earliest.addingTimeInterval(-1)), "an agent does not renew on its own this early")
        #expect(urgent(earliest), "the earliest jittered renewal point")
        #expect(urgent(start))
        #expect(urgent(notAfter.addingTimeInterval(-1)))
        #expect(urgent(notAfter.addingTimeInterval(86_400)), "expired within grace: a late renewal")
        var noJitter = policy
        noJitter.jitterFraction = 0
        #expect(RenewalPriority.priorityStart(notBefore: notBefore, notAfter: notAfter, policy: noJitter) == start)
    }

    @Test("saturated: a first enrollment is 503 with Retry-After before its CSR is read; a renewal still gets in")
    func overloadedBeforeCSR() async throws {
        let server = try await LiveServer(clock: ManualWallClock(Self.t0)) {
            $0.rateLimits.maxEnrollmentsInFlight = 1
            $0.rateLimits.renewalReserve = 1
            $0.rateLimits.overloadRetryAfterSeconds = 7
        }
        let hierarchy = server.state.hierarchy
        let key = try KeyMaterial.generate(.p256)
        let ldevid = try hierarchy.issuing.issueLDevID(
            device: try DeviceID("renew-1"), tenant: try TenantID("acme"), trustDomain: hierarchy.trustDomain,
            publicKey: key.publicKey, now: server.clock.now())
        let garbage = "this is not a CSR"
        let first = try await withClient(try server.client()) {
            try await $0.send(
                "POST", server.estURL + "/.well-known/est/simpleenroll",
                headers: [("Content-Type", "application/pkcs10"), ("Authorization", "Bearer devid_ct_x")],
                body: garbage)
        }
        #expect(first.status == 503, "decided before the CSR: not 400")
        #expect(first.header("Retry-After") == "7")
        #expect(first.header("DevID-Refusal") == "overloaded")
        #expect(first.body == "server busy: too many enrollments in flight\n")
        // A renewal of an LDevID issued just now is not urgent: it queues with first enrollments.
        let early = try await withClient(try server.client(certificate: [ldevid], key: key)) {
            try await $0.send(
                "POST", server.estURL + "/.well-known/est/simplereenroll",
                headers: [("Content-Type", "application/pkcs10")], body: garbage)
        }
        #expect(early.status == 503, "an early renewal has no claim on the reserve: \(early.body)")
        #expect(early.header("Retry-After") == "7")
        #expect(early.header("DevID-Refusal") == "overloaded")
        // 21 days on (past 2/3 of its 30 days, less the jitter), the same LDevID is about to expire.
        server.clock.advance(by: 21 * 86_400)
        let renewal = try await withClient(try server.client(certificate: [ldevid], key: key)) {
            try await $0.send(
                "POST", server.estURL + "/.well-known/est/simplereenroll",
                headers: [("Content-Type", "application/pkcs10")], body: garbage)
        }
        #expect(renewal.status != 503, "the renewal reserve let it through to the CSR check: \(renewal.body)")
        #expect(await server.state.enrollmentGate.inFlight == 0, "every slot given back")
        #expect(await server.state.enrollmentGate.refusals == 2)
        #expect(try await server.state.store.credentialCount() == 0)
        try await server.stop()
    }

    @Test("admin API over its bucket: 429 JSON with Retry-After; CRLs and the decision API are not throttled")
    func adminAndExemptions() async throws {
        let server = try await LiveServer(clock: ManualWallClock(Self.t0)) {
            $0.rateLimits.perSource = .init(perSecond: 0.2, burst: 2)
        }
        try await server.waitForFirstCRLs()  // before them the CRL route answers 503, which is no throttle
        let auth = [("Authorization", "Bearer \(server.adminToken)")]
        let authzToken = String(
            decoding: try Data(contentsOf: URL(fileURLWithPath: server.configuration.secretsDirectory + "/authz-token")),
            as: UTF8.self
        ).trimmingCharacters(in: .whitespacesAndNewlines)
        let (admin, crl, authz) = try await withClient(try server.client()) { client in
            var admin: [Reply] = []
            for _ in 0..<3 { admin.append(try await client.send("GET", server.opsURL + "/v1/admin/ca", headers: auth)) }
            var crl: [Int] = []
            var authz: [Int] = []
            for _ in 0..<5 {
                crl.append(try await client.send("GET", server.opsURL + "/crl/issuing.crl").status)
                authz.append(
                    try await client.send(
                        "POST", server.opsURL + "/v1/authz/mqtt",
                        headers: [("Authorization", "Bearer \(authzToken)"), ("Content-Type", "application/json")],
                        body: #"{"action":"connect","device":"x"}"#
                    ).status)
            }
            return (admin, crl, authz)
        }
        #expect(admin.map(\.status) == [200, 200, 429])
        #expect(admin[2].header("Retry-After") == "5")
        #expect(admin[2].header("DevID-Refusal") == "rate_limited")
        #expect(admin[2].body.contains("rate limited: too many requests for this source address"))
        #expect(crl.allSatisfy { $0 == 200 }, "\(crl)")
        #expect(authz.allSatisfy { $0 == 200 }, "\(authz)")
        try await server.stop()
    }

    @Test("the device check-in has a bucket per device")
    func checkInPerDevice() async throws {
        let server = try await LiveServer(clock: ManualWallClock(Self.t0)) {
            $0.rateLimits.perDevice = .init(perSecond: 1.0 / 60, burst: 1)
        }
        let hierarchy = server.state.hierarchy
        let key = try KeyMaterial.generate(.p256)
        let ldevid = try hierarchy.issuing.issueLDevID(
            device: try DeviceID("chatty-1"), tenant: try TenantID("acme"), trustDomain: hierarchy.trustDomain,
            publicKey: key.publicKey, now: server.clock.now())
        let replies = try await withClient(try server.client(certificate: [ldevid], key: key)) { client in
            [try await client.send("GET", server.estURL + "/v1/device/status"),
             try await client.send("GET", server.estURL + "/v1/device/status")]
        }
        #expect(replies[0].status == 403, "unknown to the registry, but not limited")
        #expect(replies[1].status == 429)
        #expect(replies[1].header("Retry-After") == "60")
        #expect(replies[1].header("DevID-Refusal") == "rate_limited")
        try await server.stop()
    }

    @Test("an EST label spends no tenant budget: strangers naming tenant acme cannot rate-limit acme's devices")
    func labelSpendsNoTenantBudget() async throws {
        let server = try await LiveServer(clock: ManualWallClock(Self.t0)) {
            $0.rateLimits.perTenant = .init(perSecond: 1.0 / 60, burst: 1)
        }
        try await server.state.store.createTenant(
            Tenant(id: try TenantID("acme"), displayName: "Acme", createdAt: server.clock.now()), audit: nil)
        // Anonymous requests under acme's label, well over the tenant's burst of 1.
        let anonymous = try await withClient(try server.client()) { client in
            var statuses: [Int] = []
            for _ in 0..<5 {
                statuses.append(
                    try await client.send(
                        "POST", server.estURL + "/.well-known/est/acme/simpleenroll",
                        headers: [("Content-Type", "application/pkcs10")], body: "AAAA"
                    ).status)
            }
            return statuses
        }
        #expect(!anonymous.contains(429), "\(anonymous)")
        // An acme device is not limited by what strangers sent.
        let hierarchy = server.state.hierarchy
        let key = try KeyMaterial.generate(.p256)
        let ldevid = try hierarchy.issuing.issueLDevID(
            device: try DeviceID("acme-1"), tenant: try TenantID("acme"), trustDomain: hierarchy.trustDomain,
            publicKey: key.publicKey, now: server.clock.now())
        let status = try await withClient(try server.client(certificate: [ldevid], key: key)) {
            try await $0.send("GET", server.estURL + "/v1/device/status").status
        }
        #expect(status == 403, "unknown to the registry, but not limited")
        try await server.stop()
    }

    @Test("the check-in also has a bucket per tenant: another device of the tenant is limited too")
    func checkInPerTenant() async throws {
        let server = try await LiveServer(clock: ManualWallClock(Self.t0)) {
            $0.rateLimits.perTenant = .init(perSecond: 1.0 / 60, burst: 1)
        }
        let hierarchy = server.state.hierarchy
        var statuses: [Int] = []
        for name in ["tenant-a-1", "tenant-a-2"] {
            let key = try KeyMaterial.generate(.p256)
            let ldevid = try hierarchy.issuing.issueLDevID(
                device: try DeviceID(name), tenant: try TenantID("acme"), trustDomain: hierarchy.trustDomain,
                publicKey: key.publicKey, now: server.clock.now())
            statuses.append(
                try await withClient(try server.client(certificate: [ldevid], key: key)) {
                    try await $0.send("GET", server.estURL + "/v1/device/status").status
                })
        }
        #expect(statuses == [403, 429])
        try await server.stop()
    }

    @Test("the limits are read from the configuration keys (DEVID_LIMITS_*)")
    func configurationKeys() async throws {
        let limits = try await ServerConfiguration.load(
            configFile: nil,
            environment: [
                "DEVID_LIMITS_SOURCE_PER_SECOND": "3", "DEVID_LIMITS_SOURCE_BURST": "9",
                "DEVID_LIMITS_ENROLLMENTS_IN_FLIGHT": "4", "DEVID_LIMITS_RENEWAL_RESERVE": "2",
                "DEVID_LIMITS_OVERLOAD_RETRY_AFTER_SECONDS": "11", "DEVID_LIMITS_CLAIM_TOKEN_PER_SECOND": "0",
            ]
        ).rateLimits
        #expect(limits.perSource == .init(perSecond: 3, burst: 9))
        #expect(limits.maxEnrollmentsInFlight == 4)
        #expect(limits.renewalReserve == 2)
        #expect(limits.overloadRetryAfterSeconds == 11)
        #expect(!limits.perClaimToken.isEnabled)
        #expect(limits.perDevice == RateLimits().perDevice, "unset keys keep their defaults")
    }
}
