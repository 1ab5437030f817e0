import DevIDTesting
import Foundation
import Testing

/// docs/deployment.md as executable documentation: two servers on one PostgreSQL registry, a write through one read
/// through the other, then a backup with `pg_dump` restored into another cluster that a third server serves from,
/// with the same devices and the same audit chain. The page's database (`registry` on `127.0.0.1:5432`) and password
/// file become a new database of the test sandbox and its password file; its second cluster (`127.0.0.1:5433`), a
/// second sandbox the test starts.
@Suite("docs/deployment.md", .serialized)
struct DeploymentDocTests {
    static let page = "docs/deployment.md"

    @Test("docs/deployment.md: two servers on one registry, backup restored into another cluster", .timeLimit(.minutes(4)))
    func walkThePage() async throws {
        let sandbox = try PostgresSandbox()
        let passwordFile = try #require(ProcessInfo.processInfo.environment[PostgresSandbox.passwordFileVariable])
        let page = try DocFile(Self.page)
        let work = try TemporaryDirectory(prefix: "devid-deployment-doc")
        defer { work.remove() }
        // The page's "new cluster" (port 5433): a second throw-away cluster of scripts/pg-sandbox.
        let second = RunbookTests.packageRoot.appendingPathComponent("scripts/pg-sandbox").path
        let secondDirectory = "/tmp/devid-restore-\(UUID().uuidString.prefix(8))"
        // Through a file, not a pipe: the server it starts keeps the descriptors it inherited, and a pipe would never
        // reach its end.
        let log = "\(secondDirectory).log"
        let status = try await Self.run([second, "start", secondDirectory], log: log)
        defer { try? FileManager.default.removeItem(atPath: log) }
        try #require(status == 0, "\((try? String(contentsOfFile: log, encoding: .utf8)) ?? "")")
        defer { Self.stop(second, secondDirectory) }
        let secondEnvironment = try String(contentsOfFile: "\(secondDirectory)/env", encoding: .utf8)
        let secondPort = try #require(
            secondEnvironment.firstMatch(of: /127\.0\.0\.1:([0-9]+)\//).map { String($0.1) }, "\(secondEnvironment)")
        try await sandbox.withDatabase { database in
            var walk = try DocWalk(directory: work.path, dataDirectory: work.file("a"))
            defer { walk.close() }
            walk.extra = [
                ("127.0.0.1:5432/registry", "\(sandbox.host):\(sandbox.port)/\(database.name)"),
                ("--file=registry.dump --dbname=registry", "--file=registry.dump --dbname=\(database.name)"),
                ("127.0.0.1:5433", "127.0.0.1:\(secondPort)"),
                ("PGPORT=5432", "PGPORT=\(sandbox.port)"),
                ("PGPORT=5433", "PGPORT=\(secondPort)"),
                ("PGUSER=devid", "PGUSER=\(sandbox.username)"),
                ("/run/secrets/devid-registry-password", passwordFile),
                ("/run/secrets/devid-restore-password", "\(secondDirectory)/password"),
            ]
            try await walk.run("alias devid=devid")
            var ran: [String] = []
            for block in page.blocks where block.lines.contains(where: { $0.hasPrefix("$ ") }) {
                ran += try await walk.run(block).map(\.command)
            }
            #expect(ran.count == 21, "the page lost or gained commands: \(ran)")
            // The three servers the page started (jobs %1 to %3) stop cleanly.
            let stop = try await walk.run("kill -INT %1 %2 %3; wait", timeout: 30)
            #expect(stop.status == 0, "\(stop)")
        }
    }

    /// Runs a command with its output in `log` (never a pipe); returns its exit status.
    static func run(_ arguments: [String], log: String) async throws -> Int32 {
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        defer { try? handle.close() }
        // posix_spawn, not Foundation's Process (SpawnedProcess says why). Polled, never a blocking wait: the script
        // leaves a server running, and this runs on the cooperative pool.
        let process = try SpawnedProcess.start(
            arguments[0], Array(arguments.dropFirst()), stdout: handle, stderr: handle)
        while process.isRunning { try await Task.sleep(for: .milliseconds(50)) }
        return process.terminationStatus
    }

    /// `scripts/pg-sandbox stop`, waited for.
    static func stop(_ script: String, _ directory: String) {
        guard let process = try? SpawnedProcess.start(script, ["stop", directory]) else { return }
        process.waitUntilExit()
    }
}
