import DevIDCore
import DevIDServer
import DevIDTesting
import Foundation
import Testing

/// Runs every `$ devid ...` command of a runbook, in order, against a real `devid serve` with a lot of three
/// enrolled devices. The commands come from the Markdown file itself, so the runbook cannot drift from what works.
@Suite("Runbooks", .serialized)
struct RunbookTests {
    static let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// The `$ devid ...` lines of a runbook, as argument lists.
    static func commands(in runbook: String) throws -> [[String]] {
        let text = try String(contentsOf: packageRoot.appendingPathComponent(runbook), encoding: .utf8)
        return text.split(separator: "\n").compactMap { line in
            guard line.hasPrefix("$ devid ") else { return nil }
            return line.dropFirst("$ devid ".count).split(separator: " ").map(String.init)
        }
    }

    @Test("docs/runbooks/rotation.md", .timeLimit(.minutes(5)))
    func rotationRunbook() async throws {
        let commands = try Self.commands(in: "docs/runbooks/rotation.md")
        #expect(commands.count >= 8, "the runbook lost its commands: \(commands)")

        let work = try TemporaryDirectory(prefix: "devid-runbook")
        defer { work.remove() }
        let dataDir = work.file("data")
        let server = try ServeProcess.start(dataDir: dataDir, workingDirectory: work.path)
        defer { server.kill() }
        let endpoints = try await server.waitUntilListening(timeout: ServeCLITests.startTimeout)

        func devid(_ arguments: [String]) async throws -> ServeCLITests.CommandResult {
            try await ServeCLITests.devid(arguments + ["--data-dir", dataDir], in: work.path)
        }
        // The fleet the runbook talks about: tenant acme, lot L1 of three devices, each enrolled with its IDevID.
        try #require(try await devid(["tenant", "create", "acme"]).succeeded)
        let lot = work.file("lot-L1")
        try #require(
            try await devid(["factory", "mint", "--lot", "L1", "--tenant", "acme", "--count", "3", "--out", lot]).succeeded)
        try #require(try await devid(["device", "import", "\(lot)/manifest.json"]).succeeded)
        for index in 1...3 {
            let device = "L1-00000\(index)"
            let enroll = try await ServeCLITests.devid(
                [
                    "agent", "enroll", "--server", endpoints.estURL, "--trust-bundle", "\(dataDir)/ca/root.crt",
                    "--state-dir", work.file("state-\(index)"), "--idevid-cert", "\(lot)/\(device)/chain.pem",
                    "--idevid-key", "\(lot)/\(device)/idevid.key",
                ], in: work.path)
            try #require(enroll.succeeded, "\(enroll)")
        }

        var outputs: [String: String] = [:]
        for command in commands {
            let result = try await devid(command)
            #expect(result.succeeded, "devid \(command.joined(separator: " ")): \(result)")
            outputs[command.joined(separator: " ")] = result.stdout
        }
        #expect(outputs["rotate --lot L1 --dry-run"]?.contains("3 credentials on 3 devices") == true, "\(outputs)")
        #expect(outputs["rotate --lot L1"]?.contains("marked 3 credentials rotation-due") == true, "\(outputs)")
        #expect(outputs["rotate status --lot L1"]?.contains("3") == true, "\(outputs)")
        #expect(outputs["audit list --action rotation.campaign"]?.contains("marked rotation-due: lot L1") == true)
        _ = try await server.interrupt(timeout: 10)
    }
}
