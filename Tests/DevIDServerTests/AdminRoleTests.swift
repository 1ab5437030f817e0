import AsyncHTTPClient
import DevIDCore
@testable import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Hummingbird
import Testing

/// Named admin tokens with roles and tenant limits, against a real server on loopback.
@Suite("Admin token roles", .serialized)
struct AdminRoleTests {
    /// A live server with tenants `acme` and `beta`, devices `acme-1`, `acme-2`, `beta-1`, `beta-2`, and one claim
    /// token per tenant.
    struct Fixture {
        let server: LiveServer
        let client: HTTPClient

        static func start() async throws -> Fixture {
            let server = try await LiveServer()
            let fixture = Fixture(server: server, client: try server.client())
            let store = server.state.store
            let now = server.clock.now()
            for tenant in ["acme", "beta"] {
                let id = TenantID(rawValue: tenant)!
                try await store.createTenant(Tenant(id: id, displayName: tenant, createdAt: now), audit: nil)
                for index in 1...2 {
                    try await store.insertDevice(
                        Device(
                            id: DeviceID(rawValue: "\(tenant)-\(index)")!, tenant: id,
                            hardwareSerial: "SN-\(tenant)-\(index)", lot: nil, state: .manufactured, createdAt: now),
                        audit: nil)
                }
                let created = try await fixture.send(
                    "POST", "/v1/admin/tokens", token: server.adminToken, body: #"{"tenant":"\#(tenant)"}"#)
                try #require(created.status == 201, "\(created.body)")
            }
            return fixture
        }

        func stop() async throws {
            try await client.shutdown()
            try await server.stop()
        }

        func send(_ method: String, _ path: String, token: String?, body: String? = nil) async throws -> Reply {
            var headers: [(String, String)] = []
            if let token { headers.append(("Authorization", "Bearer \(token)")) }
            if body != nil { headers.append(("Content-Type", "application/json")) }
            return try await client.send(method, server.opsURL + path, headers: headers, body: body)
        }

        /// Creates an admin token as the bootstrap token; returns its id and secret.
        func create(
            _ name: String, role: AdminRole, tenants: [String]? = nil, expiresIn: Int? = nil
        ) async throws -> (id: String, secret: String) {
            var body: [String: Any] = ["name": name, "role": role.rawValue]
            if let tenants { body["tenants"] = tenants }
            if let expiresIn { body["expiresInSeconds"] = expiresIn }
            let json = String(decoding: try JSONSerialization.data(withJSONObject: body), as: UTF8.self)
            let reply = try await send("POST", "/v1/admin/admin-tokens", token: server.adminToken, body: json)
            try #require(reply.status == 201, "\(reply.body)")
            let object = try #require(try JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any])
            return (try #require(object["id"] as? String), try #require(object["token"] as? String))
        }

        func deniedAuth(containing text: String) async throws -> [AuditEvent] {
            try await server.state.store.auditEvents(AuditFilter(action: "admin.auth", outcome: .denied, limit: 1000))
                .filter { $0.reason.contains(text) }
        }

        func items(_ reply: Reply) throws -> [[String: Any]] {
            let object = try #require(try JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any])
            return try #require(object["items"] as? [[String: Any]])
        }
    }

    /// One representative route of each group, with the statuses each role gets. A refused role gets 403; an
    /// allowed one gets the route's own answer (a malformed body is 400, so the role check is what differs).
    struct Case: Sendable, CustomTestStringConvertible {
        var method: String
        var path: String
        var body: String?
        /// The status for admin, operator, factory, auditor, broker.
        var statuses: [AdminRole: Int]
        var testDescription: String { "\(method) \(path)" }
    }

    static let cases: [Case] = [
        Case(method: "GET", path: "/v1/admin/ca", statuses: [.admin: 200, .operator: 200, .factory: 200, .auditor: 200, .broker: 403]),
        Case(method: "GET", path: "/v1/admin/tenants", statuses: [.admin: 200, .operator: 200, .factory: 200, .auditor: 200, .broker: 403]),
        Case(method: "POST", path: "/v1/admin/tenants", body: "{", statuses: [.admin: 400, .operator: 403, .factory: 403, .auditor: 403, .broker: 403]),
        Case(method: "PUT", path: "/v1/admin/tenants/acme/topic-policy", body: "{", statuses: [.admin: 400, .operator: 403, .factory: 403, .auditor: 403, .broker: 403]),
        Case(method: "GET", path: "/v1/admin/tenants/acme/topic-policy", statuses: [.admin: 200, .operator: 200, .factory: 403, .auditor: 200, .broker: 403]),
        Case(method: "GET", path: "/v1/admin/devices", statuses: [.admin: 200, .operator: 200, .factory: 403, .auditor: 200, .broker: 403]),
        Case(method: "GET", path: "/v1/admin/devices/acme-1", statuses: [.admin: 200, .operator: 200, .factory: 403, .auditor: 200, .broker: 403]),
        Case(method: "POST", path: "/v1/admin/devices/acme-1/suspend", body: "{}", statuses: [.admin: 200, .operator: 200, .factory: 403, .auditor: 403, .broker: 403]),
        Case(method: "POST", path: "/v1/admin/devices/import", body: "{}", statuses: [.admin: 400, .operator: 400, .factory: 400, .auditor: 403, .broker: 403]),
        Case(method: "GET", path: "/v1/admin/tokens", statuses: [.admin: 200, .operator: 200, .factory: 403, .auditor: 200, .broker: 403]),
        Case(method: "POST", path: "/v1/admin/tokens", body: "{", statuses: [.admin: 400, .operator: 400, .factory: 403, .auditor: 403, .broker: 403]),
        Case(method: "POST", path: "/v1/admin/rotate", body: #"{"tenant":"acme","dryRun":true}"#, statuses: [.admin: 200, .operator: 200, .factory: 403, .auditor: 403, .broker: 403]),
        Case(method: "GET", path: "/v1/admin/rotate/status?tenant=acme", statuses: [.admin: 200, .operator: 200, .factory: 403, .auditor: 200, .broker: 403]),
        Case(method: "POST", path: "/v1/admin/revoke", body: #"{"device":"acme-2","dryRun":true}"#, statuses: [.admin: 200, .operator: 200, .factory: 403, .auditor: 403, .broker: 403]),
        Case(method: "GET", path: "/v1/admin/profile", statuses: [.admin: 200, .operator: 200, .factory: 403, .auditor: 200, .broker: 403]),
        Case(method: "POST", path: "/v1/admin/exports/mosquitto", body: "{", statuses: [.admin: 400, .operator: 403, .factory: 403, .auditor: 403, .broker: 403]),
        Case(method: "GET", path: "/v1/admin/audit", statuses: [.admin: 200, .operator: 200, .factory: 403, .auditor: 200, .broker: 403]),
        Case(method: "GET", path: "/v1/admin/audit/verify", statuses: [.admin: 200, .operator: 200, .factory: 403, .auditor: 200, .broker: 403]),
        Case(method: "GET", path: "/v1/admin/admin-tokens", statuses: [.admin: 200, .operator: 403, .factory: 403, .auditor: 403, .broker: 403]),
        Case(method: "POST", path: "/v1/admin/admin-tokens", body: "{", statuses: [.admin: 400, .operator: 403, .factory: 403, .auditor: 403, .broker: 403]),
        Case(method: "POST", path: "/v1/authz/mqtt", body: #"{"device":"acme-1","action":"connect"}"#, statuses: [.admin: 200, .operator: 403, .factory: 403, .auditor: 403, .broker: 200]),
        Case(method: "GET", path: "/v1/authz/stats", statuses: [.admin: 200, .operator: 403, .factory: 403, .auditor: 200, .broker: 200]),
    ]

    @Test("each role against a representative route of each group: allowed, or 403 and audited")
    func roleMatrix() async throws {
        let f = try await Fixture.start()
        var secrets: [AdminRole: String] = [:]
        for role in AdminRole.allCases {
            // A factory token must name its tenants; the others cover every tenant.
            secrets[role] = try await f.create("\(role)-token", role: role, tenants: role == .factory ? ["acme"] : nil).secret
        }
        for test in Self.cases {
            for role in AdminRole.allCases {
                let reply = try await f.send(test.method, test.path, token: secrets[role], body: test.body)
                #expect(reply.status == test.statuses[role], "\(role) \(test.method) \(test.path): \(reply.body)")
                if reply.status == 403 {
                    #expect(reply.body.contains("role \(role) may not \(test.method)"), "\(reply.body)")
                }
            }
        }
        // A refusal is audited with the token as actor; a refused request changed nothing.
        let denied = try await f.deniedAuth(containing: "role auditor may not POST /v1/admin/devices/acme-1/suspend")
        #expect(denied.count == 1)
        #expect(denied.first?.actor.hasPrefix("admin:") == true)
        #expect(try await f.server.state.store.tenants().map(\.id.rawValue) == ["acme", "beta"])
        try await f.stop()
    }

    @Test("a token limited to tenant acme: 403 on beta's objects, lists show only acme, nothing of beta changes")
    func tenantLimit() async throws {
        let f = try await Fixture.start()
        let ops = try await f.create("ops-acme", role: .operator, tenants: ["acme"]).secret
        let store = f.server.state.store

        // Objects of beta: refused with a one-line reason, audited with the tenant.
        let refusals: [(String, String, String?)] = [
            ("GET", "/v1/admin/devices/beta-1", nil),
            ("POST", "/v1/admin/devices/beta-1/suspend", "{}"),
            ("POST", "/v1/admin/devices/beta-1/reprovision", "{}"),
            ("GET", "/v1/admin/devices?tenant=beta", nil),
            ("POST", "/v1/admin/tokens", #"{"tenant":"beta"}"#),
            ("GET", "/v1/admin/tokens?tenant=beta", nil),
            ("POST", "/v1/admin/revoke", #"{"device":"beta-1"}"#),
            ("POST", "/v1/admin/revoke", #"{"tenant":"beta","dryRun":true}"#),
            ("POST", "/v1/admin/rotate", #"{"tenant":"beta"}"#),
            ("GET", "/v1/admin/rotate/status?device=beta-2", nil),
            ("GET", "/v1/admin/tenants/beta/topic-policy", nil),
            ("POST", "/v1/admin/devices/import", #"{"tenant":"beta","lot":"L9","manufacturerCASHA256":"00","createdAt":"2026-01-01T00:00:00Z","devices":[]}"#),
        ]
        for (method, path, body) in refusals {
            let reply = try await f.send(method, path, token: ops, body: body)
            #expect(reply.status == 403, "\(method) \(path): \(reply.body)")
            #expect(reply.body.contains("admin token ops-acme may not act on tenant beta"), "\(method) \(path): \(reply.body)")
        }
        let audited = try await f.deniedAuth(containing: "admin token ops-acme may not act on tenant beta")
        #expect(audited.count == refusals.count)
        #expect(audited.allSatisfy { $0.tenant?.rawValue == "beta" })
        // Scopes of every tenant are refused too.
        for (method, path, body) in [
            ("POST", "/v1/admin/rotate", #"{"expiringBefore":"2100-01-01T00:00:00Z","dryRun":true}"#),
            ("GET", "/v1/admin/rotate/status", nil),
        ] as [(String, String, String?)] {
            let reply = try await f.send(method, path, token: ops, body: body)
            #expect(reply.status == 403, "\(method) \(path): \(reply.body)")
            #expect(reply.body.contains("is limited to tenants"), "\(reply.body)")
        }
        // Nothing of beta changed.
        for id in ["beta-1", "beta-2"] {
            #expect(try await store.device(DeviceID(rawValue: id)!)?.state == .manufactured)
        }
        #expect(try await store.claimTokens(tenant: TenantID(rawValue: "beta")!).count == 1)

        // Its own tenant works, and lists show only it.
        #expect(try await f.send("GET", "/v1/admin/devices/acme-1", token: ops).status == 200)
        #expect(try await f.send("POST", "/v1/admin/devices/acme-1/suspend", token: ops, body: "{}").status == 200)
        let devices = try f.items(try await f.send("GET", "/v1/admin/devices", token: ops))
        #expect(devices.compactMap { $0["id"] as? String } == ["acme-1", "acme-2"])
        let tenants = try f.items(try await f.send("GET", "/v1/admin/tenants", token: ops))
        #expect(tenants.compactMap { $0["id"] as? String } == ["acme"])
        let tokens = try f.items(try await f.send("GET", "/v1/admin/tokens", token: ops))
        #expect(tokens.compactMap { $0["tenant"] as? String } == ["acme"])
        let audit = try f.items(try await f.send("GET", "/v1/admin/audit?limit=1000", token: ops))
        #expect(!audit.isEmpty)
        #expect(audit.allSatisfy { $0["tenant"] as? String == "acme" }, "\(audit)")
        // The unlimited bootstrap token sees both.
        let all = try f.items(try await f.send("GET", "/v1/admin/devices", token: f.server.adminToken))
        #expect(all.count == 4)

        // A tenant-limited token cannot manage admin tokens or ask for policy decisions.
        let limitedAdmin = try await f.create("admin-acme", role: .admin, tenants: ["acme"]).secret
        let escalate = try await f.send(
            "POST", "/v1/admin/admin-tokens", token: limitedAdmin, body: #"{"name":"x","role":"admin"}"#)
        #expect(escalate.status == 403, "\(escalate.body)")
        // Nor change what every tenant depends on: a CA ceremony (revoking an issuing CA revokes every tenant's
        // LDevIDs) or the live settings. Each was allowed to a token limited to acme before.
        let settings = try await f.send("GET", "/v1/admin/settings", token: f.server.adminToken).body
        let issuing = try await f.send("GET", "/v1/admin/ca/issuing", token: f.server.adminToken).body
        for key in AdminAccessTable.everyTenant.keys.sorted() {
            let parts = key.split(separator: " ", maxSplits: 1).map(String.init)
            let path = parts[1].replacingOccurrences(of: "{id}", with: "1")
            let reply = try await f.send(parts[0], path, token: limitedAdmin, body: #"{"force":true}"#)
            #expect(reply.status == 403, "\(key): \(reply.status) \(reply.body)")
            #expect(reply.body.contains("admin token admin-acme is limited to tenants and may not ask for"), "\(reply.body)")
            #expect(try await f.deniedAuth(containing: "may not ask for").contains { $0.reason.hasSuffix(path) })
        }
        #expect(try await f.send("GET", "/v1/admin/settings", token: f.server.adminToken).body == settings)
        #expect(try await f.send("GET", "/v1/admin/ca/issuing", token: f.server.adminToken).body == issuing)
        let limitedBroker = try await f.create("broker-acme", role: .broker, tenants: ["acme"]).secret
        let decision = try await f.send(
            "POST", "/v1/authz/mqtt", token: limitedBroker, body: #"{"device":"beta-1","action":"connect"}"#)
        #expect(decision.status == 403, "\(decision.body)")
        try await f.stop()
    }

    @Test("claim tokens are listed a page at a time, newest first; a bad limit or cursor is 400")
    func tokenPages() async throws {
        let f = try await Fixture.start()
        try await f.server.state.store.createTenant(
            Tenant(id: TenantID(rawValue: "gamma")!, displayName: "gamma", createdAt: f.server.clock.now()), audit: nil)
        // Five more tokens a second apart, of acme but one of beta and one of gamma: seven in all (acme 4, beta 2,
        // gamma 1).
        for index in 1...5 {
            f.server.clock.advance(by: 1)
            let tenant = index == 3 ? "beta" : index == 4 ? "gamma" : "acme"
            let created = try await f.send(
                "POST", "/v1/admin/tokens", token: f.server.adminToken, body: #"{"tenant":"\#(tenant)"}"#)
            #expect(created.status == 201, "\(created.body)")
        }
        let everything = try f.items(try await f.send("GET", "/v1/admin/tokens", token: f.server.adminToken))
        let ids = everything.compactMap { $0["id"] as? String }
        #expect(ids.count == 7)
        // Newest first: creation times never rise (the fixture's two first tokens share theirs).
        let created = everything.compactMap { $0["createdAt"] as? String }
        #expect(created.count == 7 && created == created.sorted(by: >), "\(created)")
        #expect(Set(created).count == 6)

        // Page through three at a time: the pages join up to the whole list, and only full pages name a next one.
        func pages(_ query: String, token: String) async throws -> [[String]] {
            var pages: [[String]] = []
            var after: String?
            repeat {
                let reply = try await f.send(
                    "GET", "/v1/admin/tokens?limit=3" + query + (after.map { "&after=\($0)" } ?? ""), token: token)
                #expect(reply.status == 200, "\(reply.body)")
                let object = try #require(try JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any])
                let page = try #require(object["items"] as? [[String: Any]]).compactMap { $0["id"] as? String }
                after = object["next"] as? String
                #expect(after == (page.count == 3 ? page.last : nil))
                pages.append(page)
            } while after != nil && pages.count < 10
            return pages
        }
        let all = try await pages("", token: f.server.adminToken)
        #expect(all.map(\.count) == [3, 3, 1])
        #expect(all.flatMap { $0 } == ids)
        let acmeIDs = everything.filter { $0["tenant"] as? String == "acme" }.compactMap { $0["id"] as? String }
        #expect(try await pages("&tenant=acme", token: f.server.adminToken).flatMap { $0 } == acmeIDs)
        // A token limited to acme pages through acme alone, and cannot use beta's token as a cursor; one limited to
        // acme and gamma pages through both, merged in the same order.
        let ops = try await f.create("ops-acme", role: .operator, tenants: ["acme"]).secret
        #expect(try await pages("", token: ops).flatMap { $0 } == acmeIDs)
        let twoTenants = try await f.create("ops-acme-gamma", role: .operator, tenants: ["acme", "gamma"]).secret
        let acmeGamma = everything.filter { ["acme", "gamma"].contains($0["tenant"] as? String) }
            .compactMap { $0["id"] as? String }
        #expect(acmeGamma.count == 5)
        let merged = try await pages("", token: twoTenants)
        #expect(merged.map(\.count) == [3, 2], "\(merged)")
        #expect(merged.flatMap { $0 } == acmeGamma)
        let betaID = try #require(everything.first { $0["tenant"] as? String == "beta" }?["id"] as? String)

        for (query, token, reason) in [
            ("limit=0", f.server.adminToken, "limit must be 1-10000"),
            ("limit=10001", f.server.adminToken, "limit must be 1-10000"),
            ("limit=many", f.server.adminToken, "limit must be 1-10000"),
            ("after=ct_nosuchtoken", f.server.adminToken, "after must name a claim token"),
            ("after=\(betaID)", ops, "after must name a claim token"),
        ] {
            let reply = try await f.send("GET", "/v1/admin/tokens?" + query, token: token)
            #expect(reply.status == 400, "\(query): \(reply.body)")
            #expect(reply.body == #"{"error":{"message":"\#(reason)"}}"#, "\(query)")
        }
        try await f.stop()
    }

    @Test("an expired token is 401, audited with its id")
    func expired() async throws {
        let f = try await Fixture.start()
        let (id, secret) = try await f.create("short", role: .auditor, expiresIn: 60)
        #expect(try await f.send("GET", "/v1/admin/devices", token: secret).status == 200)
        f.server.clock.advance(by: 61)
        let reply = try await f.send("GET", "/v1/admin/devices", token: secret)
        #expect(reply.status == 401)
        #expect(reply.body.contains("admin token has expired"))
        #expect(reply.header("WWW-Authenticate")?.contains("invalid_token") == true)
        let denied = try await f.deniedAuth(containing: "expired admin token short: GET /v1/admin/devices")
        #expect(denied.map(\.actor) == ["admin:\(id)"])
        try await f.stop()
    }

    @Test("a revoked token is 401 at once through the API")
    func revoked() async throws {
        let f = try await Fixture.start()
        let viaAPI = try await f.create("ci", role: .operator)
        #expect(try await f.send("GET", "/v1/admin/devices", token: viaAPI.secret).status == 200)
        let revoke = try await f.send("POST", "/v1/admin/admin-tokens/ci/revoke", token: f.server.adminToken, body: "{}")
        #expect(revoke.status == 200, "\(revoke.body)")
        #expect(revoke.body.contains(#""status":"revoked""#))
        let after = try await f.send("GET", "/v1/admin/devices", token: viaAPI.secret)
        #expect(after.status == 401)
        #expect(after.body.contains("admin token is revoked"))
        #expect(try await f.deniedAuth(containing: "revoked admin token ci:").count == 1)
        try await f.stop()
    }

    @Test("a revoked or expired admin token on the policy decisions is 401, audited under its own id")
    func revokedAndExpiredOnDecisions() async throws {
        let f = try await Fixture.start()
        let body = #"{"device":"acme-1","action":"connect"}"#
        let revoked = try await f.create("broker-old", role: .broker)
        #expect(try await f.send("POST", "/v1/authz/mqtt", token: revoked.secret, body: body).status == 200)
        let revoke = try await f.send(
            "POST", "/v1/admin/admin-tokens/broker-old/revoke", token: f.server.adminToken, body: "{}")
        #expect(revoke.status == 200, "\(revoke.body)")
        let expiring = try await f.create("broker-short", role: .broker, expiresIn: 60)
        f.server.clock.advance(by: 61)
        for (token, message) in [(revoked, "admin token is revoked"), (expiring, "admin token has expired")] {
            let reply = try await f.send("POST", "/v1/authz/mqtt", token: token.secret, body: body)
            #expect(reply.status == 401, "\(reply.body)")
            #expect(reply.body.contains(message), "\(reply.body)")
        }
        // Before, both went into the anonymous aggregate ("invalid authz token"): a named holder's denial is its own.
        let denied = try await f.server.state.store.auditEvents(
            AuditFilter(action: "authz.auth", outcome: .denied, limit: 100))
        #expect(denied.contains { $0.actor == "admin:\(revoked.id)" && $0.reason == "revoked admin token broker-old: POST /v1/authz/mqtt" })
        #expect(denied.contains { $0.actor == "admin:\(expiring.id)" && $0.reason == "expired admin token broker-short: POST /v1/authz/mqtt" })
        try await f.stop()
    }

    @Test("revocations of a tenant's devices and claim tokens name the tenant: its limited auditor sees them")
    func revocationEventsNameTheTenant() async throws {
        let f = try await Fixture.start()
        let auditor = try await f.create("auditor-acme", role: .auditor, tenants: ["acme"]).secret
        let revoke = try await f.send(
            "POST", "/v1/admin/revoke", token: f.server.adminToken, body: #"{"device":"acme-1","reason":"keyCompromise"}"#)
        #expect(revoke.status == 200, "\(revoke.body)")
        let token = try #require(try f.items(try await f.send("GET", "/v1/admin/tokens?tenant=acme", token: f.server.adminToken)).first?["id"] as? String)
        let tokenRevoke = try await f.send("POST", "/v1/admin/tokens/\(token)/revoke", token: f.server.adminToken, body: "{}")
        #expect(tokenRevoke.status == 200, "\(tokenRevoke.body)")
        let seen = try f.items(try await f.send("GET", "/v1/admin/audit?limit=1000", token: auditor))
        let actions = Set(seen.compactMap { $0["action"] as? String })
        #expect(actions.contains("revoke"), "\(actions)")
        #expect(actions.contains("token.revoke"), "\(actions)")
        // beta's auditor does not see acme's.
        let betaAuditor = try await f.create("auditor-beta", role: .auditor, tenants: ["beta"]).secret
        let beta = try f.items(try await f.send("GET", "/v1/admin/audit?limit=1000", token: betaAuditor))
        #expect(!beta.contains { ($0["action"] as? String) == "revoke" })
        try await f.stop()
    }

    /// Its own test, in the suite's second phase (scripts/test, `latency`): beside every other suite on two cores a
    /// one-second refresh measures the load.
    @Test("a token revoked elsewhere (in the registry, by another process) is 401 within a second")
    func revokedElsewhereWithinASecond() async throws {
        let f = try await Fixture.start()
        // Revoked in the registry by someone else (another process on the same database): counts within a second.
        let elsewhere = try await f.create("ci-2", role: .operator)
        #expect(try await f.send("GET", "/v1/admin/devices", token: elsewhere.secret).status == 200)
        _ = try await f.server.state.store.revokeAdminToken(id: elsewhere.id, now: f.server.clock.now(), audit: nil)
        let clock = ContinuousClock()
        let start = clock.now
        var status = 0
        while clock.now - start < .seconds(3) {
            status = try await f.send("GET", "/v1/admin/devices", token: elsewhere.secret).status
            if status == 401 { break }
            try await Task.sleep(for: .milliseconds(50))
        }
        #expect(status == 401)
        #expect(clock.now - start < .milliseconds(1_500), "took \(clock.now - start)")
        try await f.stop()
    }

    @Test("the last admin token cannot be revoked; with a second one it can")
    func lastAdmin() async throws {
        let f = try await Fixture.start()
        let refused = try await f.send("POST", "/v1/admin/admin-tokens/bootstrap/revoke", token: f.server.adminToken, body: "{}")
        #expect(refused.status == 409)
        #expect(refused.body.contains("is the last usable admin token; create another first"), "\(refused.body)")
        #expect(try await f.send("GET", "/v1/admin/ca", token: f.server.adminToken).status == 200)
        let deniedRevoke = try await f.server.state.store.auditEvents(
            AuditFilter(action: "admin.token.revoke", outcome: .denied))
        #expect(deniedRevoke.count == 1)

        let second = try await f.create("admin-2", role: .admin)
        let revoked = try await f.send("POST", "/v1/admin/admin-tokens/bootstrap/revoke", token: second.secret, body: "{}")
        #expect(revoked.status == 200, "\(revoked.body)")
        #expect(try await f.send("GET", "/v1/admin/ca", token: f.server.adminToken).status == 401)
        // admin-2 is now the last one: it cannot revoke itself.
        let itself = try await f.send("POST", "/v1/admin/admin-tokens/\(second.id)/revoke", token: second.secret, body: "{}")
        #expect(itself.status == 409)
        try await f.stop()
    }

    @Test("bad input when creating a token: a clear 4xx and nothing stored")
    func badInput() async throws {
        let f = try await Fixture.start()
        _ = try await f.create("taken", role: .auditor)
        let bad: [(String, Int, String)] = [
            (#"{"name":"","role":"admin"}"#, 400, "name must be 1-64 characters"),
            (#"{"name":"has space","role":"admin"}"#, 400, "name must be 1-64 characters"),
            (#"{"name":"x","role":"root"}"#, 400, "role must be one of: admin, operator, factory, auditor, broker"),
            (#"{"name":"x","role":"operator","tenants":[]}"#, 400, "tenants must not be empty"),
            (#"{"name":"x","role":"operator","tenants":["no/such"]}"#, 400, "invalid tenant"),
            (#"{"name":"x","role":"operator","tenants":["ghost"]}"#, 404, "unknown tenant ghost"),
            (#"{"name":"x","role":"factory"}"#, 400, "a factory token must be limited to tenants"),
            (#"{"name":"x","role":"admin","expiresInSeconds":0}"#, 400, "expiresInSeconds must be 1-"),
            (#"{"name":"taken","role":"admin"}"#, 409, "an admin token named taken exists"),
            (#"{"role":"admin"}"#, 400, "name"),
        ]
        for (body, status, message) in bad {
            let reply = try await f.send("POST", "/v1/admin/admin-tokens", token: f.server.adminToken, body: body)
            #expect(reply.status == status, "\(body): \(reply.body)")
            #expect(reply.body.contains(message), "\(body): \(reply.body)")
        }
        #expect(try await f.server.state.store.adminTokens().map(\.name).sorted() == ["bootstrap", "taken"])
        let unknown = try await f.send("POST", "/v1/admin/admin-tokens/ghost/revoke", token: f.server.adminToken, body: "{}")
        #expect(unknown.status == 404)
        try await f.stop()
    }

    @Test("list shows names, roles, tenants and last use, never a secret or its hash")
    func list() async throws {
        let f = try await Fixture.start()
        let (_, secret) = try await f.create("ci", role: .operator, tenants: ["beta", "acme"], expiresIn: 3600)
        #expect(try await f.send("GET", "/v1/admin/devices", token: secret).status == 200)
        let reply = try await f.send("GET", "/v1/admin/admin-tokens", token: f.server.adminToken)
        let items = try f.items(reply)
        let ci = try #require(items.first { $0["name"] as? String == "ci" })
        #expect(ci["role"] as? String == "operator")
        #expect(ci["tenants"] as? [String] == ["acme", "beta"])
        #expect(ci["status"] as? String == "active")
        #expect(ci["lastUsedAt"] != nil, "the list writes pending last-used times first")
        #expect(ci["expiresAt"] != nil)
        let boot = try #require(items.first { $0["name"] as? String == "bootstrap" })
        #expect(boot["role"] as? String == "admin")
        #expect(boot["tenants"] == nil)
        #expect(!reply.body.contains(secret))
        // By name, whatever the random ids: the same list reads the same.
        for name in ["zz-last", "aa-first", "mm-middle"] { _ = try await f.create(name, role: .auditor) }
        let names = try f.items(try await f.send("GET", "/v1/admin/admin-tokens", token: f.server.adminToken))
            .compactMap { $0["name"] as? String }
        #expect(names == ["aa-first", "bootstrap", "ci", "mm-middle", "zz-last"], "\(names)")
        #expect(!reply.body.contains(AdminTokens.hash(secret)))
        #expect(!reply.body.contains("secretHash"))
        try await f.stop()
    }

    @Test("a RabbitMQ path's token is never in a refusal or the audit trail, however the path spells its slashes")
    func rabbitMQPathTokenRedacted() async throws {
        let f = try await Fixture.start()
        // An operator token in the path: it authenticates, its role may not ask for decisions (403). Before the
        // redaction read the path as the router does, an empty segment moved the token past it, into the 403's
        // reason and the audit event, where an auditor could read a live admin token.
        let secret = try await f.create("ops-1", role: .operator).secret
        for path in [
            "/v1/authz/rabbitmq/\(secret)/user", "//v1/authz/rabbitmq/\(secret)/user",
            "/v1/authz/rabbitmq//\(secret)/user", "/v1//authz/rabbitmq/\(secret)//user",
        ] {
            let reply = try await f.send("GET", path + "?username=x", token: nil)
            #expect(reply.status == 403, "\(path): \(reply.status) \(reply.body)")
            #expect(!reply.body.contains(secret), "\(path): \(reply.body)")
            #expect(reply.body.contains("/v1/authz/rabbitmq/<token>/user"), "\(path): \(reply.body)")
        }
        let audit = try await f.server.state.store.auditEvents(AuditFilter(limit: 1000))
        #expect(audit.contains { $0.reason.contains("rabbitmq/<token>/user") })
        #expect(!audit.contains { $0.reason.contains(secret) })
        #expect(AuthzAuthMiddleware.redactedPath("//v1/authz/rabbitmq/s3cret/user/") == "/v1/authz/rabbitmq/<token>/user/")
        #expect(AuthzAuthMiddleware.redactedPath("/v1/admin/devices") == "/v1/admin/devices")
        #expect(AuthzAuthMiddleware.redactedPath("/v1/authz/rabbitmq/s3cret") == "/v1/authz/rabbitmq/<token>")
        try await f.stop()
    }

    @Test("the path in an audit reason is bounded")
    func boundedReason() async throws {
        let f = try await Fixture.start()
        let long = String(repeating: "a", count: 5_000)
        let reply = try await f.send("GET", "/v1/admin/devices/\(long)", token: nil)
        #expect(reply.status == 401)
        let denial = try #require(try await f.deniedAuth(containing: "missing admin token: GET /v1/admin/devices/").first)
        #expect(denial.reason.count <= "missing admin token: GET ".count + AdminAuthMiddleware.maximumPathInReason + 3)
        #expect(denial.reason.hasSuffix("..."))
        try await f.stop()
    }

    @Test("every /v1/admin and /v1/authz route has an explicit entry in the role table")
    func tableIsComplete() async throws {
        let server = try await LiveServer()
        let router = Router(context: OpsRequestContext.self)
        Routes.ops(router, state: server.state)
        let guarded = router.routes.filter {
            $0.path.description.hasPrefix("/v1/admin") || $0.path.description.hasPrefix("/v1/authz")
        }
        #expect(guarded.count > 30)
        for route in guarded {
            let key = AdminAccessTable.key(method: route.method, endpoint: route.path.description)
            #expect(AdminAccessTable.rules[key] != nil, "no role entry for \(key)")
        }
        // Every route kept from tenant-limited tokens is a registered one (a typo would leave it open).
        let registered = Set(guarded.map { AdminAccessTable.key(method: $0.method, endpoint: $0.path.description) })
        for key in AdminAccessTable.everyTenant.keys {
            #expect(registered.contains(key), "\(key) is not a registered route")
        }
        // A route that is not listed is admin only.
        #expect(AdminAccessTable.roles(method: .get, endpoint: "/v1/admin/not-yet-written") == [.admin])
        #expect(AdminAccessTable.roles(method: .get, endpoint: nil) == [.admin])
        try await server.stop()
    }
}
