import DevIDTesting
import Foundation
import Testing

/// The identity-health sections of docs/monitoring.md as executable documentation: the `devid health` walk (a
/// device enrolled by the real agent, revoked, still checking in) and then the history's `curl` examples run in one
/// shell against a real `devid serve`, their output compared by shape (see [ReadmeTests]). (The `promtool`
/// transcript and the metric table of the same page are MonitoringDocTests.)
@Suite("docs/monitoring.md: devid health and the history", .serialized)
struct MonitoringHealthDocTests {
    static let page = "docs/monitoring.md"

    @Test("devid health names the revoked device and exits 2; the series answers as shown", .timeLimit(.minutes(3)))
    func walk() async throws {
        let page = try DocFile(Self.page)
        let health = page.blocks(in: "## `devid health`")
        let history = page.blocks(in: "## History without Prometheus")
        try #require(health.count == 1 && history.count == 1, "\(health) \(history)")
        #expect(page.prose(in: "## `devid health`").contains("On a server started\nwith `devid serve > devid.log 2>&1 &`:"))
        #expect(page.prose(in: "## History without Prometheus").contains("(Both after the walk through"))

        let work = try TemporaryDirectory(prefix: "devid-monitoring-doc")
        defer { work.remove() }
        var walk = try DocWalk(directory: work.path, dataDirectory: work.file("devid-data"))
        defer { walk.close() }
        try await walk.run("alias devid=devid")
        try await walk.run("devid serve > devid.log 2>&1 &", expectServerStart: true)
        try await walk.run("export DEVID_ADMIN_TOKEN=$(cat devid-data/secrets/admin-token)")
        let ran = try await walk.run(health[0]) + (try await walk.run(history[0]))
        #expect(
            ran.map { String($0.command.prefix(24)) } == [
                "devid tenant create acme", "T=$(devid token create -", "devid agent enroll --ser",
                "devid revoke --device se", "devid agent run --once -", "devid health || echo \"de",
                "devid health --check ca_", "curl -s -H \"Authorizatio", "curl -s -H \"Authorizatio",
            ], "the page lost or gained commands: \(ran.map(\.command))")
    }
}
