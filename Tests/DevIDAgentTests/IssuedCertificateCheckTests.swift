import DevIDCore
import DevIDPKI
import DevIDTesting
import Foundation
import Testing
import X509

@testable import DevIDAgent

/// What the agent checks in a certificate the server returned, before writing anything.
@Suite("checks on an issued certificate")
struct IssuedCertificateCheckTests {
    let chain: TestChain

    init() throws {
        chain = try TestChain()
    }

    var intermediates: [Certificate] { chain.hierarchy.estCACertificates }

    @Test("a certificate for the agent's key, naming its device, chaining to the bundle: the chain, leaf first")
    func accepted() async throws {
        defer { chain.directory.remove() }
        let (key, certificate) = try chain.ldevid(device: "dev-1")
        let validated = try await Enroller.checkIssued(
            certificate, publicKey: key.publicKey, device: DeviceID("dev-1"), trustBundle: [chain.hierarchy.root],
            intermediates: intermediates, at: chain.clock.now())
        #expect(validated == [certificate, chain.hierarchy.issuing.certificate, chain.hierarchy.root])
    }

    @Test("a certificate for another key is refused")
    func otherKey() async throws {
        defer { chain.directory.remove() }
        let (_, certificate) = try chain.ldevid(device: "dev-1")
        let error = await #expect(throws: AgentError.self) {
            try await Enroller.checkIssued(
                certificate, publicKey: try KeyMaterial.generate(.p256).publicKey, device: nil,
                trustBundle: [chain.hierarchy.root], intermediates: intermediates, at: chain.clock.now())
        }
        #expect(error?.code == .untrustedCertificate)
        #expect(error?.reason.contains("not for the key") == true)
    }

    @Test("a certificate for another device is refused")
    func otherDevice() async throws {
        defer { chain.directory.remove() }
        let (key, certificate) = try chain.ldevid(device: "dev-2")
        let error = await #expect(throws: AgentError.self) {
            try await Enroller.checkIssued(
                certificate, publicKey: key.publicKey, device: DeviceID("dev-1"), trustBundle: [chain.hierarchy.root],
                intermediates: intermediates, at: chain.clock.now())
        }
        #expect(error?.code == .untrustedCertificate)
    }

    @Test("a certificate from a CA outside the trust bundle is refused, even with its CA as an intermediate")
    func otherCA() async throws {
        defer { chain.directory.remove() }
        let other = try TestChain()
        defer { other.directory.remove() }
        let (key, certificate) = try other.ldevid(device: "dev-1")
        let error = await #expect(throws: AgentError.self) {
            try await Enroller.checkIssued(
                certificate, publicKey: key.publicKey, device: nil, trustBundle: [chain.hierarchy.root],
                intermediates: other.hierarchy.estCACertificates, at: chain.clock.now())
        }
        #expect(error?.code == .untrustedCertificate)
    }
}
