import DevIDServer
import DevIDTesting
import Foundation
import Testing

/// `devid serve` with its CA keys in a SoftHSM2 token, as a child process: a wrong PIN stops it at start with one
/// clear line; a token that goes away while it serves makes enrollments fail cleanly (503 `ca_key_unavailable` with
/// `Retry-After`, nothing issued, the claim token not spent) and the same request succeeds once the token is back,
/// without a restart.
@Suite("CA keys in SoftHSM2: failures", .serialized)
struct HSMCATests {
    @Test("wrong PIN at start; token removed while serving: 503, nothing issued, recovers when it returns", .timeLimit(.minutes(3)))
    func failures() async throws {
        let hsm = try SoftHSM()
        defer { hsm.directory.remove() }
        try hsm.initToken("devid-ca")
        let work = try TemporaryDirectory(prefix: "devid-hsm-ca")
        defer { work.remove() }
        let dataDir = work.file("data")
        let env = hsm.environment
        let initialized = try await ServeCLITests.devid(
            ["ca", "init", "--data-dir", dataDir, "--key-uri", hsm.uri(token: "devid-ca")], in: work.path, environment: env)
        try #require(initialized.succeeded, "\(initialized)")

        // A wrong PIN: the server does not start, and says why in one line (never the PIN).
        try "0000\n".write(toFile: hsm.pinFile, atomically: true, encoding: .utf8)
        let refused = try ServeProcess.start(dataDir: dataDir, workingDirectory: work.path, environment: env)
        defer { refused.kill() }
        let deadline = Date().addingTimeInterval(30)
        while refused.process.isRunning && Date() < deadline { try await Task.sleep(for: .milliseconds(100)) }
        #expect(!refused.process.isRunning && refused.process.terminationStatus != 0)
        #expect(refused.stderr().contains("token devid-ca refused the PIN (CKR_PIN_INCORRECT)"), "\(refused.stderr())")
        #expect(!refused.stderr().contains("0000"))
        try (SoftHSM.userPIN + "\n").write(toFile: hsm.pinFile, atomically: true, encoding: .utf8)

        let server = try ServeProcess.start(dataDir: dataDir, workingDirectory: work.path, environment: env)
        defer { server.kill() }
        let endpoints = try await server.waitUntilListening(timeout: ServeCLITests.startTimeout)
        let tenant = try await ServeCLITests.devid(["tenant", "create", "acme", "--data-dir", dataDir], in: work.path)
        try #require(tenant.succeeded, "\(tenant)")
        func token(_ device: String) async throws -> String {
            let created = try await ServeCLITests.devid(
                ["token", "create", "--tenant", "acme", "--device", device, "--data-dir", dataDir], in: work.path)
            try #require(created.succeeded, "\(created)")
            return created.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        _ = try ExternalTool.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", work.file("k.pem")])
        func enroll(_ secret: String, _ device: String) async throws -> String {
            try await ExternalTool.runAsync(
                [
                    "sh", "-c",
                    "cd '\(work.path)' && openssl req -new -key k.pem -subj /CN=\(device) -outform DER | openssl base64 > \(device).b64 && "
                        + "curl -s -i --cacert \(dataDir)/ca/root.crt -H \"Authorization: Bearer $T\" "
                        + "-H 'Content-Type: application/pkcs10' --data-binary @\(device).b64 "
                        + "\(endpoints.estURL)/.well-known/est/simpleenroll",
                ], environment: ["T": secret]
            ).stdout
        }
        let first = try await enroll(try await token("hsm-1"), "hsm-1")
        #expect(first.hasPrefix("HTTP/1.1 200"), "\(first)")

        // The token goes away (SoftHSM2's token directory moved out).
        let tokens = hsm.directory.file("tokens")
        let away = hsm.directory.file("away")
        try FileManager.default.moveItem(atPath: tokens, toPath: away)
        let secret = try await token("hsm-2")
        let refusedEnrollment = try await enroll(secret, "hsm-2")
        #expect(refusedEnrollment.hasPrefix("HTTP/1.1 503"), "\(refusedEnrollment)")
        #expect(refusedEnrollment.contains("DevID-Refusal: ca_key_unavailable"), "\(refusedEnrollment)")
        #expect(refusedEnrollment.contains("Retry-After: 30"), "\(refusedEnrollment)")
        #expect(refusedEnrollment.contains("nothing was issued"), "\(refusedEnrollment)")
        // Nothing issued: hsm-2 has no credential, and its claim token is not spent.
        let list = try await ServeCLITests.devid(["device", "list", "--json", "--data-dir", dataDir], in: work.path)
        let devices = try #require(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])
        #expect(devices.contains { $0["id"] as? String == "hsm-1" })
        #expect(!devices.contains { $0["id"] as? String == "hsm-2" }, "\(list.stdout)")
        let healthz = try ExternalTool.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "\(endpoints.opsURL)/healthz"])
        #expect(healthz.stdout == "200", "the operations listener keeps serving")

        // Back: the same request with the same claim token succeeds, no restart (the module is re-initialised at
        // most every two seconds).
        try FileManager.default.moveItem(atPath: away, toPath: tokens)
        try await Task.sleep(for: .seconds(2.2))
        let recovered = try await enroll(secret, "hsm-2")
        #expect(recovered.hasPrefix("HTTP/1.1 200"), "\(recovered)")
        #expect(server.process.isRunning)
    }
}
