import DevIDAgent
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Testing
import X509

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#endif

/// `devid agent run` as a process: the real clock on the device side (corrected to the server's manual clock through
/// `DevID-Time`), a real `kill -9`.
@Suite("devid agent run", .serialized)
struct AgentRunCLITests {
    /// Enrolls `device` with the CLI; returns the state directory.
    static func enroll(
        _ server: AgentTestServer, _ work: TemporaryDirectory, device: String, onRotate: String?
    ) async throws -> String {
        let secret = try await server.claimToken()
        let tokenFile = try work.write("token", secret + "\n")
        let stateDir = work.file("state")
        var arguments = [
            "agent", "enroll", "--server", server.estURL, "--trust-bundle", server.layout.rootCertificate,
            "--state-dir", stateDir, "--token-file", tokenFile, "--device", device,
        ]
        if let onRotate { arguments += ["--on-rotate", onRotate] }
        let enroll = try await AgentCLITests.run(arguments)
        try #require(enroll.succeeded, "\(enroll.stderr)")
        return stateDir
    }

    @Test("enroll writes agent.json; run --once checks in and logs one structured line; status shows the agent state")
    func runOnce() async throws {
        try await withServer { server in
            let work = try TemporaryDirectory(prefix: "devid-agent-run")
            defer { work.remove() }
            let stateDir = try await Self.enroll(server, work, device: "sensor-once", onRotate: "true")
            let saved = try #require(try AgentConfiguration.load(stateDirectory: stateDir))
            #expect(saved.serverURL == server.estURL)
            #expect(saved.onRotate == "true")
            #expect(saved.idevidCertificate == nil)

            let once = try await AgentCLITests.run(["agent", "run", "--state-dir", stateDir, "--once"])
            #expect(once.succeeded, "\(once.stderr)")
            #expect(once.stderr.contains("result=scheduled"), "\(once.stderr)")
            #expect(once.stderr.contains("steps=check-in"), "\(once.stderr)")

            let status = try await AgentCLITests.run(["agent", "status", "--state-dir", stateDir])
            #expect(status.succeeded, "\(status.stderr)")
            #expect(status.stdout.contains("scheduled "), "\(status.stdout)")
            #expect(status.stdout.contains("skew:     "))
            #expect(status.stdout.contains("check-in: last"))
            #expect(!status.stdout.contains("previous:"))
        }
    }

    @Test("run --once without a server: exits non-zero with the reason; backoff is recorded")
    func runOnceUnreachable() async throws {
        try await withServer { server in
            let work = try TemporaryDirectory(prefix: "devid-agent-run")
            defer { work.remove() }
            let stateDir = try await Self.enroll(server, work, device: "sensor-down", onRotate: nil)
            let once = try await AgentCLITests.run([
                "agent", "run", "--state-dir", stateDir, "--once", "--server", "https://127.0.0.1:1",
            ])
            #expect(!once.succeeded)
            #expect(once.stderr.contains("could not reach 127.0.0.1"), "\(once.stderr)")
            #expect(try AgentMemory.load(AgentStateDirectory(path: stateDir)).failures == 1)
            let status = try await AgentCLITests.run(["agent", "status", "--state-dir", stateDir])
            #expect(status.stdout.contains("failures: 1 in a row"), "\(status.stdout)")
        }
    }

    @Test("kill -9 of `devid agent run` while its reload hook runs: a working identity, and the restart finishes")
    func sigkill() async throws {
        try await withServer { server in
            let work = try TemporaryDirectory(prefix: "devid-agent-kill")
            defer { work.remove() }
            let pidFile = work.file("hook.pid")
            let stateDir = try await Self.enroll(
                server, work, device: "sensor-kill", onRotate: "echo $$ > '\(pidFile)'; exec sleep 120")
            let directory = AgentStateDirectory(path: stateDir)
            let old = try #require(try directory.certificate())
            // The server's clock moves 21 days on; the agent's real clock does not, and it learns the skew.
            server.clock.advance(by: 21 * day + 3_600)

            let log = work.file("agent.log")
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            let logHandle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
            // posix_spawn, not Foundation's `Process` (``SpawnedProcess``).
            let process = try SpawnedProcess.start(
                try AgentCLITests.executable(), ["agent", "run", "--state-dir", stateDir, "--log-level", "debug"],
                stdout: logHandle, stderr: logHandle)
            var hookPID: pid_t?
            defer {
                if process.isRunning { process.signal(SIGKILL) }
                if let hookPID { kill(hookPID, SIGKILL) }
            }

            // Wait until the hook runs: the new identity is installed, the old one kept, not yet confirmed.
            let deadline = ContinuousClock.now + .seconds(60)
            while hookPID == nil, ContinuousClock.now < deadline, process.isRunning {
                try await Task.sleep(for: .milliseconds(50))
                hookPID = FileManager.default.contents(atPath: pidFile).flatMap {
                    pid_t(String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines))
                }
            }
            try #require(hookPID != nil, "the reload hook never ran: \((try? Files.text(log)) ?? "")")
            #expect(kill(process.processIdentifier, SIGKILL) == 0)
            while process.isRunning { try await Task.sleep(for: .milliseconds(20)) }
            #expect(process.terminationReason == .uncaughtSignal && process.terminationStatus == SIGKILL)
            try? logHandle.close()

            // (1) A working identity: a matching pair, the new one, accepted by the server; the old one kept.
            let certificate = try #require(try directory.certificate())
            let key = try #require(try directory.privateKey())
            #expect(key.publicKey == certificate.publicKey)
            #expect(certificate != old)
            let previous = IdentitySlot(.previous, in: directory)
            #expect(try previous.certificate() == old)
            #expect(try AgentMemory.load(directory).reloadPending, "the hook was killed before it finished")
            let client = try ESTClient(
                baseURL: server.estURL, trustRoots: [server.hierarchy.root],
                clientIdentity: .init(certificateChain: [certificate], privateKey: key))
            let accepted = try? await client.deviceStatus()
            try? await client.shutdown()
            #expect(accepted?.credentialStatus == .active)

            let status = try await AgentCLITests.run(["agent", "status", "--state-dir", stateDir])
            #expect(status.stdout.contains("previous: complete, serial \(old.devidSerial)"), "\(status.stdout)")

            // (2) The restart runs the pending hook, confirms, forgets the old identity.
            let rerun = work.file("rerun.log")
            let once = try await AgentCLITests.run([
                "agent", "run", "--state-dir", stateDir, "--once", "--on-rotate", "echo $DEVID_SERIAL >> '\(rerun)'",
            ])
            #expect(once.succeeded, "\(once.stderr)")
            #expect(once.stderr.contains("steps=reload,confirm,forget"), "\(once.stderr)")
            #expect(try Files.text(rerun) == certificate.devidSerial.rawValue + "\n")
            #expect(!previous.exists)
            #expect(try directory.certificate() == certificate)
            let stored = try await server.store.credential(serial: certificate.devidSerial)
            #expect(stored?.status == .active && stored?.confirmedAt != nil)
            #expect(try await server.store.credential(serial: old.devidSerial)?.status == .superseded)
        }
    }
}
