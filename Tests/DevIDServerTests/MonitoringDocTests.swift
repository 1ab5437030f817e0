import AsyncHTTPClient
import DevIDCore
import DevIDPKI
import DevIDTesting
import Foundation
import Testing

@testable import DevIDServer

/// docs/monitoring.md as executable documentation: the `promtool` transcript runs as shown (from the repository's
/// root) and prints what the page shows, and the metric table names exactly the families a real scrape has, with
/// their types.
@Suite("docs/monitoring.md", .serialized)
struct MonitoringDocTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path
    static let page = "docs/monitoring.md"

    static func text() throws -> String {
        try String(contentsOfFile: root + "/" + page, encoding: .utf8)
    }

    /// The fenced blocks of the page without an info string (transcripts), each as its lines.
    static func transcripts(_ text: String) -> [[String]] {
        var blocks: [[String]] = []
        var current: [String]?
        var inOtherBlock = false  // a block with an info string (yaml): skipped
        for line in text.components(separatedBy: "\n") {
            if line.hasPrefix("```") {
                if inOtherBlock {
                    inOtherBlock = false
                } else if let block = current {
                    blocks.append(block)
                    current = nil
                } else if line == "```" {
                    current = []
                } else {
                    inOtherBlock = true
                }
                continue
            }
            current?.append(line)
        }
        // The promtool transcript; the others (devid health, the history) are MonitoringHealthDocTests'.
        return blocks.filter { $0.first?.hasPrefix("$ promtool") == true }
    }

    @Test("the alerting rules transcript: each command prints what the page shows")
    func promtoolTranscript() async throws {
        let blocks = Self.transcripts(try Self.text())
        try #require(blocks.count == 1, "one transcript: \(blocks)")
        var commands: [(command: String, output: [String])] = []
        for line in blocks[0] {
            if line.hasPrefix("$ ") {
                commands.append((String(line.dropFirst(2)), []))
            } else {
                commands[commands.count - 1].output.append(line)
            }
        }
        #expect(
            commands.map(\.command) == [
                "promtool check rules docs/monitoring/alerts.yml",
                "promtool test rules docs/monitoring/alerts-test.yml",
            ])
        guard Promtool.path != nil else {
            _ = try await Promtool.run(["--version"])  // records the issue under CI=true, or says why it skips
            return
        }
        for (command, shown) in commands {
            let result = try await ExternalTool.runAsync(["bash", "-c", "cd \"$0\" && " + command, Self.root])
            #expect(result.status == 0, "\(command): \(result.stdout)\(result.stderr)")
            // Lines as a terminal shows them: the last newline ends the last line, it does not start another.
            var printed = (result.stdout + result.stderr).components(separatedBy: "\n")
            if printed.last == "" { printed.removeLast() }
            #expect(
                printed == shown,
                "\(command) printed:\n\(result.stdout)\(result.stderr)")
        }
    }

    @Test("the scrape job is a valid Prometheus configuration (promtool check config)")
    func scrapeConfig() async throws {
        let text = try Self.text()
        let parts = text.components(separatedBy: "```yaml\n")
        try #require(parts.count == 2, "one yaml block")
        let yaml = try #require(parts[1].components(separatedBy: "```").first)
        #expect(yaml.contains("credentials_file: /etc/prometheus/devid-token"))
        guard Promtool.path != nil else {
            _ = try await Promtool.run(["--version"])  // records the issue under CI=true, or says why it skips
            return
        }
        // promtool checks that the token file exists: the page's path, moved into a scratch directory.
        let scratch = try TemporaryDirectory(prefix: "devid-prometheus-config")
        defer { scratch.remove() }
        try Data("devid-admin-example\n".utf8).write(to: URL(fileURLWithPath: scratch.file("devid-token")))
        let config = scratch.file("prometheus.yml")
        try Data(yaml.replacingOccurrences(of: "/etc/prometheus/devid-token", with: scratch.file("devid-token")).utf8)
            .write(to: URL(fileURLWithPath: config))
        let result = try #require(try await Promtool.run(["check", "config", config]))
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
    }

    @Test("the metric table names every family of a real scrape, with its type, and nothing else")
    func metricTable() async throws {
        var documented: [String: String] = [:]
        for line in try Self.text().components(separatedBy: "\n")
        where line.hasPrefix("| `devid_") || line.hasPrefix("| `process_") {
            let cells = line.split(separator: "|").map { $0.trimmingCharacters(in: .whitespaces) }
            documented[cells[0].trimmingCharacters(in: CharacterSet(charactersIn: "`"))] = cells[1]
        }

        // A server that has enrolled, revoked and answered: every event-fed family exists.
        let server = try await MetricsTests.server()
        _ = try await MetricsTests.enroll(server, device: "dev-1")
        let revoked = try await withClient(try server.client()) { client in
            try await client.send(
                "POST", server.opsURL + "/v1/admin/revoke",
                headers: [("Authorization", "Bearer \(server.adminToken)"), ("Content-Type", "application/json")],
                body: #"{"device":"dev-1","reason":"keyCompromise"}"#)
        }
        #expect(revoked.status == 200, "\(revoked.body)")
        let scrape = try Exposition(try await MetricsTests.scrape(server))
        try await server.stop()

        var scraped: [String: String] = [:]
        for line in scrape.text.components(separatedBy: "\n") where line.hasPrefix("# TYPE ") {
            let parts = line.split(separator: " ")
            scraped[String(parts[2])] = String(parts[3])
        }
        #expect(documented == scraped)
    }
}
