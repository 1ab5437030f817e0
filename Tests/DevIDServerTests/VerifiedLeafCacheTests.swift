import DevIDCore
import DevIDPKI
@testable import DevIDServer
import DevIDTesting
import Foundation
import NIOSSL
import Synchronization
import Testing
import X509

/// The mTLS listener's cache of chain verdicts (issue #13 part 6): what is kept, for how long, and that nothing the
/// verifier refused, nor anything outside its validity, is ever accepted from it.
@Suite("Verified leaf cache")
struct VerifiedLeafCacheTests {
    /// A verifier that accepts everything it is given, as its own chain, and counts its calls.
    final class CountingVerifier: Sendable {
        let calls = Atomic<Int>(0)
        let accept: Bool

        init(accept: Bool = true) { self.accept = accept }

        var verify: MTLSVerify {
            { [self] certificates in
                calls.add(1, ordering: .relaxed)
                guard accept else { return .failed }
                return .certificateVerified(VerificationMetadata(ValidatedCertificateChain(certificates)))
            }
        }

        var count: Int { calls.load(ordering: .relaxed) }
    }

    static func nio(_ certificate: Certificate) throws -> NIOSSLCertificate {
        try NIOSSLCertificate(bytes: certificate.derBytes, format: .der)
    }

    /// An LDevID chain (leaf, issuing CA) from a fresh test hierarchy, and that hierarchy's clock.
    static func chain(device: String = "dev-1") throws -> (chain: [NIOSSLCertificate], leaf: Certificate, clock: ManualWallClock) {
        let test = try TestChain()
        let leaf = try test.ldevid(device: device).certificate
        return ([try nio(leaf), try nio(test.hierarchy.issuing.certificate)], leaf, test.clock)
    }

    @Test("a leaf accepted once is accepted again without the verifier; another leaf is not")
    func hit() async throws {
        let (chain, _, clock) = try Self.chain()
        let cache = VerifiedLeafCache(clock: clock)
        let verifier = CountingVerifier()
        let verify = cache.caching(verifier.verify)
        guard case .certificateVerified = await verify(chain) else { Issue.record("first call refused"); return }
        guard case .certificateVerified(let again) = await verify([chain[0]]) else {
            Issue.record("second call refused")
            return
        }
        #expect(verifier.count == 1)
        #expect(again.validatedCertificateChain.map(Array.init) == chain)
        let other = try Self.chain(device: "dev-2")
        _ = await verify(other.chain)
        #expect(verifier.count == 2)
        #expect(cache.count == 2)
    }

    @Test("a refused certificate is never cached: the verifier runs every time")
    func refusalsNotCached() async throws {
        let (chain, _, clock) = try Self.chain()
        let cache = VerifiedLeafCache(clock: clock)
        let verifier = CountingVerifier(accept: false)
        let verify = cache.caching(verifier.verify)
        for _ in 0..<3 {
            guard case .failed = await verify(chain) else {
                Issue.record("a refused certificate was accepted")
                return
            }
        }
        #expect(verifier.count == 3)
        #expect(cache.count == 0)
    }

    @Test("past the leaf's notAfter the entry is dropped and the verifier decides again")
    func expiry() async throws {
        let (chain, leaf, clock) = try Self.chain()
        let cache = VerifiedLeafCache(clock: clock)
        let verifier = CountingVerifier()
        let verify = cache.caching(verifier.verify)
        _ = await verify(chain)
        clock.set(leaf.notValidAfter.addingTimeInterval(1))
        #expect(cache.chain(for: chain[0]) == nil)
        #expect(cache.count == 0)
        // The verifier (here: accepting, as under the late-renewal grace) is asked, and its verdict is not stored.
        _ = await verify(chain)
        _ = await verify(chain)
        #expect(verifier.count == 3)
        #expect(cache.count == 0)
    }

    @Test("before the chain's latest notBefore nothing is stored or served")
    func notYetValid() async throws {
        let (chain, leaf, clock) = try Self.chain()
        let cache = VerifiedLeafCache(clock: clock)
        clock.set(leaf.notValidBefore.addingTimeInterval(-60))
        cache.store(chain)
        #expect(cache.count == 0)
        clock.set(leaf.notValidBefore.addingTimeInterval(60))
        cache.store(chain)
        #expect(cache.chain(for: chain[0]) == chain)
        clock.set(leaf.notValidBefore.addingTimeInterval(-60))
        #expect(cache.chain(for: chain[0]) == nil)
    }

    @Test("an entry ends at the earliest notAfter of its chain, not only the leaf's")
    func chainExpiry() async throws {
        let test = try TestChain()
        let leaf = try test.ldevid().certificate
        // A short-lived "issuer" in the chain: the entry must end with it.
        let shortKey = try KeyMaterial.generate(.p256)
        let short = try test.hierarchy.issuing.issueLDevID(
            device: try DeviceID("short"), tenant: try TenantID("acme"), trustDomain: test.hierarchy.trustDomain,
            publicKey: shortKey.publicKey, now: test.clock.now().addingTimeInterval(-29 * 86_400))
        #expect(short.notValidAfter < leaf.notValidAfter)
        let chain = [try Self.nio(leaf), try Self.nio(short)]
        let cache = VerifiedLeafCache(clock: test.clock)
        cache.store(chain)
        #expect(cache.chain(for: chain[0]) != nil)
        test.clock.set(short.notValidAfter.addingTimeInterval(1))
        #expect(cache.chain(for: chain[0]) == nil)
    }

    @Test("bounded: at capacity the cache is emptied before the next entry")
    func capacity() async throws {
        let test = try TestChain()
        let cache = VerifiedLeafCache(clock: test.clock, capacity: 3)
        var chains: [[NIOSSLCertificate]] = []
        for index in 0..<4 {
            chains.append([try Self.nio(try test.ldevid(device: "dev-\(index)").certificate)])
        }
        for chain in chains.prefix(3) { cache.store(chain) }
        #expect(cache.count == 3)
        cache.store(chains[0])  // already held: nothing is evicted
        #expect(cache.count == 3)
        cache.store(chains[3])
        #expect(cache.count == 1)
        #expect(cache.chain(for: chains[3][0]) != nil)
        #expect(cache.chain(for: chains[0][0]) == nil)
    }
}

/// What the client-certificate verifier keeps so that a handshake and its request do not encode and parse the same
/// certificates again: issuers (only of accepted chains) and the leaf handed from the handshake to its request.
@Suite("Certificates parsed once per handshake")
struct ParsedOnceTests {
    @Test("an issuer is known only after an accepted chain brought it; its NIOSSL form is the same bytes, reused")
    func issuers() throws {
        let test = try TestChain()
        let issuing = test.hierarchy.issuing.certificate
        let cache = IssuerCertificateCache(limit: 4)
        #expect(cache.known(der: issuing.derBytes) == nil, "nothing is known before a chain is accepted")
        let converted = try cache.nioSSLCertificate(for: issuing)
        #expect(try converted.toDERBytes() == issuing.derBytes)
        #expect(try cache.nioSSLCertificate(for: issuing) === converted, "converted once")
        #expect(cache.known(der: issuing.derBytes) == issuing)
        #expect(cache.known(der: Array(issuing.derBytes.dropLast())) == nil)
    }

    @Test("a handed-off leaf is taken once, by its exact DER; bounded: at the limit it starts from empty")
    func handoff() throws {
        let test = try TestChain()
        let leaves = try (0..<3).map { try test.ldevid(device: "dev-\($0)").certificate }
        let handoff = VerifiedLeafHandoff(limit: 2)
        handoff.put(der: leaves[0].derBytes, leaves[0])
        #expect(handoff.take(der: leaves[1].derBytes) == nil)
        #expect(handoff.take(der: leaves[0].derBytes) == leaves[0])
        #expect(handoff.take(der: leaves[0].derBytes) == nil, "taken once")
        handoff.put(der: leaves[0].derBytes, leaves[0])
        handoff.put(der: leaves[1].derBytes, leaves[1])
        handoff.put(der: leaves[2].derBytes, leaves[2])
        #expect(handoff.take(der: leaves[0].derBytes) == nil, "emptied at the limit")
        #expect(handoff.take(der: leaves[2].derBytes) == leaves[2])
    }
}
