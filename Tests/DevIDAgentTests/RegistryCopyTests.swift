import DevIDServer
import DevIDTesting
import Foundation
import Testing

/// `devid registry copy`: an installation moved from its SQLite registry to PostgreSQL serves the same devices and
/// verifies the same audit chain; a copy into a registry that holds anything is refused and changes nothing.
@Suite("devid registry copy", .serialized)
struct RegistryCopyTests {
    @Test("SQLite to PostgreSQL: the same devices, tokens and audit chain; a second copy is refused", .timeLimit(.minutes(4)))
    func copyToPostgres() async throws {
        let sandbox = try PostgresSandbox()
        let passwordFile = try #require(ProcessInfo.processInfo.environment[PostgresSandbox.passwordFileVariable])
        let work = try TemporaryDirectory(prefix: "devid-registry-copy")
        defer { work.remove() }
        let dataDir = work.file("data")

        // An installation on SQLite: a tenant, a lot of two devices, one enrolled, a claim token.
        let sqlite = try ServeProcess.start(dataDir: dataDir, workingDirectory: work.path)
        defer { sqlite.kill() }
        let endpoints = try await sqlite.waitUntilListening(timeout: ServeCLITests.startTimeout)
        func devid(_ arguments: [String], _ environment: [String: String] = [:]) async throws -> ServeCLITests.CommandResult {
            try await ServeCLITests.devid(arguments + ["--data-dir", dataDir], in: work.path, environment: environment)
        }
        try #require(try await devid(["tenant", "create", "acme"]).succeeded)
        let lot = work.file("lot")
        try #require(
            try await devid(["factory", "mint", "--lot", "L1", "--tenant", "acme", "--count", "2", "--out", lot]).succeeded)
        try #require(try await devid(["device", "import", "\(lot)/manifest.json"]).succeeded)
        let enroll = try await ServeCLITests.devid(
            [
                "agent", "enroll", "--server", endpoints.estURL, "--trust-bundle", "\(dataDir)/ca/root.crt",
                "--state-dir", work.file("dev1"), "--idevid-cert", "\(lot)/L1-000001/chain.pem",
                "--idevid-key", "\(lot)/L1-000001/idevid.key",
            ], in: work.path)
        try #require(enroll.succeeded, "\(enroll)")
        try #require(try await devid(["token", "create", "--tenant", "acme", "--device", "sensor-9"]).succeeded)
        let devicesBefore = try await devid(["device", "list", "--json"])
        let tokensBefore = try await devid(["token", "list", "--json"])
        let stopped = try await sqlite.interrupt(timeout: 30)
        #expect(stopped.exitedNormally && stopped.status == 0)

        try await sandbox.withDatabase { database in
            let copy = try await devid(["registry", "copy", "--to", database.url, "--to-password-file", passwordFile])
            try #require(copy.succeeded, "\(copy)")
            #expect(copy.stdout.hasPrefix("copied \(dataDir)/registry.sqlite to \(database.url)\n"), "\(copy.stdout)")
            #expect(copy.stdout.contains("  devices                2 rows, identical\n"), "\(copy.stdout)")
            #expect(copy.stdout.contains("  credentials            1 rows, identical\n"), "\(copy.stdout)")
            // "audit chain: N entries verified, last hash H"
            let chainLine = try #require(copy.stdout.split(separator: "\n").last.map(String.init))
            let copiedEntries = try #require(Int(chainLine.split(separator: " ")[2]), "\(chainLine)")
            #expect(chainLine.hasPrefix("audit chain: \(copiedEntries) entries verified, last hash "), "\(chainLine)")

            // Again: the target is no longer empty. Refused with one line; nothing changed.
            let again = try await devid(["registry", "copy", "--to", database.url, "--to-password-file", passwordFile])
            #expect(again.status != 0)
            #expect(
                again.stderr == "Error: store conflict: the PostgreSQL registry is not empty (tenants has rows): "
                    + "copy into a new database\n", "\(again)")

            // The same data directory, now on PostgreSQL.
            let postgres = try ServeProcess.start(
                dataDir: dataDir, workingDirectory: work.path,
                environment: ["DEVID_REGISTRY": database.url, "DEVID_REGISTRY_PASSWORD_FILE": passwordFile])
            defer { postgres.kill() }
            _ = try await postgres.waitUntilListening(timeout: ServeCLITests.startTimeout)
            #expect(try await devid(["device", "list", "--json"]).stdout == devicesBefore.stdout)
            #expect(try await devid(["token", "list", "--json"]).stdout == tokensBefore.stdout)
            let verify = try await devid(["audit", "verify"])
            #expect(verify.succeeded, "\(verify)")
            // The copied chain, extended by the server's start on PostgreSQL, verifies as one chain.
            let verifiedEntries = verify.stdout.split(separator: " ").dropFirst(3).first.flatMap { Int($0) }
            #expect((verifiedEntries ?? 0) >= copiedEntries, "\(verify.stdout) after \(copiedEntries) copied")
            _ = try await postgres.interrupt(timeout: 30)
        }
    }
}
