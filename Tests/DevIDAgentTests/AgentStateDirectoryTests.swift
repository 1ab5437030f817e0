import DevIDAgent
import DevIDCore
import DevIDPKI
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

/// The state directory's crash safety, by leaving it in the state a crash after each step of an install would leave,
/// then reading it (without writing) and recovering it.
@Suite("agent state directory")
struct AgentStateDirectoryTests {
    let chain: TestChain

    init() throws {
        chain = try TestChain()
    }

    /// A complete installation for `device`, from the test hierarchy.
    func installation(_ device: String) throws -> AgentStateDirectory.Installation {
        let (key, pkcs8) = try KeyMaterial.generateWithDER(.p256)
        let certificate = try chain.hierarchy.issuing.issueLDevID(
            device: DeviceID(device), tenant: TenantID("acme"), trustDomain: chain.hierarchy.trustDomain,
            publicKey: key.publicKey, now: chain.clock.now())
        let identity = try EnrolledIdentity(
            certificate: certificate, serverURL: "https://127.0.0.1:8443", bootstrap: "claim-token",
            enrolledAt: chain.clock.now(), serverDate: nil)
        return AgentStateDirectory.Installation(
            keyPKCS8: pkcs8, certificate: certificate,
            chain: [certificate, chain.hierarchy.issuing.certificate, chain.hierarchy.root],
            trustBundle: [chain.hierarchy.root], identity: identity)
    }

    /// Writes the files of `installation` as `install` does, stopping after `step`:
    /// 2 = every `.next` file written, 3 = `cert.pem` replaced (committed), 4.1 = trust and chain renamed.
    func partialInstall(
        _ installation: AgentStateDirectory.Installation, in directory: AgentStateDirectory, step: Double
    )
        throws
    {
        try directory.create()
        let keyPEM = PEMDocument(type: "PRIVATE KEY", derBytes: installation.keyPKCS8).pemString + "\n"
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        try SecureFile.write(
            Array(PEM.bundle(installation.trustBundle).utf8), to: directory.pendingPath(.trust), mode: 0o644)
        try SecureFile.write(Array(PEM.bundle(installation.chain).utf8), to: directory.pendingPath(.chain), mode: 0o644)
        try SecureFile.write(
            Array(try encoder.encode(installation.identity)), to: directory.pendingPath(.identity), mode: 0o644)
        try SecureFile.write(Array(keyPEM.utf8), to: directory.pendingPath(.key), mode: 0o600)
        guard step >= 3 else { return }
        try SecureFile.write(
            Array(PEM.bundle([installation.certificate]).utf8), to: directory.path(.certificate), mode: 0o644)
        guard step >= 4 else { return }
        for file in [AgentStateDirectory.File.trust, .chain] {
            #expect(rename(directory.pendingPath(file), directory.path(file)) == 0)
        }
    }

    func expectPair(
        _ directory: AgentStateDirectory, is installation: AgentStateDirectory.Installation,
        sourceLocation: SourceLocation = #_sourceLocation
    ) throws {
        let certificate = try #require(try directory.certificate(), sourceLocation: sourceLocation)
        let key = try #require(try directory.privateKey(), sourceLocation: sourceLocation)
        #expect(certificate == installation.certificate, sourceLocation: sourceLocation)
        #expect(key.publicKey == certificate.publicKey, sourceLocation: sourceLocation)
        #expect(try directory.identity() == installation.identity, sourceLocation: sourceLocation)
        #expect(try directory.chain()?.first == installation.certificate, sourceLocation: sourceLocation)
        let status = try IdentityStatus.read(stateDirectory: directory.path, clock: chain.clock)
        #expect(status.keyMatchesCertificate == true, sourceLocation: sourceLocation)
        #expect(status.serial == installation.certificate.devidSerial, sourceLocation: sourceLocation)
        #expect(status.enrolledAt == installation.identity.enrolledAt, sourceLocation: sourceLocation)
    }

    @Test("install writes every file, the key 0600 and the directory 0700, and leaves no staging file")
    func install() throws {
        let temporary = try TemporaryDirectory(prefix: "devid-agent-dir")
        defer {
            temporary.remove()
            chain.directory.remove()
        }
        let directory = AgentStateDirectory(path: temporary.file("a/b/state/"))
        let first = try installation("dev-1")
        try directory.install(first)
        try expectPair(directory, is: first)
        #expect(directory.path == temporary.file("a/b/state"))
        #expect(try Files.mode(directory.path) == 0o700)
        #expect(try Files.mode(directory.path(.key)) == 0o600)
        #expect(try Files.mode(directory.path(.certificate)) == 0o644)
        #expect(Set(Files.snapshot(directory.path).keys) == Set(AgentStateDirectory.File.allCases.map(\.rawValue)))

        let second = try installation("dev-1")
        try directory.install(second)
        try expectPair(directory, is: second)
    }

    @Test("a crash before the commit point: the old pair stays, recovery discards the staged files")
    func crashBeforeCommit() throws {
        let temporary = try TemporaryDirectory(prefix: "devid-agent-dir")
        defer {
            temporary.remove()
            chain.directory.remove()
        }
        let directory = AgentStateDirectory(path: temporary.file("state"))
        let old = try installation("dev-1")
        try directory.install(old)
        try partialInstall(try installation("dev-1"), in: directory, step: 2)
        // An orphaned SecureFile temporary file, as a crash inside a write leaves.
        _ = FileManager.default.createFile(
            atPath: temporary.file("state/.cert.pem.0123abcd.tmp"), contents: Data("x".utf8))

        try expectPair(directory, is: old)
        try directory.recover()
        try expectPair(directory, is: old)
        #expect(Set(Files.snapshot(directory.path).keys) == Set(AgentStateDirectory.File.allCases.map(\.rawValue)))
    }

    @Test("a crash after the commit point: the new pair is read at once, recovery finishes the install")
    func crashAfterCommit() throws {
        for step in [3.0, 4.0] {
            let temporary = try TemporaryDirectory(prefix: "devid-agent-dir")
            defer { temporary.remove() }
            let directory = AgentStateDirectory(path: temporary.file("state"))
            try directory.install(try installation("dev-1"))
            let new = try installation("dev-1")
            try partialInstall(new, in: directory, step: step)

            // key.pem is still the old key: reading directly would mismatch; the rule reads key.pem.next.
            try expectPair(directory, is: new)
            try directory.recover()
            try expectPair(directory, is: new)
            #expect(Set(Files.snapshot(directory.path).keys) == Set(AgentStateDirectory.File.allCases.map(\.rawValue)))
        }
        chain.directory.remove()
    }

    @Test("a committed install whose new key is in a token that is not ready: recovery waits (.io), and keeps the key")
    func tokenNotReadyAfterCommit() throws {
        let temporary = try TemporaryDirectory(prefix: "devid-agent-dir")
        defer { temporary.remove() }
        let directory = AgentStateDirectory(path: temporary.file("state"))
        try directory.install(try installation("dev-1"))
        try partialInstall(try installation("dev-1"), in: directory, step: 3)
        // The new key lives in a token whose module cannot be loaded now (a TPM stack still starting).
        let uri = "pkcs11:token=devid-tpm;object=devid-ldevid-1?module-path=/nonexistent/libtpm2_pkcs11.so"
        try SecureFile.write(Array((uri + "\n").utf8), to: directory.pendingPath(.key), mode: 0o600)
        #expect {
            try directory.recover()
        } throws: { ($0 as? AgentError)?.code == .io }
        // Nothing rolled back: the staged key reference and the new certificate are both still there.
        #expect(String(decoding: try SecureFile.read(directory.pendingPath(.key)), as: UTF8.self) == uri + "\n")
        #expect(FileManager.default.fileExists(atPath: directory.path(.certificate)))
        // A rotation slot whose key is in that token is not taken for unusable either.
        let slot = IdentitySlot(.next, in: directory)
        try FileManager.default.createDirectory(atPath: slot.path, withIntermediateDirectories: true)
        try SecureFile.write(Array((uri + "\n").utf8), to: slot.path(.key), mode: 0o600)
        #expect {
            _ = try slot.stagedKey()
        } throws: { ($0 as? AgentError)?.code == .io }
        chain.directory.remove()
    }

    @Test("a first enrollment that crashed before committing leaves nothing after recovery")
    func firstInstallCrash() throws {
        let temporary = try TemporaryDirectory(prefix: "devid-agent-dir")
        defer {
            temporary.remove()
            chain.directory.remove()
        }
        let directory = AgentStateDirectory(path: temporary.file("state"))
        try partialInstall(try installation("dev-1"), in: directory, step: 2)

        #expect(try directory.certificate() == nil)
        #expect(try IdentityStatus.read(stateDirectory: directory.path, clock: chain.clock).state == .missing)
        try directory.recover()
        #expect(Files.snapshot(directory.path).isEmpty)
    }

    @Test("a key that does not belong to the certificate is reported, not hidden")
    func mismatchedKey() throws {
        let temporary = try TemporaryDirectory(prefix: "devid-agent-dir")
        defer {
            temporary.remove()
            chain.directory.remove()
        }
        let directory = AgentStateDirectory(path: temporary.file("state"))
        try directory.install(try installation("dev-1"))
        let stranger = try installation("dev-2")
        let keyPEM = PEMDocument(type: "PRIVATE KEY", derBytes: stranger.keyPKCS8).pemString
        try SecureFile.write(Array(keyPEM.utf8), to: directory.path(.key), mode: 0o600)

        let status = try IdentityStatus.read(stateDirectory: directory.path, clock: chain.clock)
        #expect(status.state == .valid)
        #expect(status.keyMatchesCertificate == false)
    }

    @Test(
        "status: valid, expired, not yet valid, missing; renewal due after 2/3 of the lifetime",
        arguments: [
            (offset: -86_400.0 * 400, state: IdentityStatus.State.notYetValid, due: false),
            (offset: 0, state: .valid, due: false),
            (offset: 86_400 * 25, state: .valid, due: true),
            (offset: 86_400 * 400, state: .expired, due: true),
        ])
    func states(offset: TimeInterval, state: IdentityStatus.State, due: Bool) throws {
        let temporary = try TemporaryDirectory(prefix: "devid-agent-dir")
        defer {
            temporary.remove()
            chain.directory.remove()
        }
        let directory = AgentStateDirectory(path: temporary.file("state"))
        #expect(try IdentityStatus.read(stateDirectory: directory.path, clock: chain.clock).state == .missing)
        let installed = try installation("dev-1")
        try directory.install(installed)

        let clock = ManualWallClock(chain.clock.now().addingTimeInterval(offset))
        let status = try IdentityStatus.read(stateDirectory: directory.path, clock: clock)
        #expect(status.state == state)
        #expect(status.renewalDue == due)
        #expect(status.checkedAt == clock.now())
        let certificate = installed.certificate
        let lifetime = certificate.notValidAfter.timeIntervalSince(certificate.notValidBefore)
        #expect(
            status.plannedRenewal == certificate.notValidBefore.addingTimeInterval((lifetime * 2 / 3).rounded(.down)))
    }
}
