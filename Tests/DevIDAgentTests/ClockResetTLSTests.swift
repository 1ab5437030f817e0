import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

@testable import DevIDAgent

#if canImport(Glibc)
    import Glibc
#endif

/// The server's TLS certificate is validated by the agent itself, at its corrected time (device clock + skew learnt
/// from `DevID-Time`), not by BoringSSL at the machine's clock (issue #5 part 5). Against the real server over real
/// TLS on loopback; the machine's real clock is "now" throughout, so every refusal below that depends on time can only
/// come from the agent's own (injected, corrected) time.
@Suite("the server's TLS certificate at the agent's corrected time")
struct ClockResetTLSTests {
    static let epoch = Date(timeIntervalSince1970: 0)

    @Test(
        "a device clock reset to 1970 enrolls with its IDevID and renews; a server certificate expired at the corrected time is refused"
    )
    func resetTo1970EnrollsAndRenews() async throws {
        // The server's certificate lives 40 (virtual) days: valid at the machine's real time throughout.
        try await withServer(serverTLSLifetime: 40 * day) { server in
            let local = ManualWallClock(Self.epoch)
            let device = try await TestDevice.enroll(server, name: "SN-RTC-1970", idevid: true, localClock: local)
            defer { device.remove() }
            #expect(try device.directory.identity()?.bootstrap == "idevid")
            #expect(local.now() == Self.epoch, "the device clock still reads 1970")

            let agent = try device.agent()
            let first = await agent.step()
            #expect(first.error == nil, "\(first)")
            #expect(first.change == nil)
            #expect(abs(agent.correctedNow.timeIntervalSince(server.clock.now())) < 1)

            let old = try device.current().certificate
            device.advance(21 * day + 3_600)
            let renewal = await agent.step()
            #expect(renewal.error == nil, "\(renewal)")
            #expect(renewal.change == .renewal)
            let renewed = try device.current()
            #expect(renewed.certificate != old)
            #expect(try await device.status(renewed.certificate, renewed.key).get().credentialStatus == .active)

            // 20 days on, the server's certificate has expired at the server's (and the agent's corrected) time,
            // though not at the machine's real clock nor at the device's 1970: the agent refuses the server.
            device.advance(20 * day)
            let before = Files.snapshot(device.stateDir)
            let refused = await agent.step()
            #expect(refused.error?.code == .tlsFailure, "\(refused)")
            #expect(
                refused.error?.reason.contains("the server's certificate has expired at the agent's time") == true,
                "\(String(describing: refused.error))")
            #expect(refused.change == nil)
            #expect(try device.current().certificate == renewed.certificate)
            #expect(Files.snapshot(device.stateDir)["cert.pem"] == before["cert.pem"])
        }
    }

    @Test(
        "a device at 1970 and a server certificate expired at the server's time: the time probe learns the time, the enrollment is refused, the token is not spent"
    )
    func resetTo1970ExpiredServerCertificate() async throws {
        try await withServer(serverTLSLifetime: 10 * day) { server in
            server.clock.advance(by: 11 * day)
            let secret = try await server.claimToken(device: "sensor-1970-expired")
            let local = ManualWallClock(Self.epoch)
            let serverClock = ServerClock(local: local)
            let state = try TemporaryDirectory(prefix: "devid-agent-state")
            defer { state.remove() }
            let dir = state.file("agent")

            let error = await #expect(throws: AgentError.self) {
                try await Enroller().enroll(
                    server: server.estURL, trustBundle: [server.hierarchy.root], stateDirectory: dir,
                    bootstrap: .token(secret, deviceID: "sensor-1970-expired"), clock: serverClock,
                    serverClock: serverClock)
            }
            #expect(error?.code == .tlsFailure)
            #expect(
                error?.reason.contains("the server's certificate has expired at the agent's time") == true,
                "\(String(describing: error))")
            // The probe taught the device the server's time; the strict check then refused the certificate.
            #expect(abs(serverClock.now().timeIntervalSince(server.clock.now())) < 2)
            #expect(!Files.exists(dir))
            try await expectTokenUnspent(server, device: "sensor-1970-expired")
        }
    }

    @Test("a device at 1970 whose clock NTP then sets: the skew learnt at 1970 is dropped, not added to the right time")
    func clockSetAfterSkewLearnt() async throws {
        try await withServer { server in
            let secret = try await server.claimToken(device: "sensor-ntp")
            let local = ManualWallClock(Self.epoch)
            let boot = ManualBoot()
            let serverClock = ServerClock(local: local, bootClock: boot.clock)
            let state = try TemporaryDirectory(prefix: "devid-agent-state")
            defer { state.remove() }
            // At 1970 the time probe teaches the device a skew of decades, and it enrolls.
            _ = try await Enroller().enroll(
                server: server.estURL, trustBundle: [server.hierarchy.root], stateDirectory: state.file("agent"),
                bootstrap: .token(secret, deviceID: "sensor-ntp"), clock: serverClock, serverClock: serverClock)
            let skew = try #require(serverClock.sample?.skew)
            #expect(skew > 50 * 365 * day)
            // Without a boot clock (a device whose clock is set the same way, before): the old skew thrown on the
            // right time puts the corrected time decades ahead, where the server's certificate has expired.
            let kept = ServerClock(local: local, known: serverClock.sample)

            // NTP sets the device clock to the right time, one second later by the time since boot.
            local.set(server.clock.now())
            boot.advance(1)
            #expect(abs(serverClock.now().timeIntervalSince(server.clock.now())) < 2, "the device clock alone counts")
            #expect(serverClock.sample == nil)
            let client = try ESTClient(baseURL: server.estURL, trustRoots: [server.hierarchy.root], serverClock: serverClock)
            _ = try await client.cacerts()
            try await client.shutdown()
            #expect(abs(serverClock.now().timeIntervalSince(server.clock.now())) < 2, "measured anew")

            let stale = try ESTClient(baseURL: server.estURL, trustRoots: [server.hierarchy.root], serverClock: kept)
            let error = await #expect(throws: AgentError.self) { try await stale.cacerts() }
            try await stale.shutdown()
            #expect(error?.reason.contains("the server's certificate has expired at the agent's time") == true)
        }
    }

    @Test("a skew is kept while the device clock runs with the time since boot, and across a reboot")
    func skewKeptWhileTheClockRuns() {
        let local = ManualWallClock(Self.epoch)
        let boot = ManualBoot()
        let clock = ServerClock(local: local, bootClock: boot.clock)
        clock.observe(serverTime: Self.epoch.addingTimeInterval(1_000_000), wholeSeconds: false)
        // A week on both clocks, with a minute of drift: the same skew.
        local.advance(by: 7 * day + 60)
        boot.advance(7 * day)
        #expect(clock.sample?.skew == 1_000_000)
        // A reboot (a new boot id) whose clock restarted at 1970 again: the skew still corrects it.
        boot.reboot()
        local.set(Self.epoch.addingTimeInterval(30))
        #expect(clock.sample?.skew == 1_000_000)
        // A step of more than two minutes against the time since boot, in the boot it was measured in: dropped.
        let fresh = ServerClock(local: local, bootClock: boot.clock)
        fresh.observe(serverTime: local.now().addingTimeInterval(3_600), wholeSeconds: false)
        local.advance(by: 600)
        boot.advance(1)
        #expect(fresh.sample == nil && fresh.skew == 0)
    }

    @Test(
        "a plausible device clock after the server certificate's expiry: refused, nothing sent; with its skew known, accepted"
    )
    func plausibleClockExpiredServerCertificate() async throws {
        try await withServer(serverTLSLifetime: 10 * day) { server in
            let secret = try await server.claimToken(device: "sensor-ahead")
            // 11 days ahead of the server: after every certificate's notBefore, so nothing says it is wrong.
            let local = ManualWallClock(server.clock.now().addingTimeInterval(11 * day))
            let state = try TemporaryDirectory(prefix: "devid-agent-state")
            defer { state.remove() }
            let dir = state.file("agent")

            let serverClock = ServerClock(local: local)
            let error = await #expect(throws: AgentError.self) {
                try await Enroller().enroll(
                    server: server.estURL, trustBundle: [server.hierarchy.root], stateDirectory: dir,
                    bootstrap: .token(secret, deviceID: "sensor-ahead"), clock: serverClock, serverClock: serverClock)
            }
            #expect(error?.code == .tlsFailure)
            #expect(error?.status == nil)
            #expect(
                error?.description.contains("the server's certificate has expired at the agent's time") == true,
                "\(String(describing: error))")
            #expect(serverClock.sample == nil, "no response was read")
            #expect(!Files.exists(dir))
            try await expectTokenUnspent(server, device: "sensor-ahead")

            // The same device clock with the skew it measured before: validates at the server's time and enrolls.
            let known = ServerClock(
                local: local, known: ServerClock.Sample(skew: -11 * day, measuredAt: local.now()))
            let enrolled = try await Enroller().enroll(
                server: server.estURL, trustBundle: [server.hierarchy.root], stateDirectory: dir,
                bootstrap: .token(secret, deviceID: "sensor-ahead"), clock: known, serverClock: known)
            #expect(enrolled.deviceID.rawValue == "sensor-ahead")
        }
    }

    @Test(
        "a server certificate that does not name the host: refused, also for a device at 1970",
        arguments: [false, true])
    func wrongHostname(reset: Bool) async throws {
        // The listener is on 127.0.0.2; its certificate names localhost and 127.0.0.1 only.
        try await withServer(estHost: "127.0.0.2") { server in
            let secret = try await server.claimToken(device: "sensor-name")
            let local = ManualWallClock(reset ? Self.epoch : server.clock.now())
            let serverClock = ServerClock(local: local)
            let state = try TemporaryDirectory(prefix: "devid-agent-state")
            defer { state.remove() }
            let dir = state.file("agent")

            let error = await #expect(throws: AgentError.self) {
                try await Enroller().enroll(
                    server: server.estURL, trustBundle: [server.hierarchy.root], stateDirectory: dir,
                    bootstrap: .token(secret, deviceID: "sensor-name"), clock: serverClock, serverClock: serverClock)
            }
            #expect(error?.code == .tlsFailure)
            #expect(
                error?.reason.contains("the server's certificate does not name 127.0.0.2") == true,
                "\(String(describing: error))")
            if reset { #expect(error?.reason.contains("time probe") == true, "refused in the probe already") }
            #expect(serverClock.sample == nil, "no response was read")
            #expect(!Files.exists(dir))
            try await expectTokenUnspent(server, device: "sensor-name")
        }
    }

    @Test(
        "a server chain that does not end in the trust bundle: refused, also for a device at 1970",
        arguments: [false, true])
    func foreignTrustBundle(reset: Bool) async throws {
        try await withServer { server in
            let other = try TestChain(clock: ManualWallClock(server.clock.now()))
            defer { other.directory.remove() }
            let local = ManualWallClock(reset ? Self.epoch : server.clock.now())
            let serverClock = ServerClock(local: local)
            let client = try ESTClient(
                baseURL: server.estURL, trustRoots: [other.hierarchy.root], serverClock: serverClock)
            let error = await #expect(throws: AgentError.self) { try await client.cacerts() }
            #expect(error?.code == .tlsFailure)
            #expect(
                error?.reason.contains("the server's certificate does not chain to the trust bundle") == true,
                "\(String(describing: error))")
            #expect(serverClock.sample == nil, "no response was read")
            #expect(client.lastServerTime == nil)
        }
    }

    @Test("a device at 1970 whose server's time is also before the floor: refused after the probe")
    func serverTimeBeforeFloor() async throws {
        try await withServer { server in
            // The device holds a trust bundle certificate issued 10 days after the server's clock (another CA),
            // but the server chains to its own root, also in the bundle.
            let later = try TestChain(clock: ManualWallClock(server.clock.now().addingTimeInterval(10 * day)))
            defer { later.directory.remove() }
            let serverClock = ServerClock(local: ManualWallClock(Self.epoch))
            let client = try ESTClient(
                baseURL: server.estURL, trustRoots: [server.hierarchy.root, later.hierarchy.root],
                serverClock: serverClock)
            #expect(client.timeFloor == later.hierarchy.root.notValidBefore)
            let error = await #expect(throws: AgentError.self) { try await client.cacerts() }
            #expect(error?.code == .tlsFailure)
            #expect(
                error?.reason.contains("the server's time did not correct it") == true, "\(String(describing: error))")
        }
    }

    @Test("the issuing CA alone as the trust bundle: every bundle certificate is a trust anchor")
    func issuingCAAsAnchor() async throws {
        try await withServer { server in
            let client = try ESTClient(baseURL: server.estURL, trustRoots: [server.hierarchy.issuing.certificate])
            let certificates = try await client.cacerts()
            #expect(certificates.contains(server.hierarchy.root))
            #expect(client.lastServerTime != nil)
        }
    }

    @Test("a listener that accepts TCP but never answers TLS: the handshake times out as a connection failure")
    func handshakeTimeout() async throws {
        // A listening socket nobody accepts from: the kernel completes TCP, no ServerHello ever comes.
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        #expect(fd >= 0)
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        #expect(bound == 0)
        #expect(listen(fd, 4) == 0)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        let port = Int(UInt16(bigEndian: address.sin_port))

        let chain = try TestChain()
        defer { chain.directory.remove() }
        let client = try ESTClient(
            baseURL: "https://127.0.0.1:\(port)", trustRoots: [chain.hierarchy.root],
            connectTimeout: .milliseconds(300), requestTimeout: .seconds(5))
        let error = await #expect(throws: AgentError.self) { try await client.cacerts() }
        #expect(error?.code == .connectionFailed)
        #expect(error?.reason == "TLS handshake with 127.0.0.1 timed out (cacerts)", "\(String(describing: error))")
        // The reason above proves that the handshake timer fired, not the 5 s request timeout. No wall-clock
        // bound: with the whole suite in parallel on 2 cores, CI saw this 300 ms timer's answer arrive after 25 s.
    }

    /// The token was not used: no credential, the device still `manufactured`, one use left.
    func expectTokenUnspent(_ server: AgentTestServer, device: String) async throws {
        let id = try DeviceID(device)
        #expect(try await server.store.credentials(device: id).isEmpty)
        #expect(try await server.store.device(id)?.state == .manufactured)
    }
}

/// ``ServerTrust`` on its own, with certificates from a test hierarchy (no network).
@Suite("the agent's check of the server's certificate")
struct ServerTrustTests {
    let chain: TestChain

    init() throws {
        chain = try TestChain()
    }

    var serverChain: [Certificate] { chain.hierarchy.serverChain }
    var leaf: Certificate { serverChain[0] }

    func trust(host: String = "127.0.0.1", holding: [Certificate] = []) -> ServerTrust {
        ServerTrust(roots: [chain.hierarchy.root], host: host, holding: holding)
    }

    @Test(
        "the server's chain at a time inside its validity, for its DNS name or IP address: trusted",
        arguments: ["127.0.0.1", "localhost"])
    func trusted(host: String) async throws {
        defer { chain.directory.remove() }
        #expect(await trust(host: host).evaluate(serverChain, mode: .strict(at: chain.clock.now())) == .trusted)
    }

    @Test("expired and not yet valid at the validation time: refused with the time in the reason")
    func outsideValidity() async throws {
        defer { chain.directory.remove() }
        let expired = await trust().evaluate(serverChain, mode: .strict(at: leaf.notValidAfter.addingTimeInterval(1)))
        guard case .untrusted(let reason) = expired else {
            Issue.record("expired accepted")
            return
        }
        #expect(reason.contains("has expired at the agent's time"))
        let early = await trust().evaluate(serverChain, mode: .strict(at: leaf.notValidBefore.addingTimeInterval(-1)))
        guard case .untrusted(let early) = early else {
            Issue.record("not yet valid accepted")
            return
        }
        #expect(early.contains("is not yet valid at the agent's time"))
    }

    @Test(
        "the time probe checks at max(floor, notBefore): it accepts a 1970 clock, never a certificate expired before the floor"
    )
    func probeTime() async throws {
        defer { chain.directory.remove() }
        let plain = trust()
        #expect(plain.timeFloor == chain.hierarchy.root.notValidBefore)
        #expect(plain.validationTime(.timeProbe, leaf: leaf) == leaf.notValidBefore)
        #expect(await plain.evaluate(serverChain, mode: .timeProbe) == .trusted)

        // The device holds a certificate issued after the server's expired: that server certificate is refused.
        let later = try TestChain(clock: ManualWallClock(leaf.notValidAfter.addingTimeInterval(day)))
        defer { later.directory.remove() }
        let (_, idevid) = try later.idevid()
        let floored = trust(holding: [idevid])
        #expect(floored.timeFloor == idevid.notValidBefore)
        let outcome = await floored.evaluate(serverChain, mode: .timeProbe)
        guard case .untrusted(let reason) = outcome else {
            Issue.record("probe accepted an expired chain")
            return
        }
        #expect(reason.contains("has expired"))
    }

    @Test("a wrong name, a foreign root, a device certificate as the server's, no certificate: refused")
    func refusals() async throws {
        defer { chain.directory.remove() }
        let now = chain.clock.now()
        guard
            case .untrusted(let name) = await trust(host: "est.example.com").evaluate(
                serverChain, mode: .strict(at: now))
        else {
            Issue.record("wrong name accepted")
            return
        }
        #expect(name == "the server's certificate does not name est.example.com")

        let other = try TestChain(clock: chain.clock)
        defer { other.directory.remove() }
        let foreign = ServerTrust(roots: [other.hierarchy.root], host: "127.0.0.1", holding: [])
        guard case .untrusted(let root) = await foreign.evaluate(serverChain, mode: .strict(at: now)) else {
            Issue.record("foreign chain accepted")
            return
        }
        #expect(root == "the server's certificate does not chain to the trust bundle")

        // An LDevID (clientAuth) that even names the host: not a server certificate.
        let key = try KeyMaterial.generate(.p256)
        let device = try chain.hierarchy.issuing.issue(
            subject: try DistinguishedName { CommonName("dev-1") }, publicKey: key.publicKey, profile: .ldevid,
            subjectAlternativeNames: [.ipAddress(ASN1OctetString(contentBytes: [127, 0, 0, 1]))], now: now)
        guard
            case .untrusted(let usage) = await trust().evaluate(
                [device, chain.hierarchy.issuing.certificate], mode: .strict(at: now))
        else {
            Issue.record("a device certificate accepted as the server's")
            return
        }
        #expect(usage.contains("not for TLS servers"))

        #expect(
            await trust().evaluate([], mode: .strict(at: now)) == .untrusted(reason: "the server sent no certificate"))
    }
}

/// A boot clock a test moves: its time since boot and its boot id.
final class ManualBoot: @unchecked Sendable {
    private let lock = NSLock()
    private var reading = BootClock.Reading(bootID: "boot-1", uptime: 10)

    var clock: BootClock { BootClock { [self] in lock.withLock { reading } } }

    func advance(_ seconds: TimeInterval) { lock.withLock { reading.uptime += seconds } }

    func reboot() {
        lock.withLock { reading = BootClock.Reading(bootID: reading.bootID + "'", uptime: 5) }
    }
}
