import DevIDAgent
import DevIDCore
import DevIDServer
import DevIDTesting
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// `devid serve` as an operator runs it: the built executable as a child process on free loopback ports, driven by
/// the other `devid` commands from a fresh start to an enrolled device, then stopped with SIGINT and started again.
///
/// Every child runs in a temporary directory with `--data-dir` given and no inherited `DEVID_*` variables, so
/// nothing touches `./devid-data` or a server the developer runs. Every wait is bounded, and the server is killed
/// if the test fails or throws on the way.
@Suite("devid serve CLI", .serialized)
struct ServeCLITests {
    /// How long one CLI command may take before it is killed.
    static let commandTimeout: TimeInterval = 60
    /// How long a start may take (the first one creates the CA hierarchy).
    static let startTimeout: TimeInterval = 90

    @Test("a Mosquitto option without --mosquitto-dir is refused with one line, before anything is created")
    func mosquittoOptionsNeedTheDirectory() async throws {
        let work = try TemporaryDirectory(prefix: "devid-serve-flags")
        defer { work.remove() }
        for (option, value) in [
            ("--mosquitto-pid-file", "mosquitto.pid"), ("--mosquitto-port", "8883"),
            ("--mosquitto-broker-name", "mqtt.example.com"),
        ] {
            let result = try await Self.devid(
                ["serve", "--data-dir", work.file("data"), option, value], in: work.path)
            #expect(result.status == 1, "\(option): \(result.stdout) \(result.stderr)")
            #expect(result.stderr == "Error: \(option) needs --mosquitto-dir\n", "\(option): \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: work.file("data")), "\(option): nothing created")
        }
    }

    @Test("serve, mint, import, claim token, agent enroll and status, error path, SIGINT, restart", .timeLimit(.minutes(5)))
    func endToEnd() async throws {
        let work = try TemporaryDirectory(prefix: "devid-serve-cli")
        defer { work.remove() }
        let dataDir = work.file("data")

        // First start, at debug level so that the log can be checked for secrets too.
        let first = try ServeProcess.start(
            dataDir: dataDir, workingDirectory: work.path, environment: ["DEVID_LOG_LEVEL": "debug"])
        defer { first.kill() }
        let endpoints = try await first.waitUntilListening(timeout: Self.startTimeout)
        #expect(endpoints.estURL.hasPrefix("https://127.0.0.1:"))
        #expect(endpoints.opsURL.hasPrefix("http://127.0.0.1:"))

        // The first-start banner: root certificate, admin token, config, how to stop.
        let banner = try await first.waitForStdout(containing: "Stop with Ctrl-C", timeout: 30)
        let adminToken = try String(contentsOfFile: "\(dataDir)/secrets/admin-token", encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(adminToken.hasPrefix("devid_adm_"))
        #expect(banner.hasPrefix("DevID first start in \(dataDir)\n"), "\(banner)")
        #expect(banner.contains("  root certificate: \(dataDir)/ca/root.crt"), "\(banner)")
        #expect(banner.contains("  admin token:      \(adminToken)\n"), "\(banner)")
        #expect(banner.contains("\(dataDir)/secrets/admin-token"), "\(banner)")
        #expect(banner.contains("  config:           no file"), "\(banner)")
        #expect(banner.contains("EST (mTLS):  \(endpoints.estURL)/.well-known/est"), "\(banner)")
        #expect(banner.contains("Operations:  \(endpoints.opsURL)"), "\(banner)")
        #expect(banner.contains("Stop with Ctrl-C (SIGINT) or SIGTERM"), "\(banner)")

        // `ca show` reads the data directory: root P-384, issuing P-256.
        let caShow = try await Self.devid(["ca", "show", "--data-dir", dataDir, "--json"], in: work.path)
        try #require(caShow.succeeded, "\(caShow)")
        let ca = try #require(try JSONSerialization.jsonObject(with: Data(caShow.stdout.utf8)) as? [String: Any])
        let certificates = try #require(ca["certificates"] as? [[String: Any]])
        let keyTypes = Dictionary(
            certificates.compactMap { entry in (entry["role"] as? String).map { ($0, entry["keyType"] as? String) } },
            uniquingKeysWith: { first, _ in first })
        #expect(keyTypes["root"] == "ECDSA P-384", "\(caShow.stdout)")
        #expect(keyTypes["issuing"] == "ECDSA P-256", "\(caShow.stdout)")
        #expect(ca["trustDomain"] as? String == "devid.local")

        let tenant = try await Self.devid(["tenant", "create", "acme", "--data-dir", dataDir], in: work.path)
        try #require(tenant.succeeded, "\(tenant)")
        #expect(tenant.stdout == "created tenant acme\n")

        // A lot of three IDevIDs, registered as the allowlist.
        let lotDir = work.file("lot-L1")
        let mint = try await Self.devid(
            ["factory", "mint", "--data-dir", dataDir, "--lot", "L1", "--tenant", "acme", "--count", "3", "--out", lotDir],
            in: work.path)
        try #require(mint.succeeded, "\(mint)")
        #expect(mint.stdout.contains("minted 3 IDevIDs for lot L1 (tenant acme)"), "\(mint.stdout)")
        for file in ["idevid.key", "idevid.crt", "chain.pem"] {
            #expect(FileManager.default.fileExists(atPath: "\(lotDir)/L1-000001/\(file)"), "\(file)")
        }

        let importResult = try await Self.devid(
            ["device", "import", "\(lotDir)/manifest.json", "--data-dir", dataDir], in: work.path)
        try #require(importResult.succeeded, "\(importResult)")
        #expect(importResult.stdout == "lot L1: 3 devices registered, 0 already present\n")

        let list = try await Self.devid(["device", "list", "--json", "--data-dir", dataDir], in: work.path)
        try #require(list.succeeded, "\(list)")
        let devices = try #require(try JSONSerialization.jsonObject(with: Data(list.stdout.utf8)) as? [[String: Any]])
        #expect(devices.count == 3, "\(list.stdout)")
        #expect(devices.allSatisfy { $0["state"] as? String == "manufactured" }, "\(list.stdout)")
        #expect(Set(devices.compactMap { $0["id"] as? String }) == ["L1-000001", "L1-000002", "L1-000003"])

        // A claim token for a device that has no IDevID; its secret is in the JSON once.
        let token = try await Self.devid(
            ["token", "create", "--tenant", "acme", "--device", "sensor-9", "--json", "--data-dir", dataDir],
            in: work.path)
        try #require(token.succeeded, "\(token)")
        let created = try #require(try JSONSerialization.jsonObject(with: Data(token.stdout.utf8)) as? [String: Any])
        let secret = try #require(created["token"] as? String)
        #expect(secret.hasPrefix("devid_ct_"))
        #expect((created["id"] as? String)?.hasPrefix("ct_") == true)
        #expect(created["device"] as? String == "sensor-9")

        // The agent enrolls with it, trusting the root alone (the issuing CA comes from /cacerts).
        let rootCertificate = "\(dataDir)/ca/root.crt"
        let stateDir = work.file("dev9")
        let enroll = try await Self.devid(
            [
                "agent", "enroll", "--server", endpoints.estURL, "--trust-bundle", rootCertificate,
                "--state-dir", stateDir, "--token", secret, "--device", "sensor-9",
            ], in: work.path)
        try #require(enroll.succeeded, "\(enroll)")
        #expect(enroll.stdout.hasPrefix("enrolled device sensor-9 (tenant acme)\n"), "\(enroll.stdout)")
        #expect(!enroll.stdout.contains(secret))

        let status = try await Self.devid(["agent", "status", "--state-dir", stateDir, "--json"], in: work.path)
        try #require(status.succeeded, "\(status)")
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        let identity = try decoder.decode(IdentityStatus.self, from: Data(status.stdout.utf8))
        #expect(identity.state == .valid)
        #expect(identity.deviceID?.rawValue == "sensor-9")
        #expect(identity.tenant?.rawValue == "acme")
        #expect(identity.keyMatchesCertificate == true)
        #expect(identity.serverURL == endpoints.estURL)

        // The single-use token is spent.
        let again = try await Self.devid(
            [
                "agent", "enroll", "--server", endpoints.estURL, "--trust-bundle", rootCertificate,
                "--state-dir", work.file("dev9-again"), "--token", secret, "--device", "sensor-9",
            ], in: work.path)
        #expect(!again.succeeded)
        #expect(again.stderr == "Error: enrollment failed: simpleenroll refused with HTTP 403: claim token used up\n")

        // A minted IDevID enrolls too, and its device becomes active.
        let idevidEnroll = try await Self.devid(
            [
                "agent", "enroll", "--server", endpoints.estURL, "--trust-bundle", rootCertificate,
                "--state-dir", work.file("dev1"), "--idevid-cert", "\(lotDir)/L1-000001/chain.pem",
                "--idevid-key", "\(lotDir)/L1-000001/idevid.key",
            ], in: work.path)
        try #require(idevidEnroll.succeeded, "\(idevidEnroll)")
        #expect(idevidEnroll.stdout.hasPrefix("enrolled device L1-000001 (tenant acme)\n"), "\(idevidEnroll.stdout)")
        let active = try await Self.devid(
            ["device", "list", "--state", "active", "--json", "--data-dir", dataDir], in: work.path)
        try #require(active.succeeded, "\(active)")
        let activeIDs = try #require(
            try JSONSerialization.jsonObject(with: Data(active.stdout.utf8)) as? [[String: Any]]
        ).compactMap { $0["id"] as? String }
        #expect(Set(activeIDs) == ["L1-000001", "sensor-9"], "\(active.stdout)")

        // An unreachable server: non-zero exit, exactly one line on stderr, nothing on stdout.
        let unreachable = try await Self.devid(
            ["tenant", "list", "--server", "http://127.0.0.1:1", "--data-dir", dataDir], in: work.path)
        #expect(unreachable.status != 0)
        #expect(unreachable.stdout.isEmpty, "\(unreachable.stdout)")
        let errorLines = unreachable.stderr.split(separator: "\n", omittingEmptySubsequences: false)
        #expect(errorLines.count == 2 && errorLines[1].isEmpty, "\(unreachable.stderr)")
        // The system's words, not NIO's internals ("connection reset (error set): Connection refused) (errno: 111)").
        #expect(unreachable.stderr == "Error: cannot reach http://127.0.0.1:1: connection refused\n", "\(unreachable.stderr)")

        // SIGINT: graceful stop, status 0, "DevID stopped.".
        let stopped = try await first.interrupt(timeout: 30)
        #expect(stopped.exitedNormally && stopped.status == 0, "\(stopped)")
        let firstOutput = first.stdout()
        #expect(firstOutput.hasSuffix("DevID stopped.\n"), "\(firstOutput)")
        // Debug logging shows neither the admin token nor key material.
        let log = first.stderr()
        let tokenSecret = String(adminToken.split(separator: "_").last ?? "")
        #expect(!tokenSecret.isEmpty && !log.contains(tokenSecret), "admin token in the debug log")
        #expect(!log.contains(secret), "claim token in the debug log")
        #expect(!log.contains("PRIVATE"), "key material in the debug log")

        // A second start on the same data directory: no first-start banner, no token.
        let second = try ServeProcess.start(dataDir: dataDir, workingDirectory: work.path)
        defer { second.kill() }
        let restarted = try await second.waitUntilListening(timeout: Self.startTimeout)
        let secondBanner = try await second.waitForStdout(containing: "Stop with Ctrl-C", timeout: 30)
        #expect(secondBanner.hasPrefix("DevID starting in \(dataDir)\n"), "\(secondBanner)")
        #expect(!secondBanner.contains("first start in"), "\(secondBanner)")
        #expect(!secondBanner.contains(adminToken), "\(secondBanner)")
        #expect(!secondBanner.contains("CA passphrase:"), "\(secondBanner)")
        #expect(secondBanner.contains("  admin token:      created on first start"), "\(secondBanner)")
        #expect(secondBanner.contains("EST (mTLS):  \(restarted.estURL)/.well-known/est"), "\(secondBanner)")

        // The registry survived the restart.
        let tenants = try await Self.devid(["tenant", "list", "--json", "--data-dir", dataDir], in: work.path)
        try #require(tenants.succeeded, "\(tenants)")
        #expect(tenants.stdout.contains("\"acme\""), "\(tenants.stdout)")

        let secondStop = try await second.interrupt(timeout: 30)
        #expect(secondStop.exitedNormally && secondStop.status == 0, "\(secondStop)")
        #expect(second.stdout().hasSuffix("DevID stopped.\n"))
    }

    // MARK: - Running the executable

    /// The `devid` executable next to the test binary (SwiftPM builds every product before running tests), else
    /// `.build/debug/devid`; found the way `AgentCLITests` finds it. `DEVID_TEST_EXECUTABLE` names another build to
    /// test (a release build, say).
    static func executable() throws -> String {
        var candidates: [String] = []
        if let override = ProcessInfo.processInfo.environment["DEVID_TEST_EXECUTABLE"], !override.isEmpty {
            candidates.append(override)
        }
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

    /// The test's environment without `DEVID_*` (a developer's `DEVID_SERVER` or `DEVID_ADMIN_TOKEN` must not
    /// redirect the commands), plus `extra`.
    static func environment(_ extra: [String: String] = [:]) -> [String: String] {
        ProcessInfo.processInfo.environment.filter { !$0.key.hasPrefix("DEVID_") }.merging(extra) { $1 }
    }

    struct CommandResult: Sendable, CustomStringConvertible {
        var status: Int32
        var stdout: String
        var stderr: String
        var timedOut: Bool
        var succeeded: Bool { status == 0 && !timedOut }
        var description: String {
            "exit \(status)\(timedOut ? " (killed after timeout)" : ""); stdout: \(stdout); stderr: \(stderr)"
        }
    }

    /// Runs `devid arguments` to completion, killed after `timeout` seconds, on a thread of its own so the
    /// cooperative pool is not blocked.
    static func devid(
        _ arguments: [String], in directory: String, timeout: TimeInterval = commandTimeout,
        environment extra: [String: String] = [:]
    ) async throws -> CommandResult {
        let path = try executable()
        return try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(
                    with: Result { try runBlocking(path, arguments, in: directory, timeout: timeout, environment: extra) })
            }
        }
    }

    private static func runBlocking(
        _ path: String, _ arguments: [String], in directory: String, timeout: TimeInterval,
        environment extra: [String: String] = [:]
    ) throws -> CommandResult {
        let out = Pipe.closeOnExec()
        let err = Pipe.closeOnExec()
        guard let null = FileHandle(forReadingAtPath: "/dev/null") else { throw ServeError("cannot open /dev/null") }
        // posix_spawn, not Foundation's `Process`: its launch can crash the test process at the suite's descriptor
        // peak (``SpawnedProcess``).
        let process: SpawnedProcess
        do {
            defer { try? null.close() }
            process = try SpawnedProcess(
                executable: path, arguments: arguments, environment: environment(extra), directory: directory,
                stdin: null.fileDescriptor, stdout: out.fileHandleForWriting.fileDescriptor,
                stderr: err.fileHandleForWriting.fileDescriptor)
        }
        try? out.fileHandleForWriting.close()
        try? err.fileHandleForWriting.close()

        let pid = process.processIdentifier
        let killed = Flag()
        let watchdog = DispatchWorkItem {
            killed.set()
            sendSignal(pid, SIGKILL)
        }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: watchdog)

        // Both pipes are drained at once, so a chatty child cannot fill one and block.
        let errorOutput = Collected()
        let errorHandle = err.fileHandleForReading
        let drained = DispatchGroup()
        drained.enter()
        DispatchQueue.global().async {
            errorOutput.set(errorHandle.readDataToEndOfFile())
            drained.leave()
        }
        let standardOutput = out.fileHandleForReading.readDataToEndOfFile()
        drained.wait()
        let status = process.waitUntilExit()
        watchdog.cancel()
        return CommandResult(
            status: status, stdout: String(decoding: standardOutput, as: UTF8.self),
            stderr: String(decoding: errorOutput.get(), as: UTF8.self), timedOut: killed.isSet)
    }

    final class Flag: @unchecked Sendable {
        private let lock = NSLock()
        private var value = false
        func set() { lock.withLock { value = true } }
        var isSet: Bool { lock.withLock { value } }
    }

    final class Collected: @unchecked Sendable {
        private let lock = NSLock()
        private var data = Data()
        func set(_ data: Data) { lock.withLock { self.data = data } }
        func get() -> Data { lock.withLock { data } }
    }
}

/// A running `devid serve --data-dir DIR --est-port 0 --ops-port 0`, its stdout and stderr going to files.
final class ServeProcess: @unchecked Sendable {
    struct Exit: Sendable, CustomStringConvertible {
        var status: Int32
        var exitedNormally: Bool
        var description: String { exitedNormally ? "exit \(status)" : "killed by signal \(status)" }
    }

    let process: SpawnedProcess
    let dataDir: String
    let stdoutPath: String
    let stderrPath: String

    private init(process: SpawnedProcess, dataDir: String, stdoutPath: String, stderrPath: String) {
        self.process = process
        self.dataDir = dataDir
        self.stdoutPath = stdoutPath
        self.stderrPath = stderrPath
    }

    /// - Parameter launcher: a command that runs `devid serve ...` for us, e.g. `unshare ... sh -c '... exec "$@"' sh`
    ///   (the fault tests' size-limited filesystem in a mount namespace); it must `exec`, so that the pid stays the
    ///   server's. `dataDir` is then read back through `/proc/PID/root`, the server's view of the filesystem.
    static func start(
        dataDir: String, workingDirectory: String, environment: [String: String] = [:], launcher: [String] = [],
        estPort: Int = 0, opsPort: Int = 0
    ) throws -> ServeProcess {
        let stamp = UUID().uuidString.prefix(8)
        let stdoutPath = "\(workingDirectory)/serve-\(stamp).out"
        let stderrPath = "\(workingDirectory)/serve-\(stamp).err"
        for path in [stdoutPath, stderrPath] {
            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                throw ServeError("cannot create \(path)")
            }
        }
        let serve = ["serve", "--data-dir", dataDir, "--est-port", "\(estPort)", "--ops-port", "\(opsPort)"]
        let executable = launcher.isEmpty ? try ServeCLITests.executable() : "/usr/bin/env"
        let arguments = launcher.isEmpty ? serve : launcher + [try ServeCLITests.executable()] + serve
        guard let null = FileHandle(forReadingAtPath: "/dev/null"),
            let stdout = FileHandle(forWritingAtPath: stdoutPath), let stderr = FileHandle(forWritingAtPath: stderrPath)
        else { throw ServeError("cannot open the server's standard streams") }
        defer {
            for handle in [null, stdout, stderr] { try? handle.close() }
        }
        let process = try SpawnedProcess(
            executable: executable, arguments: arguments, environment: ServeCLITests.environment(environment),
            directory: workingDirectory, stdin: null.fileDescriptor, stdout: stdout.fileDescriptor,
            stderr: stderr.fileDescriptor)
        let observed = launcher.isEmpty ? dataDir : "/proc/\(process.processIdentifier)/root\(dataDir)"
        return ServeProcess(process: process, dataDir: observed, stdoutPath: stdoutPath, stderrPath: stderrPath)
    }

    func stdout() -> String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    func stderr() -> String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// Waits until `DATA/server.json` names this process (a previous run leaves its own file behind).
    func waitUntilListening(timeout: TimeInterval) async throws -> ServerEndpoints {
        let deadline = Date().addingTimeInterval(timeout)
        let pid = process.processIdentifier
        while Date() < deadline {
            if let data = FileManager.default.contents(atPath: "\(dataDir)/server.json"),
                let endpoints = try? JSONDecoder().decode(ServerEndpoints.self, from: data), endpoints.pid == pid
            {
                return endpoints
            }
            guard process.isRunning else {
                throw ServeError("devid serve exited with \(process.terminationStatus) before listening: \(stderr())")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ServeError("devid serve did not write server.json within \(Int(timeout)) s; stderr: \(stderr())")
    }

    /// Waits until stdout contains `text` and returns all of stdout.
    func waitForStdout(containing text: String, timeout: TimeInterval) async throws -> String {
        let deadline = Date().addingTimeInterval(timeout)
        while Date() < deadline {
            let output = stdout()
            if output.contains(text) { return output }
            guard process.isRunning else { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        throw ServeError("devid serve stdout has no \"\(text)\" after \(Int(timeout)) s: \(stdout())")
    }

    /// Sends SIGINT and waits for the exit; kills the process and throws if it takes longer than `timeout`.
    func interrupt(timeout: TimeInterval) async throws -> Exit {
        process.signal(SIGINT)
        let deadline = Date().addingTimeInterval(timeout)
        while process.isRunning {
            guard Date() < deadline else {
                kill()
                throw ServeError("devid serve did not stop within \(Int(timeout)) s of SIGINT")
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        return Exit(status: process.terminationStatus, exitedNormally: process.terminationReason == .exit)
    }

    /// SIGKILL if still running, and reap it; safe to call more than once.
    func kill() {
        guard process.isRunning else { return }
        process.signal(SIGKILL)
        process.waitUntilExit()
    }
}

/// `kill(2)`, under a name that the `kill()` method above does not shadow.
private func sendSignal(_ pid: pid_t, _ signal: Int32) {
    _ = kill(pid, signal)
}

struct ServeError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
