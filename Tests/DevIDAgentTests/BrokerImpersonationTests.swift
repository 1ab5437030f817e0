import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

@testable import DevIDAgent

#if canImport(Glibc)
    import Glibc
#endif

/// A broker's TLS certificate and key cannot impersonate the EST server (issue #12, finding 6).
///
/// A broker runs beside DevID, often on the same host, and its certificate names the same `localhost` and
/// `127.0.0.1`. Its key sits on the broker's machine. If devices took that certificate as the EST server's, whoever
/// holds a broker's key could answer every device's enrollment. The broker's certificate is what DevID really issues
/// for `devid serve --mosquitto-dir` (``BrokerCertificate/ensure(directory:names:services:now:revocation:record:)``), served by a real
/// TLS server (`openssl s_server`) on loopback, against the agent's real EST client.
@Suite("a broker certificate cannot stand in for the EST server")
struct BrokerImpersonationTests {
    @Test("the agent refuses a broker's certificate that names 127.0.0.1, before any request is sent")
    func agentRefusesBrokerCertificate() async throws {
        let chain = try TestChain()
        defer { chain.directory.remove() }
        let broker = try TemporaryDirectory(prefix: "devid-broker")
        defer { broker.remove() }
        let services = try #require(chain.hierarchy.services, "a new hierarchy has a services CA")
        var recorded: [Certificate] = []
        let issued = try await BrokerCertificate.ensure(
            directory: broker.path, names: ["127.0.0.1", "localhost"], services: services, now: chain.clock.now()
        ) { certificate in recorded.append(certificate) }
        #expect(issued != nil && recorded == [issued], "recorded before it was written")
        let certificatePath = broker.file(BrokerCertificate.certificateFile)

        let server = try FakeTLSServer(certificateChain: certificatePath, key: broker.file(BrokerCertificate.keyFile))
        defer { server.stop() }
        let serverClock = ServerClock(local: ManualWallClock(chain.clock.now()))
        let client = try ESTClient(
            baseURL: "https://127.0.0.1:\(server.port)", trustRoots: [chain.hierarchy.root], serverClock: serverClock)
        let error = await #expect(throws: AgentError.self) { try await client.cacerts() }
        #expect(error?.code == .tlsFailure, "\(String(describing: error))")
        #expect(
            error?.reason.contains("the server's certificate is not DevID's EST server certificate") == true,
            "\(String(describing: error))")
        #expect(serverClock.sample == nil, "no response was read")
        #expect(client.lastServerTime == nil)

        // The enrollment with a claim token stops there too: the token is never sent, nothing is written.
        let state = try TemporaryDirectory(prefix: "devid-agent-state")
        defer { state.remove() }
        let enrollError = await #expect(throws: AgentError.self) {
            try await Enroller().enroll(
                server: "https://127.0.0.1:\(server.port)", trustBundle: [chain.hierarchy.root],
                stateDirectory: state.file("agent"), bootstrap: .token("devid_ct_x_y", deviceID: "sensor-1"),
                clock: serverClock, serverClock: serverClock)
        }
        #expect(enrollError?.code == .tlsFailure)
        #expect(!FileManager.default.fileExists(atPath: state.file("agent")))
    }

    @Test("the broker chain is refused by the agent's check, DevID's own listener certificate is accepted")
    func serverTrustTellsThemApart() async throws {
        let chain = try TestChain()
        defer { chain.directory.remove() }
        let services = try #require(chain.hierarchy.services)
        let now = chain.clock.now()
        let key = try KeyMaterial.generate(.p256)
        let brokerLeaf = try services.issue(
            subject: try DistinguishedName { CommonName("127.0.0.1") }, publicKey: key.publicKey, profile: .serviceTLS,
            subjectAlternativeNames: [CAStore.generalName(forHost: "127.0.0.1")], now: now)
        let trust = ServerTrust(roots: [chain.hierarchy.root], host: "127.0.0.1", holding: [])
        #expect(await trust.evaluate(chain.hierarchy.serverChain, mode: .strict(at: now)) == .trusted)
        guard
            case .untrusted(let reason) = await trust.evaluate(
                [brokerLeaf, services.certificate], mode: .strict(at: now))
        else {
            Issue.record("a broker certificate accepted as the EST server's")
            return
        }
        #expect(reason.hasPrefix("the server's certificate is not DevID's EST server certificate"), "\(reason)")

        // Even a certificate of the services CA that claimed id-kp-cmcRA is refused: the services CA's own extended
        // key usage (serverAuth, clientAuth) does not allow it.
        let forged = try services.issue(
            subject: try DistinguishedName { CommonName("127.0.0.1") }, publicKey: key.publicKey, profile: .serverTLS,
            subjectAlternativeNames: [CAStore.generalName(forHost: "127.0.0.1")], now: now)
        guard case .untrusted(let forgedReason) = await trust.evaluate([forged, services.certificate], mode: .strict(at: now))
        else {
            Issue.record("a services-CA certificate with id-kp-cmcRA accepted as the EST server's")
            return
        }
        #expect(forgedReason.contains("a CA of the server's chain does not allow id-kp-cmcRA"), "\(forgedReason)")
    }
}

/// `openssl s_server` on a loopback port chosen by the kernel, presenting a certificate chain file.
final class FakeTLSServer: @unchecked Sendable {
    let process: SpawnedProcess
    let port: Int
    /// Its standard input: open while it runs, as a terminal would be.
    private let input = Pipe()

    init(certificateChain: String, key: String) throws {
        let out = Pipe()
        guard let null = FileHandle(forWritingAtPath: "/dev/null") else {
            throw AgentError(.invalidState, "/dev/null cannot be opened")
        }
        defer { try? null.close() }
        // posix_spawn, not Foundation's Process (SpawnedProcess says why).
        process = try SpawnedProcess(
            executable: "/usr/bin/env",
            arguments: [
                "openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", certificateChain, "-cert_chain",
                certificateChain, "-key", key, "-www",
            ],
            environment: ProcessInfo.processInfo.environment, stdin: input.fileHandleForReading.fileDescriptor,
            stdout: out.fileHandleForWriting.fileDescriptor,
            stderr: null.fileDescriptor)
        try? out.fileHandleForWriting.close()
        try? input.fileHandleForReading.close()
        // "ACCEPT 127.0.0.1:PORT" once listening (after a line about DH parameters).
        let handle = out.fileHandleForReading
        defer { try? handle.close() }
        var text = ""
        for _ in 0..<5 {
            var line: [UInt8] = []
            while let value = handle.readData(ofLength: 1).first, value != UInt8(ascii: "\n") { line.append(value) }
            text = String(decoding: line, as: UTF8.self)
            if text.hasPrefix("ACCEPT ") || line.isEmpty { break }
        }
        guard text.hasPrefix("ACCEPT "), let port = text.split(separator: ":").last.flatMap({ Int($0) }) else {
            process.signal(SIGKILL)
            process.waitUntilExit()
            throw AgentError(.invalidState, "openssl s_server did not start: \(text)")
        }
        self.port = port
    }

    /// SIGKILL: the test process may ignore SIGTERM, and a child inherits an ignored signal.
    func stop() {
        process.signal(SIGKILL)
        process.waitUntilExit()
        try? input.fileHandleForWriting.close()
    }
}
