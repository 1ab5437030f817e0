import DevIDServer
import DevIDTesting
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// docs/integrations/rabbitmq.md as executable documentation: its commands and its two configuration files, as
/// written, against a real `devid serve` and Debian's real RabbitMQ 3.10 (see [ReadmeTests] for how commands are
/// taken from the Markdown).
///
/// After the README's "Enroll a device" up to device L1-000001: the export of section 1 (a command in its prose),
/// then a node of the walk's own started on the page's `rabbitmq.conf` and `advanced.config`, the page's
/// `rabbitmq-plugins enable`, its closing user and its `devid serve` in place of the README's server; then
/// L1-000001 subscribes with its LDevID and is revoked, and its open connection must be closed (the page's point in
/// section 5) and its next handshake refused; and the dotted tenant id the page shows refused is refused.
///
/// What the walk fills in for the reader's machine: a directory for `/etc/rabbitmq`; a node of its own (its
/// `RABBITMQ_*` variables exported in the session, `rabbitmqctl` and `rabbitmq-plugins` as aliases of the scripts
/// with the node's HOME, where its Erlang cookie is); free ports for 8883 and 15672; `127.0.0.2` for
/// `mqtt.example.com`; the authz token for `<authz-token>`; a password for `<password>`.
@Suite("docs/integrations/rabbitmq.md", .serialized)
struct RabbitMQDocTests {
    static let page = "docs/integrations/rabbitmq.md"

    @Test(
        "docs/integrations/rabbitmq.md: its configuration, plugins, closing user and server; a revoked device is cut off",
        .timeLimit(.minutes(4)))
    func walkThePage() async throws {
        let page = try DocFile(Self.page)
        let work = try TemporaryDirectory(prefix: "devid-rabbitmq-doc")
        defer { work.remove() }
        var walk = try DocWalk(directory: work.path, dataDirectory: work.file("devid-demo/devid-data"))
        let node = try Node(base: work.file("rabbitmq"))
        defer {
            Node.kill(pidFile: work.file("devid-demo/sub.pid"))  // mosquitto_sub, if the walk ended before stopping it
            node.kill()
            walk.close()
        }
        let etc = work.file("etc-rabbitmq")
        try FileManager.default.createDirectory(atPath: etc, withIntermediateDirectories: true)
        let (mqttPort, managementPort) = (node.ports[2], node.ports[3])
        walk.extra = [
            // Ports with what precedes them on the page, so that no digits of a path or token are taken for one.
            ("/etc/rabbitmq", etc), ("mqtt.example.com", "127.0.0.2"), (" 8883", " \(mqttPort)"),
            (" 15672", " \(managementPort)"), (":15672", ":\(managementPort)"),
            ("'<password>'", "'walk-closer-password'"),
        ]
        try await walk.runReadmeThroughFirstEnrollment()
        let token = try String(contentsOfFile: work.file("devid-demo/devid-data/secrets/authz-token"), encoding: .utf8)
        walk.extra.append(("<authz-token>", token.trimmingCharacters(in: .whitespacesAndNewlines)))

        let plugins = try #require(page.blocks.first { $0.lines.first?.hasPrefix("rabbitmq-plugins enable") == true })
        let configuration = try #require(page.blocks.first { $0.info == "ini" })
        let advanced = try #require(page.blocks.first { $0.info == "erlang" })
        let closer = try #require(page.blocks.first { $0.lines.first?.hasPrefix("rabbitmqctl add_user") == true })
        let dottedTenant = try #require(
            page.blocks.first { $0.lines.first == "$ devid tenant create acme.eu" }, "the dotted tenant example left the page")
        let walked = [plugins, configuration, advanced, closer, dottedTenant].map(\.line)
        for other in page.blocks where !walked.contains(other.line) {
            Issue.record(
                "\(Self.page):\(other.line): a block that is neither run nor listed: \(other.lines.first ?? "")")
        }

        // 1. The broker's certificate, as the prose says.
        let exportCommand = "devid export mosquitto --dir /etc/rabbitmq/devid --broker-name mqtt.example.com"
        #expect(page.text.contains("`\(exportCommand)`"), "section 1 lost its export command")
        var ran = [try await walk.run(exportCommand)]
        #expect(ran[0].status == 0 && ran[0].output.contains("a new broker certificate for 127.0.0.2"), "\(ran)")

        // 3. and 4.: the page's files, then a node on them with no plugin yet; 2.: the page's command enables them.
        try (configuration.lines.map(walk.apply).joined(separator: "\n") + "\n").write(
            toFile: "\(node.base)/rabbitmq.conf", atomically: true, encoding: .utf8)
        try (advanced.lines.map(walk.apply).joined(separator: "\n") + "\n").write(
            toFile: "\(node.base)/advanced.config", atomically: true, encoding: .utf8)
        for line in node.sessionSetup { try await walk.run(line) }
        let booted = try await walk.run(
            "for i in $(seq 90); do "
                + "rabbitmqctl await_startup --timeout 60 >/dev/null 2>&1 && echo up && break; sleep 1; done",
            timeout: 120)
        #expect(booted.output.contains("up"), "the node did not start: \(node.log.suffix(3_000))")
        let enabled = try await walk.run(plugins)
        ran += enabled
        #expect(enabled.first?.output.contains("started 5 plugins") == true, "\(enabled)")
        let listening = await Self.eventually(timeout: 30) { LoopbackPort.accepts(mqttPort) }
        #expect(listening, "the MQTT TLS listener of the page's rabbitmq.conf: \(node.log.suffix(3_000))")

        // 5. The closing user, then the page's server in place of the README's (in the background, as the walk needs).
        let commands = DocCommand.commands(in: closer).map(\.command)
        #expect(commands.count == 3, "\(commands)")
        for command in commands.dropLast() {
            let result = try await walk.run(command)
            #expect(result.status == 0, "\(result)")
            ran.append(result)
        }
        // On the README server's ports, as a reader's server keeps its own: the broker's HTTP backend (rabbitmq.conf)
        // and the CRL Distribution Point of L1-000001's LDevID name them.
        let endpoints = try #require(walk.endpoints)
        let ports = try [endpoints.estURL, endpoints.opsURL].map { try #require(URL(string: $0)?.port) }
        try await walk.stopServer(with: "kill -INT %1", log: "devid.log")
        try await walk.run("export DEVID_EST_PORT=\(ports[0]) DEVID_OPS_PORT=\(ports[1])")
        let served = try await walk.run(commands[2] + " > rabbitmq-serve.log 2>&1 &", expectServerStart: true)
        ran.append(served)

        // A device on the broker: L1-000001 subscribes to its commands (MQTT 3.1.1, the client id is the device id).
        let subscriber =
            "stdbuf -oL -eL mosquitto_sub -h 127.0.0.2 -p \(mqttPort) --cafile \(etc)/devid/ca.pem --cert dev1/cert.pem"
            + " --key dev1/key.pem -i L1-000001 -t tenants/acme/devices/L1-000001/commands/# -V mqttv311 -d"
            + " > sub.log 2>&1 &"
        try await walk.run(subscriber + " echo $! > sub.pid")
        let subLog = work.file("devid-demo/sub.log")
        let subscribed = await Self.eventually(timeout: 20) { Self.read(subLog).contains("Subscribed (mid: 1)") }
        #expect(subscribed, "the device's subscription: \(Self.read(subLog)) \(node.log.suffix(2_000))")

        // Revoked: DevID closes the open connection through the management API; the reconnection fails the CRL check.
        let revoked = try await walk.run("devid revoke --device L1-000001 --reason keyCompromise")
        #expect(revoked.status == 0, "\(revoked)")
        // Within the second look (12 s): the connection is a second old, so the management API may not list it yet.
        let cutOff = await Self.eventually(timeout: 25) { Self.read(subLog).contains("alert certificate revoked") }
        let serveLog = Self.read(work.file("devid-demo/rabbitmq-serve.log"))
        #expect(cutOff, "the revoked device's connection stayed open: \(Self.read(subLog)) \(serveLog.suffix(2_000))")
        #expect(!serveLog.contains("management API failed"), "the management login: \(serveLog.suffix(2_000))")
        try await walk.run("kill %?mosquitto_sub")

        // "Ids never contain a dot": the page's transcript (inside a list item).
        let dotted = try await walk.run(dottedTenant)
        #expect(dotted.first?.status == 1, "\(dotted)")
        ran += dotted

        #expect(
            ran.map { String($0.command.split(separator: " ").first ?? "") } == [
                "devid", "rabbitmq-plugins", "rabbitmqctl", "rabbitmqctl",
                "DEVID_RABBITMQ_MANAGEMENT_USER=devid-closer",
                "devid",
            ], "the walk lost or gained commands: \(ran.map(\.command))")
        try await walk.run("rabbitmqctl stop >/dev/null 2>&1; epmd -port \(node.epmdPort) -kill >/dev/null 2>&1")
        try DocWalk.dumpIfAsked(ran)
    }

    /// A RabbitMQ node of the walk's own: its directories, ports and the session lines that point the page's
    /// `rabbitmqctl` and `rabbitmq-plugins` at it.
    struct Node {
        let base: String
        let name: String
        let epmdPort: Int
        let distributionPort: Int
        let ports: [Int]

        init(base: String) throws {
            self.base = base
            for sub in ["home", "mnesia", "log"] {
                try FileManager.default.createDirectory(atPath: "\(base)/\(sub)", withIntermediateDirectories: true)
            }
            try "[].\n".write(toFile: "\(base)/enabled_plugins", atomically: true, encoding: .utf8)
            // Four distinct ports: the node's epmd and distribution, and the page's MQTT and management listeners.
            var ports: [Int] = []
            while ports.count < 4 {
                let port = try LoopbackPort.free()
                if !ports.contains(port) { ports.append(port) }
            }
            self.ports = ports
            epmdPort = ports[0]
            distributionPort = ports[1]
            name = "devidwalk\(epmdPort)@localhost"
        }

        var sessionSetup: [String] {
            let scripts = "/usr/lib/rabbitmq/bin"
            return [
                "export RABBITMQ_NODENAME=\(name) RABBITMQ_CONFIG_FILE=\(base)/rabbitmq"
                    + " RABBITMQ_ADVANCED_CONFIG_FILE=\(base)/advanced.config"
                    + " RABBITMQ_ENABLED_PLUGINS_FILE=\(base)/enabled_plugins"
                    + " RABBITMQ_MNESIA_BASE=\(base)/mnesia RABBITMQ_LOG_BASE=\(base)/log"
                    + " RABBITMQ_DIST_PORT=\(distributionPort)"
                    + " ERL_EPMD_PORT=\(epmdPort) RABBITMQ_PID_FILE=\(base)/pid",
                "alias rabbitmqctl='HOME=\(base)/home \(scripts)/rabbitmqctl'",
                "alias rabbitmq-plugins='HOME=\(base)/home \(scripts)/rabbitmq-plugins'",
                "HOME=\(base)/home \(scripts)/rabbitmq-server > \(base)/server.log 2>&1 &",
            ]
        }

        var log: String { RabbitMQDocTests.read("\(base)/server.log") }

        /// SIGKILL to the pid in `pidFile`, then up to 5 s for it to go (epmd forgets a node only once it is gone).
        static func kill(pidFile: String) {
            guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
                let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), Glibc.kill(pid, SIGKILL) == 0
            else { return }
            let deadline = Date().addingTimeInterval(5)
            while Glibc.kill(pid, 0) == 0 && Date() < deadline { usleep(50_000) }
        }

        /// The node and its epmd, whatever the walk reached (the walk stops them itself when it gets to the end).
        func kill() {
            Self.kill(pidFile: "\(base)/pid")
            let epmd = Process()
            epmd.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            epmd.arguments = ["epmd", "-port", String(epmdPort), "-kill"]
            epmd.standardOutput = FileHandle.nullDevice
            epmd.standardError = FileHandle.nullDevice
            try? epmd.run()
            epmd.waitUntilExit()
        }
    }

    static func read(_ path: String) -> String { (try? String(contentsOfFile: path, encoding: .utf8)) ?? "" }

    static func eventually(timeout: TimeInterval, _ condition: () -> Bool) async -> Bool {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            if condition() { return true }
            try? await Task.sleep(for: .milliseconds(100))
        }
        return condition()
    }
}
