import DevIDTesting
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// docs/integrations/mosquitto.md as executable documentation: every command on the page against a real
/// `devid serve` and Debian's real Mosquitto 2.0 (see [ReadmeTests] for how commands are taken from the Markdown).
///
/// The page is a reference, not a story, so the walk takes its blocks in the order an operator would: after the
/// README's "Enroll a device" up to device L1-000001, the one-off export, a broker started on it (the page's
/// `include_dir` line in its configuration), the server keeping it current, the hand check with L1-000001's LDevID
/// (its own topic accepted, L1-000002's refused), then the broker certificate's listing, status and revocation,
/// whose printed line the page shows. docs/revocation.md's block on broker certificates (the services CRL and OCSP
/// by hand) runs there too, on the certificate just revoked.
///
/// What the walk fills in for the reader's machine: a directory for `/etc/mosquitto` (which the mosquitto package
/// makes), a pid file, a free port for 8883, `dev1/cert.pem`, `dev1/key.pem`, `L1-000001` and `L1-000002` for the
/// page's `device.pem`, `device.key`, `dev-1` and `dev-2`, and `127.0.0.2` for `mqtt.example.com` (resolvable
/// without DNS, and not one of the server's default broker names, so the hand check fails if the server replaces
/// the exported certificate with one naming only the defaults).
@Suite("docs/integrations/mosquitto.md", .serialized)
struct MosquittoDocTests {
    static let page = "docs/integrations/mosquitto.md"

    @Test(
        "docs/integrations/mosquitto.md: export, a broker kept current, the hand check, the broker certificate revoked",
        .timeLimit(.minutes(3)))
    func walkThePage() async throws {
        let page = try DocFile(Self.page)
        let work = try TemporaryDirectory(prefix: "devid-mosquitto-doc")
        defer { work.remove() }
        var walk = try DocWalk(directory: work.path, dataDirectory: work.file("devid-demo/devid-data"))
        let pidFile = work.file("mosquitto.pid")
        defer {
            Self.stopBroker(pidFile: pidFile)
            walk.close()
        }
        let etc = work.file("etc-mosquitto")
        try FileManager.default.createDirectory(atPath: etc, withIntermediateDirectories: true)
        let port = try LoopbackPort.free()
        // The port with the space before it on the page, so that no digits of a path are taken for it.
        walk.extra = [
            ("/etc/mosquitto", etc), ("/run/mosquitto/mosquitto.pid", pidFile), (" 8883", " \(port)"),
            ("mqtt.example.com", "127.0.0.2"), ("device.pem", "dev1/cert.pem"), ("device.key", "dev1/key.pem"),
            ("dev-1", "L1-000001"), ("dev-2", "L1-000002"),
        ]
        try await walk.runReadmeThroughFirstEnrollment()

        func block(_ first: String) throws -> DocFile.Block {
            try #require(
                page.blocks.first { $0.lines.first?.hasPrefix(first) == true }, "no block starts with \(first)")
        }
        let certificates = try block("devid cert services")
        let revokedLine = try block("revoked mosquitto broker certificate <serial>")
        let initServices = try block("devid ca init-services")
        let export = try block("devid export mosquitto")
        let include = try block("include_dir /etc/mosquitto/devid")
        let serve = try block("devid serve --mosquitto-dir")
        let handCheck = try block("mosquitto_pub")
        let walked = [certificates, revokedLine, initServices, export, include, serve, handCheck].map(\.line)
        for other in page.blocks where !walked.contains(other.line) {
            Issue.record(
                "\(Self.page):\(other.line): a block that is neither run nor listed: \(other.lines.first ?? "")")
        }

        // The one-off export, then a broker on it: the page's one line in the broker's configuration.
        var ran = try await walk.run(export)
        #expect(ran.first?.output.contains("a new broker certificate for 127.0.0.2") == true, "\(ran)")
        var configuration = getuid() == 0 ? "user root\n" : ""  // CI runs as root; the 0600 key stays readable
        configuration += "pid_file \(pidFile)\nlog_dest file \(work.file("mosquitto.log"))\n"
        configuration += include.lines.map(walk.apply).joined(separator: "\n") + "\n"
        try configuration.write(toFile: work.file("mosquitto.conf"), atomically: true, encoding: .utf8)
        let started = try await walk.run("mosquitto -c \(work.file("mosquitto.conf")) -d")
        #expect(started.status == 0, "\(started)")
        try await Self.waitForLog(work.file("mosquitto.log"), toContain: " running")

        // The server keeps the files current instead of the README's server (in the background, as the walk needs).
        try await walk.stopServer(with: "kill -INT %1", log: "devid.log")
        let serveCommand = try #require(DocCommand.commands(in: serve).first).command
        let served = try await walk.run(serveCommand + " > mosquitto-serve.log 2>&1 &", expectServerStart: true)
        #expect(served.status == 0, "\(served)")
        ran.append(served)
        // As a reader would, the check comes after the server's first rewrite of the files (at its first CRLs).
        try await Self.waitForLog(work.file("devid-demo/mosquitto-serve.log"), toContain: "Mosquitto files updated")

        // The hand check: the device's own telemetry is accepted (no subscriber: RC:16), another device's refused.
        let publishes = try await walk.run(handCheck)
        ran += publishes
        #expect(publishes.count == 2 && publishes.allSatisfy { $0.command.hasPrefix("mosquitto_pub") }, "\(publishes)")
        #expect(publishes.first?.output.contains("received PUBACK (Mid: 1, RC:16)") == true, "own topic: \(publishes)")
        #expect(publishes.last?.output.contains("received PUBACK (Mid: 1, RC:135)") == true, "another's: \(publishes)")

        // The broker certificate: listed, its status, revoked (the serial is the one in broker.pem).
        let serialOutput = try await walk.run("openssl x509 -in \(etc)/devid/broker.pem -noout -serial")
        let serial = try #require(serialOutput.output.split(separator: "=").last).trimmingCharacters(
            in: .whitespacesAndNewlines
        ).lowercased()
        walk.extra.insert(("<serial>", serial), at: 0)
        let listed = try await walk.run(certificates)
        ran += listed
        #expect(listed.count == 3, "\(listed)")
        #expect(
            listed.first?.output.hasPrefix("\(serial)  mosquitto  active") == true, "one broker certificate: \(listed)")
        #expect(listed.dropFirst().first?.output.contains("kind:     service") == true, "\(listed)")
        try await walk.run(revokedLine)

        // docs/revocation.md's block on broker certificates, on the one just revoked.
        let revocation = try DocFile("docs/revocation.md")
        let manual = try #require(
            revocation.blocks.first {
                $0.info == "sh" && $0.lines.first?.hasPrefix("curl -sS --fail -o services.crl") == true
            },
            "docs/revocation.md lost its broker block")
        walk.extra.insert(("broker.pem", "\(etc)/devid/broker.pem"), at: 0)
        let checked = try await walk.run(manual)
        ran += checked
        #expect(checked.count == 3, "\(checked)")
        #expect(
            checked.dropFirst().first?.output.contains("verify OK") == true, "the services CRL verifies: \(checked)")
        #expect(checked.last?.output.contains("broker.pem: revoked") == true, "OCSP: \(checked)")
        #expect(checked.last?.output.contains("Reason: keyCompromise") == true, "OCSP: \(checked)")

        #expect(
            ran.map { String($0.command.split(separator: " ").first ?? "") } == [
                "devid", "devid", "mosquitto_pub", "mosquitto_pub", "devid", "devid", "devid", "curl", "openssl",
                "openssl",
            ], "the walk lost or gained commands: \(ran.map(\.command))")
        try DocWalk.dumpIfAsked(ran)
    }

    /// `devid ca init-services` where the page says it is needed: a hierarchy whose root key is offline and that has no
    /// services CA (made before it existed: the walk removes it). The export is refused with the page's message until
    /// the command has run and the server restarted; then the broker certificate chains through the new services CA.
    @Test(
        "docs/integrations/mosquitto.md: ca init-services for a hierarchy whose root key is offline",
        .timeLimit(.minutes(3)))
    func servicesCAForAnOfflineRoot() async throws {
        let page = try DocFile(Self.page)
        let work = try TemporaryDirectory(prefix: "devid-mosquitto-services")
        defer { work.remove() }
        var walk = try DocWalk(directory: work.path, dataDirectory: work.file("devid-data"))
        defer { walk.close() }
        let offline = work.file("offline")
        try FileManager.default.createDirectory(atPath: offline, withIntermediateDirectories: true)
        walk.extra = [("/offline", offline)]
        let refusal =
            "no services CA to issue broker certificates: the root key is not in the data directory; run "
            + "`devid ca init-services --root-key PATH` and restart `devid serve`"
        #expect(page.text.contains(refusal), "the page shows the refusal as the server words it")

        try await walk.run("alias devid=devid")
        try await walk.run("export DEVID_CA_PASSPHRASE='correct horse battery staple'")
        let initialized = try await walk.run("devid ca init --root-key-out /offline/root.key")
        #expect(initialized.status == 0, "\(initialized)")
        // A hierarchy of a DevID before the services CA: no services CA files.
        try await walk.run("rm devid-data/ca/services.crt devid-data/ca/services.key devid-data/ca/services-chain.pem")
        try await walk.run("devid serve > serve.log 2>&1 &", expectServerStart: true)
        let refused = try await walk.run("devid export mosquitto --dir broker")
        #expect(refused.status == 1 && refused.output.contains("Error: server answered 409: \(refusal)"), "\(refused)")
        #expect(!FileManager.default.fileExists(atPath: work.file("broker/broker.pem")), "nothing written")
        let log = try String(contentsOfFile: work.file("serve.log"), encoding: .utf8)
        #expect(log.contains(refusal), "the server logs the reason at start: \(log.suffix(2_000))")

        let block = try #require(page.blocks.first { $0.lines.first?.hasPrefix("devid ca init-services") == true })
        let created = try await walk.run(block)
        #expect(created.count == 1 && created[0].output.contains("Created the services CA"), "\(created)")
        try await walk.stopServer(with: "kill -INT %1", log: "serve.log")
        try await walk.run("devid serve > serve2.log 2>&1 &", expectServerStart: true)
        let exported = try await walk.run("devid export mosquitto --dir broker")
        #expect(exported.status == 0 && exported.output.contains("a new broker certificate"), "\(exported)")
        let chain = try await walk.run(
            "openssl verify -CAfile devid-data/ca/root.crt -untrusted devid-data/ca/services.crt broker/broker.pem")
        #expect(chain.status == 0 && chain.output.contains("broker/broker.pem: OK"), "\(chain)")
        let audited = try await walk.run("devid audit list --action ca.services.init")
        #expect(audited.output.contains("found the services CA created by `devid ca init-services`"), "\(audited)")
    }

    static func waitForLog(_ path: String, toContain text: String, timeout: TimeInterval = 60) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if let log = try? String(contentsOfFile: path, encoding: .utf8), log.contains(text) { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        let log = (try? String(contentsOfFile: path, encoding: .utf8)) ?? "(no file)"
        Issue.record("\(path) never showed \(text): \(log.suffix(2_000))")
    }

    /// Mosquitto daemonized (`-d`): stopped by the pid in its pid file, waited for up to 5 s.
    static func stopBroker(pidFile: String) {
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
            let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines))
        else { return }
        guard kill(pid, SIGTERM) == 0 else { return }
        let deadline = Date().addingTimeInterval(5)
        while kill(pid, 0) == 0 && Date() < deadline { usleep(50_000) }
    }
}
