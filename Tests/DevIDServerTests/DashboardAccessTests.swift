import AsyncHTTPClient
import DevIDCore
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import NIOCore
import Testing

/// Who gets into `/dashboard`, over plain HTTP (the browser test covers the drawing): the cookie's attributes, tenant
/// limits, roles, the Origin check, logout, revocation and the session's end after 8 hours of the injected clock.
@Suite("Dashboard access")
struct DashboardAccessTests {
    /// A client that does not follow redirects, so the `303` and its `Set-Cookie` are seen.
    static func client() -> HTTPClient {
        var configuration = HTTPClient.Configuration()
        configuration.redirectConfiguration = .disallow
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(30))
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }

    static func createToken(
        _ server: LiveServer, client: HTTPClient, name: String, role: String, tenants: [String]? = nil
    ) async throws -> (id: String, token: String) {
        var body: [String: Any] = ["name": name, "role": role]
        if let tenants { body["tenants"] = tenants }
        let reply = try await client.send(
            "POST", server.opsURL + "/v1/admin/admin-tokens",
            headers: [("Authorization", "Bearer \(server.adminToken)"), ("Content-Type", "application/json")],
            body: String(decoding: try JSONSerialization.data(withJSONObject: body), as: UTF8.self))
        #expect(reply.status == 201, "\(reply.body)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any])
        return (try #require(json["id"] as? String), try #require(json["token"] as? String))
    }

    static func login(_ server: LiveServer, client: HTTPClient, token: String, origin: String? = nil) async throws
        -> Reply
    {
        var headers = [("Content-Type", "application/x-www-form-urlencoded")]
        if let origin { headers.append(("Origin", origin)) }
        let encoded = token.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? ""
        return try await client.send(
            "POST", server.opsURL + "/dashboard/login", headers: headers, body: "token=\(encoded)")
    }

    /// `devid_session=<id>` from a login's `Set-Cookie`.
    static func cookie(_ reply: Reply) throws -> String {
        let header = try #require(reply.header("Set-Cookie"))
        return String(try #require(header.split(separator: ";").first))
    }

    @Test("a tenant-limited auditor sees only its tenant; other roles, foreign origins and revoked tokens are refused")
    func access() async throws {
        let server = try await LiveServer()
        for id in ["acme", "globex"] {
            try await server.state.store.createTenant(
                Tenant(id: TenantID(rawValue: id)!, displayName: id, createdAt: server.clock.now()), audit: nil)
        }
        try await withClient(Self.client()) { client in
            let auditor = try await Self.createToken(
                server, client: client, name: "globex-auditor", role: "auditor", tenants: ["globex"])
            let factory = try await Self.createToken(
                server, client: client, name: "line-1", role: "factory", tenants: ["acme"])

            // A form from another site is refused before the token is looked at.
            let foreign = try await Self.login(
                server, client: client, token: auditor.token, origin: "http://evil.example")
            #expect(foreign.status == 403)
            #expect(foreign.header("Set-Cookie") == nil)

            let login = try await Self.login(
                server, client: client, token: auditor.token, origin: server.opsURL)
            #expect(login.status == 303)
            #expect(login.header("Location") == "/dashboard")
            let setCookie = try #require(login.header("Set-Cookie"))
            #expect(setCookie.hasPrefix("devid_session="))
            for attribute in ["HttpOnly", "SameSite=Strict", "Path=/dashboard", "Max-Age=28800"] {
                #expect(setCookie.contains("; \(attribute)"), "\(setCookie)")
            }
            #expect(!setCookie.contains(auditor.token))
            let cookie = try Self.cookie(login)

            let page = try await client.send("GET", server.opsURL + "/dashboard", headers: [("Cookie", cookie)])
            #expect(page.status == 200)
            #expect(page.header("Content-Security-Policy")?.contains("default-src 'none'") == true)
            #expect(page.header("Cache-Control") == "no-store")
            #expect(page.header("X-Content-Type-Options") == "nosniff")
            #expect(page.body.contains(#"href="/dashboard?tenant=globex""#))
            #expect(
                !page.body.contains(#"href="/dashboard?tenant=acme""#), "a limited token does not see other tenants")
            #expect(!page.body.contains(auditor.token))
            let other = try await client.send(
                "GET", server.opsURL + "/dashboard?tenant=acme", headers: [("Cookie", cookie)])
            #expect(other.status == 403)

            // A role that may not read the fleet gets the login page with its reason, and no session.
            let refused = try await Self.login(server, client: client, token: factory.token)
            #expect(refused.status == 403)
            #expect(refused.body.contains("A factory token may not open the dashboard."))
            #expect(refused.header("Set-Cookie") == nil)

            // Revoking the token ends its sessions at once.
            let revoke = try await client.send(
                "POST", server.opsURL + "/v1/admin/admin-tokens/\(auditor.id)/revoke",
                headers: [("Authorization", "Bearer \(server.adminToken)")])
            #expect(revoke.status == 200, "\(revoke.body)")
            let after = try await client.send("GET", server.opsURL + "/dashboard", headers: [("Cookie", cookie)])
            #expect(after.status == 401)
            #expect(after.body.contains(#"action="/dashboard/login""#))
            let revoked = try await Self.login(server, client: client, token: auditor.token)
            #expect(revoked.status == 401)
            #expect(revoked.body.contains("That token is revoked."))
        }
        let audit = try await server.state.store.auditEvents(AuditFilter(action: "admin.auth", limit: 50))
        #expect(audit.contains { $0.outcome == .denied && $0.reason == "role factory may not POST /dashboard/login" })
        #expect(audit.contains { $0.outcome == .denied && $0.reason.hasPrefix("revoked admin token globex-auditor") })
        try await server.stop()
    }

    @Test("logout ends the session on the server; a session ends after 8 hours of the injected clock")
    func sessionEnds() async throws {
        let server = try await LiveServer()
        try await withClient(Self.client()) { client in
            let first = try Self.cookie(try await Self.login(server, client: client, token: server.adminToken))
            let second = try Self.cookie(try await Self.login(server, client: client, token: server.adminToken))
            #expect(first != second)

            let logout = try await client.send(
                "POST", server.opsURL + "/dashboard/logout", headers: [("Cookie", first)])
            #expect(logout.status == 303)
            #expect(logout.header("Set-Cookie")?.contains("Max-Age=0") == true)
            // The old cookie, kept by a copy of the browser, no longer opens the page.
            #expect(
                try await client.send("GET", server.opsURL + "/dashboard", headers: [("Cookie", first)]).status == 401)
            #expect(
                try await client.send("GET", server.opsURL + "/dashboard", headers: [("Cookie", second)]).status == 200)

            server.clock.advance(by: 8 * 3_600)
            #expect(
                try await client.send("GET", server.opsURL + "/dashboard", headers: [("Cookie", second)]).status == 401)

            // A token in the URL is never read.
            let query = try await client.send("GET", server.opsURL + "/dashboard?token=\(server.adminToken)")
            #expect(query.status == 401)
            #expect(query.body.contains(#"action="/dashboard/login""#))
        }
        try await server.stop()
    }
}
