import DevIDTesting
import Foundation
import Testing

#if canImport(Glibc)
import Glibc
#endif

/// A long-running third-party program (mosquitto, mosquitto_sub, rabbitmq-server) started by a test, its output
/// appended to a log file that the test can read.
final class BackgroundProcess: Sendable {
    let arguments: [String]
    let logPath: String
    private let process: SpawnedProcess

    init(_ arguments: [String], logPath: String, environment: [String: String]? = nil) throws {
        self.arguments = arguments
        self.logPath = logPath
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        defer { try? log.close() }
        // posix_spawn, not Foundation's Process (SpawnedProcess says why). It also gives the child the default signal
        // mask and dispositions: the test process blocks SIGHUP, SIGTERM and others on its threads, and Mosquitto
        // must see its reload signal. `env` finds the program on the PATH.
        self.process = try SpawnedProcess.start(
            "/usr/bin/env", arguments,
            environment: ProcessInfo.processInfo.environment.merging(environment ?? [:]) { $1 }, stdout: log,
            stderr: log)
    }

    /// A test that fails half-way must not leave brokers and clients behind. SIGKILL: no waiting here.
    deinit {
        if process.isRunning {
            process.signal(SIGKILL)
            process.waitUntilExit()
        }
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    func signal(_ number: Int32) { process.signal(number) }

    /// SIGTERM, then SIGKILL if it has not exited within `grace` seconds. Waits with `Task.sleep`, never blocking
    /// a thread of the cooperative pool (two threads on a 2-core CI machine: blocking one stalls every other test).
    func stop(grace: TimeInterval = 5) async {
        guard process.isRunning else { return }
        process.signal(SIGTERM)
        let deadline = ContinuousClock.now + .milliseconds(Int64(grace * 1_000))
        while process.isRunning, ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        if process.isRunning { process.signal(SIGKILL) }
        while process.isRunning { try? await Task.sleep(for: .milliseconds(5)) }
    }
}

enum Loopback {
    /// A TCP port that was free a moment ago (``LoopbackPort/free()``).
    static func freePort() throws -> Int { try LoopbackPort.free() }

    /// A port the kernel picks (bound to port 0 and released).
    static func kernelPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw BrokerTestError("socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0 else { throw BrokerTestError("bind() failed") }
        let named = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        guard named == 0 else { throw BrokerTestError("getsockname() failed") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    /// True once something accepts TCP connections on 127.0.0.1:`port`.
    static func accepts(_ port: Int) -> Bool { LoopbackPort.accepts(port) }

    static func waitUntilAccepting(_ port: Int, timeout: TimeInterval, process: BackgroundProcess) async throws {
        let deadline = Date().addingTimeInterval(timeout)
        while !accepts(port) {
            guard process.isRunning else {
                throw BrokerTestError("\(process.arguments[0]) exited before listening: \(process.log.suffix(2_000))")
            }
            guard Date() < deadline else {
                throw BrokerTestError("\(process.arguments[0]) did not listen on \(port) within \(timeout) s")
            }
            try await Task.sleep(for: .milliseconds(50))
        }
    }
}

struct BrokerTestError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Polls `condition` every 20 ms until it holds or `timeout` passes; returns the seconds it took, or nil.
func eventually(timeout: TimeInterval, _ condition: () async throws -> Bool) async rethrows -> TimeInterval? {
    let start = ContinuousClock.now
    let limit = Duration.milliseconds(Int64(timeout * 1_000))
    while ContinuousClock.now - start < limit {
        if try await condition() {
            let elapsed = ContinuousClock.now - start
            return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        }
        try? await Task.sleep(for: .milliseconds(20))
    }
    return nil
}

/// A real Mosquitto 2.0 broker on a loopback port, configured by the files `devid export mosquitto` wrote.
final class MosquittoBroker: Sendable {
    let port: Int
    let process: BackgroundProcess

    /// - Parameter exportDirectory: the directory holding `mosquitto.conf` (a listener block) and its files.
    init(exportDirectory: String, port: Int, directory: TemporaryDirectory) async throws {
        self.port = port
        var main = ""
        // Started as root (CI), Mosquitto drops to the `mosquitto` user, which cannot read the test's 0600 keys.
        if getuid() == 0 { main += "user root\n" }
        main += "log_dest stdout\nlog_type all\n"
        main += "include_dir \(exportDirectory)\n"
        let configPath = try directory.write("mosquitto-main.conf", main)
        // stdbuf: the log goes to a file, which stdio would otherwise buffer until exit.
        process = try BackgroundProcess(
            ["stdbuf", "-oL", "-eL", "mosquitto", "-c", configPath], logPath: directory.file("mosquitto.log"))
        try await Loopback.waitUntilAccepting(port, timeout: 10, process: process)
        // Accepting could be someone else on the port: Mosquitto itself must say it runs.
        let process = self.process
        let running = await eventually(timeout: 10) { process.log.contains(" running") || !process.isRunning }
        guard running != nil, process.isRunning else {
            throw BrokerTestError("mosquitto did not start: \(process.log.suffix(2_000))")
        }
    }

    /// What `devid serve --mosquitto-pid-file` does after each export: SIGHUP, which re-reads the ACL file and CRL.
    func reload() { process.signal(SIGHUP) }

    func stop() async { await process.stop() }
}

/// The `mosquitto_pub` / `mosquitto_sub` command-line clients, speaking TLS with a device's LDevID.
struct MQTTClientCredentials: Sendable {
    let caFile: String
    let certFile: String
    let keyFile: String
}

enum MQTTClients {
    /// One QoS 1 publish; returns the broker's PUBACK reason code (MQTT 5), nil if none was received, and the
    /// client's output.
    static func publish(
        port: Int, credentials: MQTTClientCredentials, topic: String, message: String, version: String = "mqttv5",
        clientID: String? = nil
    ) async throws -> MQTTPublishResult {
        var arguments = [
            "mosquitto_pub", "-h", "127.0.0.1", "-p", "\(port)", "--cafile", credentials.caFile, "--cert",
            credentials.certFile, "--key", credentials.keyFile, "-t", topic, "-m", message, "-q", "1", "-V", version, "-d",
        ]
        if let clientID { arguments += ["-i", clientID] }
        let result = try await ExternalTool.runAsync(arguments)
        let output = result.stdout + result.stderr
        let connected = output.contains("received CONNACK (0)")
        var reason: Int?
        if let range = output.range(of: "received PUBACK (Mid: 1, RC:") {
            reason = Int(output[range.upperBound...].prefix { $0.isNumber })
        } else if version == "mqttv311", output.contains("received PUBACK") {
            reason = 0
        }
        return MQTTPublishResult(pubackReason: reason, connected: connected, output: output)
    }
}

struct MQTTPublishResult {
    /// The PUBACK reason code (MQTT 5; 0 for an MQTT 3.1.1 PUBACK), nil if none arrived.
    let pubackReason: Int?
    let connected: Bool
    let output: String
    /// The broker took the message: a PUBACK below 0x80 (0 success, 16 "no matching subscribers").
    var accepted: Bool { connected && (pubackReason.map { $0 < 0x80 } ?? false) }
}

/// `mosquitto_sub -v -d` running in the background; its received messages are the `topic payload` lines.
final class MQTTSubscription: Sendable {
    let process: BackgroundProcess

    init(
        port: Int, credentials: MQTTClientCredentials, topic: String, clientID: String, version: String = "mqttv5",
        directory: TemporaryDirectory
    ) async throws {
        // stdbuf: mosquitto_sub's stdout is a file here, which stdio would buffer until exit.
        process = try BackgroundProcess(
            [
                "stdbuf", "-oL", "-eL", "mosquitto_sub", "-h", "127.0.0.1", "-p", "\(port)", "--cafile", credentials.caFile, "--cert",
                credentials.certFile, "--key", credentials.keyFile, "-t", topic, "-q", "1", "-V", version, "-v", "-d",
                "-i", clientID,
            ],
            logPath: directory.file("sub-\(clientID).log"))
        let subscribed = await eventually(timeout: 10) { process.log.contains("received SUBACK") }
        guard subscribed != nil else { throw BrokerTestError("mosquitto_sub did not subscribe: \(process.log)") }
    }

    /// The SUBACK's granted QoS / reason codes as printed by `mosquitto_sub -d`.
    var subackLine: String? { process.log.split(separator: "\n").first { $0.contains("Subscribed") }.map(String.init) }

    /// `topic payload` lines received so far.
    var messages: [String] {
        process.log.split(separator: "\n").map(String.init).filter {
            !$0.hasPrefix("Client ") && !$0.hasPrefix("Subscribed") && !$0.isEmpty
        }
    }

    var disconnections: Int {
        process.log.components(separatedBy: "sending CONNECT").count - 1
    }

    func stop() async { await process.stop() }
}

/// A real RabbitMQ 3.x node (Debian's `rabbitmq-server`) with the MQTT plugin on a TLS loopback port, asking DevID
/// through `rabbitmq_auth_backend_http`, and the management API for closing connections. Everything (node name,
/// Erlang ports, Mnesia, logs, cookie) lives in the test's temporary directory, so it never touches a system node.
final class RabbitMQBroker: Sendable {
    let mqttPort: Int
    let managementPort: Int
    let managementUser = "devid-admin"
    let managementPassword: String
    let process: BackgroundProcess
    private let environment: [String: String]
    private let nodeName: String

    static let serverScript = "/usr/lib/rabbitmq/bin/rabbitmq-server"
    static let controlScript = "/usr/lib/rabbitmq/bin/rabbitmqctl"

    /// - Parameters:
    ///   - managementPort, managementPassword: chosen by the caller, so DevID can be configured before the node
    ///     exists (the node needs DevID's URL, DevID the node's).
    ///   - authBaseURL: DevID's `/v1/authz/rabbitmq/<token>` URL.
    init(
        directory: TemporaryDirectory, caFile: String, certFile: String, keyFile: String, authBaseURL: String,
        managementPort: Int, managementPassword: String
    ) async throws {
        mqttPort = try Loopback.freePort()
        self.managementPort = managementPort
        let distributionPort = try Loopback.freePort()
        let epmdPort = try Loopback.freePort()
        self.managementPassword = managementPassword
        nodeName = "devidtest\(mqttPort)@localhost"
        let base = directory.file("rabbitmq")
        for sub in ["home", "mnesia", "log"] {
            try FileManager.default.createDirectory(atPath: "\(base)/\(sub)", withIntermediateDirectories: true)
        }
        let config = """
            listeners.tcp = none
            mqtt.listeners.tcp = none
            mqtt.listeners.ssl.default = 127.0.0.1:\(mqttPort)
            mqtt.ssl_cert_login = true
            ssl_cert_login_from = common_name
            mqtt.allow_anonymous = false
            auth_backends.1 = internal
            auth_backends.2 = http
            auth_http.http_method = post
            auth_http.user_path = \(authBaseURL)/user
            auth_http.vhost_path = \(authBaseURL)/vhost
            auth_http.resource_path = \(authBaseURL)/resource
            auth_http.topic_path = \(authBaseURL)/topic
            management.tcp.port = \(managementPort)
            management.tcp.ip = 127.0.0.1
            loopback_users = none

            """
        try config.write(toFile: "\(base)/rabbitmq.conf", atomically: true, encoding: .utf8)
        // TLS options live in advanced.config (it replaces rabbitmq.conf's ssl_options as a whole): the CRL check
        // fetches the CRL named by the client certificate's CRL Distribution Point (DevID's /crl/...) at every
        // handshake, so a revoked LDevID (a superseded key, a single serial) is refused at once.
        let advanced = """
            [{rabbit, [{ssl_options, [{cacertfile, "\(caFile)"}, {certfile, "\(certFile)"}, {keyfile, "\(keyFile)"},
              {verify, verify_peer}, {fail_if_no_peer_cert, true},
              {crl_check, peer}, {crl_cache, {ssl_crl_cache, {internal, [{http, 5000}]}}}]}]}].

            """
        try advanced.write(toFile: "\(base)/advanced.config", atomically: true, encoding: .utf8)
        try "[rabbitmq_mqtt,rabbitmq_auth_backend_http,rabbitmq_management].\n".write(
            toFile: "\(base)/enabled_plugins", atomically: true, encoding: .utf8)
        environment = [
            "HOME": "\(base)/home", "RABBITMQ_NODENAME": nodeName, "RABBITMQ_CONFIG_FILE": "\(base)/rabbitmq", "RABBITMQ_ADVANCED_CONFIG_FILE": "\(base)/advanced.config",
            "RABBITMQ_ENABLED_PLUGINS_FILE": "\(base)/enabled_plugins", "RABBITMQ_MNESIA_BASE": "\(base)/mnesia",
            "RABBITMQ_LOG_BASE": "\(base)/log", "RABBITMQ_DIST_PORT": "\(distributionPort)",
            "ERL_EPMD_PORT": "\(epmdPort)", "RABBITMQ_PID_FILE": "\(base)/pid",
        ]
        process = try BackgroundProcess(
            [Self.serverScript], logPath: directory.file("rabbitmq.log"), environment: environment)
        // `await_startup` fails at once while the node is not yet registered with epmd: retry until it answers.
        let deadline = Date().addingTimeInterval(90)
        while true {
            let control = try await ExternalToolWithEnvironment.run(
                [Self.controlScript, "-n", nodeName, "await_startup", "--timeout", "60"], environment: environment)
            if control.succeeded { break }
            guard process.isRunning, Date() < deadline else {
                throw BrokerTestError("RabbitMQ did not start: \(control.stderr) \(process.log.suffix(2_000))")
            }
            try await Task.sleep(for: .seconds(1))
        }
        for arguments in [
            ["add_user", managementUser, managementPassword],
            ["set_user_tags", managementUser, "administrator"],
            ["set_permissions", "-p", "/", managementUser, ".*", ".*", ".*"],
        ] {
            let result = try await ExternalToolWithEnvironment.run(
                [Self.controlScript, "-n", nodeName] + arguments, environment: environment)
            guard result.succeeded else { throw BrokerTestError("rabbitmqctl \(arguments[0]) failed: \(result.stderr)") }
        }
        try await Loopback.waitUntilAccepting(mqttPort, timeout: 30, process: process)
    }

    var managementURL: String { "http://127.0.0.1:\(managementPort)" }

    /// The users of the node's open connections, from the management API (`rabbitmqctl list_connections` does
    /// not list MQTT connections in 3.10: they are direct connections behind the plugin).
    func connectedUsers() async throws -> [String] {
        let result = try await ExternalTool.runAsync([
            "curl", "-sf", "-u", "\(managementUser):\(managementPassword)",
            "\(managementURL)/api/connections?columns=user",
        ])
        guard result.succeeded else { throw BrokerTestError("GET /api/connections failed: \(result.stderr)") }
        let decoded = try JSONDecoder().decode([[String: String]].self, from: Data(result.stdout.utf8))
        return decoded.compactMap { $0["user"] }
    }

    func stop() async {
        _ = try? await ExternalToolWithEnvironment.run(
            [Self.controlScript, "-n", nodeName, "stop"], environment: environment)
        await process.stop(grace: 15)
        if let port = environment["ERL_EPMD_PORT"] {
            _ = try? await ExternalToolWithEnvironment.run(["epmd", "-port", port, "-kill"], environment: environment)
        }
    }
}

enum ExternalToolWithEnvironment {
    static func run(_ arguments: [String], environment: [String: String]) async throws -> ExternalTool.Result {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(
                    with: Result { try ExternalTool.run(arguments, environment: environment) })
            }
        }
    }
}
