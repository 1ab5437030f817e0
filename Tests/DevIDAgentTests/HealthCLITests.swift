import DevIDCore
import DevIDPKI
import DevIDTesting
import Foundation
import Testing

/// `devid health` as cron runs it: the built executable against a live server, a device enrolled and checked in by
/// the real agent. Exit status 0 all good, 1 warnings, 2 critical, 3 could not check.
@Suite("devid health CLI", .serialized)
struct HealthCLITests {
    static func health(_ server: AgentTestServer, _ arguments: [String] = []) async throws -> ExternalTool.Result {
        try await ExternalTool.runAsync(
            [try AgentCLITests.executable(), "health", "--server", server.opsURL] + arguments,
            environment: ["DEVID_ADMIN_TOKEN": server.adminToken])
    }

    @Test("a revoked device that keeps checking in makes devid health exit 2 and name the device")
    func revokedDeviceKeepsTrying() async throws {
        try await withServer { server in
            let work = try TemporaryDirectory(prefix: "devid-health-cli")
            defer { work.remove() }
            let stateDir = work.file("state")
            let tokenFile = try work.write("token", try await server.claimToken() + "\n")
            let enroll = try await AgentCLITests.run([
                "agent", "enroll", "--server", server.estURL, "--trust-bundle", server.layout.rootCertificate,
                "--state-dir", stateDir, "--token-file", tokenFile, "--device", "sensor-h",
            ])
            try #require(enroll.succeeded, "\(enroll.stderr)")

            var result = try await Self.health(server)
            #expect(result.status == 0, "\(result.stdout) \(result.stderr)")
            #expect(result.stdout.contains("revoked_credential_in_use  ok"), "\(result.stdout)")
            #expect(result.stdout.hasSuffix("status: ok (0 critical, 0 warnings)\n"), "\(result.stdout)")

            let revoke = try await ExternalTool.runAsync(
                [
                    try AgentCLITests.executable(), "revoke", "--server", server.opsURL, "--device", "sensor-h",
                    "--reason", "keyCompromise",
                ], environment: ["DEVID_ADMIN_TOKEN": server.adminToken])
            try #require(revoke.succeeded, "\(revoke.stderr)")
            // The device does not know it was revoked: its agent keeps checking in.
            for _ in 0..<2 {
                let run = try await AgentCLITests.run(["agent", "run", "--once", "--state-dir", stateDir])
                #expect(!run.stdout.isEmpty || !run.stderr.isEmpty)
            }

            result = try await Self.health(server)
            #expect(result.status == 2, "\(result.stdout) \(result.stderr)")
            #expect(result.stdout.contains("revoked_credential_in_use  critical  1"), "\(result.stdout)")
            #expect(result.stdout.contains("CRITICAL  revoked_credential_in_use  device sensor-h: revoked credential"))
            #expect(result.stdout.contains("status: critical (1 critical, 0 warnings)"), "\(result.stdout)")
            #expect(!result.stdout.contains(server.adminToken) && !result.stderr.contains(server.adminToken))

            // One check; JSON; a threshold flag that turns a quiet check into a warning.
            result = try await Self.health(server, ["--check", "ca_expiring"])
            #expect(result.status == 0, "\(result.stdout)")
            #expect(result.stdout.split(separator: "\n").count == 3, "header, one check, status: \(result.stdout)")
            result = try await Self.health(server, ["--check", "ca_expiring", "--ca-warning-days", "100000"])
            #expect(result.status == 1, "\(result.stdout)")
            result = try await Self.health(server, ["--check", "revoked_credential_in_use", "--json"])
            #expect(result.status == 2)
            let report = try #require(
                try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
            #expect(report["status"] as? String == "critical")
            let anomalies = try #require(report["anomalies"] as? [[String: Any]])
            #expect(anomalies.map { $0["device"] as? String } == ["sensor-h"])
        }
    }

    @Test("could not check: exit 3 with one line, for an unreachable server, a bad token, an unknown check")
    func couldNotCheck() async throws {
        try await withServer { server in
            let executable = try AgentCLITests.executable()
            var result = try await ExternalTool.runAsync(
                [executable, "health", "--server", "http://127.0.0.1:1"], environment: ["DEVID_ADMIN_TOKEN": "x"])
            #expect(result.status == 3, "\(result.stderr)")
            #expect(
                result.stderr == "devid health: could not check: cannot reach http://127.0.0.1:1: connection refused\n",
                "\(result.stderr)")
            result = try await ExternalTool.runAsync(
                [executable, "health", "--server", server.opsURL], environment: ["DEVID_ADMIN_TOKEN": "devid_at_wrong"])
            #expect(result.status == 3)
            #expect(result.stderr.contains("server answered 401"), "\(result.stderr)")
            #expect(!result.stderr.contains("devid_at_wrong"))
            result = try await Self.health(server, ["--check", "nope"])
            #expect(result.status == 3)
            #expect(result.stderr.contains("unknown check nope"), "\(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
        }
    }
}
