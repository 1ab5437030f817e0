import DevIDCore
import DevIDServer
import DevIDTesting
import Foundation
import Testing

/// `devid admin-token` end to end with the built binary: create, use with `DEVID_ADMIN_TOKEN`, list, revoke.
@Suite("devid admin-token CLI", .serialized)
struct AdminTokenCLITests {
    /// `devid arguments` with `DEVID_ADMIN_TOKEN` (and `DEVID_SERVER`) set, unlike `ServeCLITests.devid`, which
    /// drops every `DEVID_*` variable; run on a thread of its own.
    static func devid(_ arguments: [String], token: String, server: String) async throws -> ExternalTool.Result {
        let executable = try ServeCLITests.executable()
        return try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(
                    with: Result {
                        try ExternalTool.run(
                            [executable] + arguments,
                            environment: ["DEVID_ADMIN_TOKEN": token, "DEVID_SERVER": server, "DEVID_DATA_DIR": "/nonexistent"])
                    })
            }
        }
    }

    @Test("create, use, list, revoke; roles and tenant limits answer with clear errors", .timeLimit(.minutes(5)))
    func endToEnd() async throws {
        let work = try TemporaryDirectory(prefix: "devid-admin-token-cli")
        defer { work.remove() }
        let dataDir = work.file("data")
        let server = try ServeProcess.start(dataDir: dataDir, workingDirectory: work.path)
        defer { server.kill() }
        let endpoints = try await server.waitUntilListening(timeout: ServeCLITests.startTimeout)
        func devid(_ arguments: [String]) async throws -> ServeCLITests.CommandResult {
            try await ServeCLITests.devid(arguments + ["--data-dir", dataDir], in: work.path)
        }
        for tenant in ["acme", "beta"] {
            try #require(try await devid(["tenant", "create", tenant]).succeeded)
        }

        // Create: the secret alone on stdout, the note on stderr.
        let created = try await devid(
            ["admin-token", "create", "--name", "ci", "--role", "operator", "--tenant", "acme", "--expires-in", "90d"])
        try #require(created.succeeded, "\(created)")
        let secret = created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(secret.hasPrefix("devid_adm_"))
        #expect(created.stdout.split(separator: "\n").count == 1)
        let id = try #require(secret.split(separator: "_").dropFirst(2).first.map(String.init))
        #expect(created.stderr.contains("admin token \(id) (ci, role operator, tenants acme), expires "), "\(created)")
        #expect(created.stderr.contains("The secret above is shown once."))

        // List: names, roles, tenants; never the secret.
        let list = try await devid(["admin-token", "list"])
        try #require(list.succeeded, "\(list)")
        #expect(list.stdout.hasPrefix("ID        NAME       ROLE      TENANTS  EXPIRES"), "\(list.stdout)")
        #expect(list.stdout.contains("\(id)  ci         operator  acme"), "\(list.stdout)")
        #expect(list.stdout.contains("bootstrap  admin     *        never"), "\(list.stdout)")
        #expect(!list.stdout.contains(secret))

        // The operator token, as another machine would use it.
        let ops = { (arguments: [String]) in try await Self.devid(arguments, token: secret, server: endpoints.opsURL) }
        let devices = try await ops(["device", "list"])
        #expect(devices.succeeded, "\(devices.stderr)")
        let claim = try await ops(["token", "create", "--tenant", "acme"])
        #expect(claim.succeeded, "\(claim.stderr)")
        let otherTenant = try await ops(["token", "create", "--tenant", "beta"])
        #expect(!otherTenant.succeeded)
        #expect(otherTenant.stderr.contains("server answered 403: admin token ci may not act on tenant beta"), "\(otherTenant.stderr)")
        let tenantCreate = try await ops(["tenant", "create", "gamma"])
        #expect(tenantCreate.stderr.contains("server answered 403: role operator may not POST /v1/admin/tenants"), "\(tenantCreate.stderr)")
        let escalate = try await ops(["admin-token", "create", "--name", "mine", "--role", "admin"])
        #expect(escalate.stderr.contains("server answered 403: role operator may not POST /v1/admin/admin-tokens"), "\(escalate.stderr)")
        let tenants = try await ops(["tenant", "list"])
        #expect(tenants.stdout.contains("acme") && !tenants.stdout.contains("beta"), "\(tenants.stdout)")

        // What it did, by actor.
        let trail = try await devid(["audit", "list", "--actor", "admin:\(id)", "--limit", "100"])
        try #require(trail.succeeded, "\(trail)")
        #expect(trail.stdout.contains("token.create"), "\(trail.stdout)")
        #expect(trail.stdout.contains("denied   admin token ci may not act on tenant beta: POST /v1/admin/tokens"), "\(trail.stdout)")
        #expect(trail.stdout.split(separator: "\n").dropFirst().allSatisfy { $0.contains("admin:\(id)") }, "\(trail.stdout)")

        // Revoke by name; the token is refused at once.
        let revoke = try await devid(["admin-token", "revoke", "ci"])
        #expect(revoke.succeeded, "\(revoke)")
        #expect(revoke.stdout == "revoked admin token \(id) (ci, role operator)\n")
        let after = try await ops(["device", "list"])
        #expect(!after.succeeded)
        #expect(after.stderr.contains("server answered 401: admin token is revoked"), "\(after.stderr)")
        #expect(try await devid(["admin-token", "list"]).stdout.contains("revoked"))

        // The last admin token stays; bad input is refused.
        let last = try await devid(["admin-token", "revoke", "bootstrap"])
        #expect(!last.succeeded)
        #expect(last.stderr.contains("is the last usable admin token; create another first"), "\(last)")
        let badRole = try await devid(["admin-token", "create", "--name", "x", "--role", "root"])
        #expect(badRole.stderr.contains("server answered 400: role must be one of: admin, operator, factory, auditor, broker"))
        let badFactory = try await devid(["admin-token", "create", "--name", "x", "--role", "factory"])
        #expect(badFactory.stderr.contains("server answered 400: a factory token must be limited to tenants"))
        let badExpiry = try await devid(["admin-token", "create", "--name", "x", "--role", "admin", "--expires-in", "2w"])
        #expect(badExpiry.stderr.contains("invalid --expires-in 2w"))
        let unknown = try await devid(["admin-token", "revoke", "nope"])
        #expect(unknown.stderr.contains("server answered 404: unknown admin token"))
        #expect(try await devid(["admin-token", "list"]).stdout.split(separator: "\n").count == 3)
        _ = try await server.interrupt(timeout: 30)
    }
}
