import DevIDServer
import DevIDTesting
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// Issue #13 part 5, black-box: `testssl` (Debian package `testssl.sh`) scans the mTLS listener of the built
/// `devid serve`: protocols (`-p`), server defaults and certificate (`-S`), server preference (`-P`), cipher
/// categories (`-s`), forward secrecy (`-f`) and the vulnerabilities including renegotiation (`-U`), with DevID's root
/// as the trust anchor (`--add-ca`). About a minute on a quiet machine. The operations listener is plain HTTP on
/// loopback by default (the banner and `server.json` say `http://`): nothing to scan there.
///
/// Asserts no SSLv2, SSLv3, TLS 1.0 or 1.1; no NULL, anonymous, EXPORT, LOW (RC4, DES), 3DES/IDEA or "average"
/// (CBC) ciphers; secure renegotiation and no client-initiated renegotiation; and no finding of severity HIGH or
/// CRITICAL other than the one docs/security.md ("TLS scan") explains and accepts.
@Suite("faults: TLS scan of the listeners with testssl (black-box)", .serialized)
struct TLSScanTests {
    static let testssl = ["/usr/bin/testssl", "/usr/bin/testssl.sh"].first { FileManager.default.isExecutableFile(atPath: $0) }

    /// Findings of severity HIGH or CRITICAL that docs/security.md ("TLS scan") explains and accepts.
    static let accepted: [String: String] = [
        // The server's own TLS certificate names no CRL or OCSP URI: devices pin DevID's root and never check it;
        // see docs/security.md.
        "cert_revocation": "Neither CRL nor OCSP URI provided"
    ]

    /// The arguments of the `testssl` command docs/security.md ("TLS scan") tells the reader to run.
    static func documentedArguments() throws -> [String] {
        let page = try DocFile("docs/security.md")
        let block = try #require(
            page.blocks(in: "## TLS scan").first { $0.lines.first?.hasPrefix("testssl ") == true },
            "docs/security.md lost its testssl command")
        let command = try #require(DocCommand.commands(in: block).first?.command)
        let words = command.replacingOccurrences(of: "\\\n", with: " ").split(whereSeparator: \.isWhitespace)
        return words.dropFirst().map(String.init)
    }

    @Test("docs/security.md's testssl command is the one the scan runs, and names DevID's root, port and JSON file")
    func documentedCommand() throws {
        let arguments = try Self.documentedArguments()
        #expect(arguments.contains("DATA/ca/root.crt") && arguments.contains("scan.json"), "\(arguments)")
        #expect(arguments.last == "127.0.0.1:8443", "\(arguments)")
    }

    @Test(
        "the mTLS listener offers TLS 1.2 and 1.3 only, strong AEAD ciphers, no insecure renegotiation, nothing HIGH",
        .enabled(if: testssl != nil, "testssl is not installed (Debian package testssl.sh; scripts/test installs it)"),
        .timeLimit(.minutes(10)))
    func scan() async throws {
        let testssl = try #require(Self.testssl)
        let work = try TemporaryDirectory(prefix: "devid-testssl")
        defer { work.remove() }
        let dataDir = work.file("data")
        let server = try ServeProcess.start(dataDir: dataDir, workingDirectory: work.path)
        defer { server.kill() }
        let endpoints = try await server.waitUntilListening(timeout: ServeCLITests.startTimeout)
        #expect(endpoints.opsURL.hasPrefix("http://127.0.0.1:"), "the ops listener is plain HTTP on loopback")
        let target = String(endpoints.estURL.dropFirst("https://".count))

        let json = work.file("scan.json")
        // The command docs/security.md shows, with this server's data directory, port and JSON file.
        let arguments = try Self.documentedArguments().map {
            switch $0 {
            case "DATA/ca/root.crt": "\(dataDir)/ca/root.crt"
            case "scan.json": json
            case "127.0.0.1:8443": target
            default: $0
            }
        }
        #expect(
            ["-p", "-P", "-S", "-s", "-f", "-U", "--add-ca", "--jsonfile"].allSatisfy(arguments.contains),
            "the page's scan covers protocols, ciphers, defaults, forward secrecy and vulnerabilities: \(arguments)")
        let started = ContinuousClock.now
        let output = try await Self.run(testssl, arguments, timeout: 480)
        print("TLSScanTests: testssl \(arguments.joined(separator: " ")) took \(ContinuousClock.now - started)")
        let data = try #require(FileManager.default.contents(atPath: json), "no JSON from testssl: \(output)")
        let findings = try #require(try JSONSerialization.jsonObject(with: data) as? [[String: Any]])
        var byID: [String: (severity: String, finding: String)] = [:]
        for entry in findings {
            guard let id = entry["id"] as? String else { continue }
            byID[id] = (entry["severity"] as? String ?? "", entry["finding"] as? String ?? "")
        }
        try #require(byID["TLS1_2"] != nil, "testssl reached the listener: \(output.suffix(2_000))")

        for protocolID in ["SSLv2", "SSLv3", "TLS1", "TLS1_1"] {
            #expect(byID[protocolID]?.finding == "not offered", "\(protocolID): \(String(describing: byID[protocolID]))")
        }
        #expect(byID["TLS1_2"]?.finding == "offered")
        #expect(byID["TLS1_3"]?.finding.hasPrefix("offered") == true, "\(String(describing: byID["TLS1_3"]))")
        for category in [
            "cipherlist_NULL", "cipherlist_aNULL", "cipherlist_EXPORT", "cipherlist_LOW", "cipherlist_3DES_IDEA",
            "cipherlist_AVERAGE",
        ] {
            #expect(byID[category]?.finding == "not offered", "\(category): \(String(describing: byID[category]))")
        }
        #expect(byID["RC4"]?.severity == "OK", "\(String(describing: byID["RC4"]))")
        #expect(byID["secure_renego"]?.severity == "OK", "\(String(describing: byID["secure_renego"]))")
        #expect(byID["secure_client_renego"]?.finding == "not vulnerable", "\(String(describing: byID["secure_client_renego"]))")
        #expect(byID["LUCKY13"]?.severity == "OK", "no CBC: \(String(describing: byID["LUCKY13"]))")
        #expect(byID["cipher_order"]?.severity == "OK", "\(String(describing: byID["cipher_order"]))")

        let severe = findings.filter { ["HIGH", "CRITICAL"].contains($0["severity"] as? String) }
            .map { ($0["id"] as? String ?? "", $0["finding"] as? String ?? "") }
        for (id, finding) in severe {
            #expect(Self.accepted[id] == finding, "testssl \(id): \(finding)")
        }
        print("TLSScanTests: HIGH/CRITICAL findings: \(severe.map { "\($0.0): \($0.1)" })")
        _ = try await server.interrupt(timeout: 20)
    }

    /// Runs `tool` to completion (stdout and stderr together), killed after `timeout` seconds, on its own thread.
    static func run(_ tool: String, _ arguments: [String], timeout: TimeInterval) async throws -> String {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(
                    with: Result {
                        // posix_spawn, not Foundation's `Process` (``SpawnedProcess``).
                        let output = Pipe.closeOnExec()
                        let process = try SpawnedProcess.start(
                            tool, arguments, stdout: output.fileHandleForWriting, stderr: output.fileHandleForWriting)
                        try? output.fileHandleForWriting.close()
                        let watchdog = DispatchWorkItem { process.signal(SIGKILL) }
                        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)
                        let data = output.fileHandleForReading.readDataToEndOfFile()
                        process.waitUntilExit()
                        watchdog.cancel()
                        return String(decoding: data, as: UTF8.self)
                    })
            }
        }
    }
}
