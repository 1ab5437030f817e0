import DevIDAgent
import DevIDCore
import DevIDPKI
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

/// `devid agent enroll` and `devid agent status` as a device runs them: the built executable, a live server.
@Suite("devid agent CLI", .serialized)
struct AgentCLITests {
    /// The `devid` executable next to the test binary (SwiftPM builds every product before running tests).
    static func executable() throws -> String {
        var candidates: [String] = []
        if let testBinary = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            candidates.append(
                URL(fileURLWithPath: testBinary).deletingLastPathComponent().appendingPathComponent("devid").path)
        }
        let packageRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent()
        candidates.append(packageRoot.appendingPathComponent(".build/debug/devid").path)
        return try #require(
            candidates.first { FileManager.default.isExecutableFile(atPath: $0) },
            "devid executable not found in \(candidates)")
    }

    static func run(_ arguments: [String]) async throws -> ExternalTool.Result {
        try await ExternalTool.runAsync([try executable()] + arguments)
    }

    @Test("enroll with a token file, then status --json parses and reports a valid identity")
    func enrollAndStatus() async throws {
        try await withServer { server in
            let secret = try await server.claimToken()
            let work = try TemporaryDirectory(prefix: "devid-agent-cli")
            defer { work.remove() }
            let tokenFile = try work.write("token", secret + "\n")
            let stateDir = work.file("state")

            let enroll = try await Self.run([
                "agent", "enroll", "--server", server.estURL, "--trust-bundle", server.layout.rootCertificate,
                "--state-dir", stateDir, "--token-file", tokenFile, "--device", "sensor-cli", "--json",
            ])
            #expect(enroll.succeeded, "\(enroll.stderr)")
            let enrolled = try JSONSerialization.jsonObject(with: Data(enroll.stdout.utf8)) as? [String: Any]
            #expect(enrolled?["deviceID"] as? String == "sensor-cli")
            #expect((enrolled?["files"] as? [String])?.contains("\(stateDir)/key.pem") == true)
            #expect(enroll.stdout.contains(secret) == false)

            let status = try await Self.run(["agent", "status", "--state-dir", stateDir, "--json"])
            #expect(status.succeeded, "\(status.stderr)")
            let decoder = JSONDecoder()
            decoder.dateDecodingStrategy = .iso8601
            let parsed = try decoder.decode(IdentityStatus.self, from: Data(status.stdout.utf8))
            #expect(parsed.state == .valid)
            #expect(parsed.deviceID?.rawValue == "sensor-cli")
            #expect(parsed.tenant == server.tenant)
            #expect(parsed.keyMatchesCertificate == true)
            #expect(parsed.plannedRenewal != nil)
            #expect(parsed.serial?.rawValue == enrolled?["serial"] as? String)

            let text = try await Self.run(["agent", "status", "--state-dir", stateDir])
            #expect(text.succeeded)
            #expect(text.stdout.contains("state:    valid"))
            #expect(text.stdout.contains("renewal:  planned"))
        }
    }

    @Test("enroll with an IDevID from `devid factory mint`-style files (unencrypted PKCS#8 key, chain file)")
    func enrollWithIDevIDFiles() async throws {
        try await withServer { server in
            let (key, certificate) = try await server.idevid(hardwareSerial: "SN-CLI-0001")
            let work = try TemporaryDirectory(prefix: "devid-agent-cli")
            defer { work.remove() }
            let keyFile = try work.write("idevid.key", try key.serializeAsPEM().pemString + "\n")
            let chainFile = try work.write(
                "chain.pem", PEM.bundle([certificate, try #require(server.hierarchy.manufacturer).certificate]))
            let stateDir = work.file("state")

            let enroll = try await Self.run([
                "agent", "enroll", "--server", server.estURL, "--trust-bundle", server.layout.rootCertificate,
                "--state-dir", stateDir, "--idevid-cert", chainFile, "--idevid-key", keyFile,
            ])
            #expect(enroll.succeeded, "\(enroll.stderr)")
            #expect(enroll.stdout.contains("enrolled device SN-CLI-0001 (tenant acme)"))
            #expect(enroll.stdout.contains("renewal:  planned"))
            #expect(enroll.stdout.contains("\(stateDir)/cert.pem"))
            #expect(try IdentityStatus.read(stateDirectory: stateDir, clock: server.clock).state == .valid)
        }
    }

    @Test("a refused enrollment exits non-zero with one line on stderr, and writes nothing")
    func refused() async throws {
        try await withServer { server in
            let work = try TemporaryDirectory(prefix: "devid-agent-cli")
            defer { work.remove() }
            let stateDir = work.file("state")
            let result = try await Self.run([
                "agent", "enroll", "--server", server.estURL, "--trust-bundle", server.layout.rootCertificate,
                "--state-dir", stateDir, "--token", "devid_ct_wrong", "--device", "sensor-cli",
            ])
            #expect(!result.succeeded)
            let lines = result.stderr.split(separator: "\n")
            #expect(lines.count == 1, "\(result.stderr)")
            #expect(result.stderr.contains("invalid claim token"))
            #expect(result.stderr.contains("devid_ct_wrong") == false)
            #expect(!Files.exists(stateDir))
        }
    }

    @Test("status of an empty state directory reports missing; usage errors are caught before any request")
    func missingAndUsage() async throws {
        let work = try TemporaryDirectory(prefix: "devid-agent-cli")
        defer { work.remove() }
        let status = try await Self.run(["agent", "status", "--state-dir", work.file("nothing"), "--json"])
        #expect(status.succeeded, "\(status.stderr)")
        #expect(status.stdout.contains("\"state\" : \"missing\"") || status.stdout.contains("\"state\":\"missing\""))

        let both = try await Self.run([
            "agent", "enroll", "--server", "https://127.0.0.1:1", "--trust-bundle", "x", "--state-dir", "y",
            "--token", "t", "--idevid-cert", "c", "--idevid-key", "k",
        ])
        #expect(!both.succeeded)
        #expect(both.stderr.contains("not both"))
    }
}
