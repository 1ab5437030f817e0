import DevIDTesting
import Foundation
import Testing

/// docs/deployment.md as executable documentation: two servers on one PostgreSQL registry, a write through one read
/// through the other, then a backup with `pg_dump` restored into a new database that a third server serves from,
/// with the same devices and the same audit chain. The page's database (`registry` on `127.0.0.1:5432`, and
/// `registry_restored`) and password file become two new databases of the test sandbox and its password file.
@Suite("docs/deployment.md", .serialized)
struct DeploymentDocTests {
    static let page = "docs/deployment.md"

    @Test("docs/deployment.md: two servers on one registry, backup and restore", .timeLimit(.minutes(4)))
    func walkThePage() async throws {
        let sandbox = try PostgresSandbox()
        let passwordFile = try #require(ProcessInfo.processInfo.environment[PostgresSandbox.passwordFileVariable])
        let page = try DocFile(Self.page)
        let work = try TemporaryDirectory(prefix: "devid-deployment-doc")
        defer { work.remove() }
        try await sandbox.withDatabase { database in
            // The page creates the restored database itself (createdb): a name the sandbox may drop afterwards.
            let restored = PostgresSandbox.databasePrefix
                + (0..<8).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
            var walk = try DocWalk(directory: work.path, dataDirectory: work.file("a"))
            defer { walk.close() }
            walk.extra = [
                ("registry_restored", restored),
                ("127.0.0.1:5432/registry", "\(sandbox.host):\(sandbox.port)/\(database.name)"),
                ("--dbname=registry", "--dbname=\(database.name)"),
                ("127.0.0.1:5432", "\(sandbox.host):\(sandbox.port)"),
                ("PGPORT=5432", "PGPORT=\(sandbox.port)"),
                ("PGUSER=devid", "PGUSER=\(sandbox.username)"),
                ("/run/secrets/devid-registry-password", passwordFile),
            ]
            try await walk.run("alias devid=devid")
            var ran: [String] = []
            for block in page.blocks where block.lines.contains(where: { $0.hasPrefix("$ ") }) {
                ran += try await walk.run(block).map(\.command)
            }
            #expect(ran.count == 19, "the page lost or gained commands: \(ran)")
            // The three servers the page started (jobs %1 to %3) stop cleanly.
            let stop = try await walk.run("kill -INT %1 %2 %3; wait", timeout: 30)
            #expect(stop.status == 0, "\(stop)")
            try? await sandbox.dropDatabase(restored)
        }
    }
}
