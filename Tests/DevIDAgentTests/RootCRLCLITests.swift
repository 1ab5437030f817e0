import DevIDPKI
import DevIDTesting
import Foundation
import Testing

/// `devid ca root-crl` as a root ceremony runs it: the built executable on a data directory `devid ca init` made.
@Suite("devid ca root-crl CLI", .serialized)
struct RootCRLCLITests {
    @Test("signs 13 more after the 13 of ca init; a key that is not the root's is refused and writes nothing")
    func ceremony() async throws {
        let work = try TemporaryDirectory(prefix: "devid-root-crl-cli")
        defer { work.remove() }
        let data = work.file("devid-data")
        let environment = ["DEVID_CA_PASSPHRASE": "root-crl-test-passphrase", "DEVID_KEYS_PBKDF2_ROUNDS": "1000"]
        let executable = try AgentCLITests.executable()
        let initialized = try await ExternalTool.runAsync(
            [executable, "ca", "init", "--data-dir", data], environment: environment)
        try #require(initialized.succeeded, "\(initialized.stderr)")
        let directory = CALayout(dataDirectory: data).rootCRLDirectory
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).count == 13)

        let signed = try await ExternalTool.runAsync(
            [executable, "ca", "root-crl", "--data-dir", data], environment: environment)
        #expect(signed.succeeded, "\(signed.stderr)")
        #expect(
            signed.stdout.range(
                of: #"^signed 13 root CRLs; 26 in .*/ca/root-crl, the last \(number 26\) valid until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n$"#,
                options: .regularExpression) != nil, "\(signed.stdout)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).count == 26)

        let wrong = try await ExternalTool.runAsync(
            [executable, "ca", "root-crl", "--data-dir", data, "--root-key", CALayout(dataDirectory: data).issuingKey,
             "--count", "2"], environment: environment)
        #expect(wrong.status == 1)
        #expect(wrong.stderr.contains("is not the key of the root in"), "\(wrong.stderr)")
        #expect(wrong.stderr.split(separator: "\n").count == 1)
        let tooMany = try await ExternalTool.runAsync(
            [executable, "ca", "root-crl", "--data-dir", data, "--count", "121"], environment: environment)
        #expect(tooMany.status == 1)
        #expect(tooMany.stderr.contains("sign between 1 and 120 root CRLs at a time"), "\(tooMany.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: directory).count == 26, "nothing written")
    }
}
