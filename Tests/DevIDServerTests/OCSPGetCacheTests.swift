import DevIDCore
import DevIDPKI
@testable import DevIDServer
import Foundation
import NIOCore
import Testing
import X509

/// The `GET /ocsp/<request>` answer table read without entering the revocation actor.
@Suite("OCSP GET cache")
struct OCSPGetCacheTests {
    static let now = Date(timeIntervalSince1970: 1_800_000_000)

    static func entry(_ byte: UInt8, until: TimeInterval = 60) -> OCSPGetCache.Entry {
        .init(
            body: ByteBuffer(bytes: [byte]), nextUpdate: now.addingTimeInterval(2 * until),
            expires: IMFFixdate.string(from: now.addingTimeInterval(2 * until)), cacheUntil: now.addingTimeInterval(until))
    }

    @Test("an entry is served until cacheUntil, then dropped")
    func expiry() {
        let cache = OCSPGetCache()
        cache.store(Self.entry(1), for: "a", epoch: cache.epoch)
        #expect(cache.entry(for: "a", now: Self.now)?.body == ByteBuffer(bytes: [1]))
        #expect(cache.entry(for: "a", now: Self.now.addingTimeInterval(59.9)) != nil)
        #expect(cache.entry(for: "a", now: Self.now.addingTimeInterval(60)) == nil)
        #expect(cache.count == 0, "an expired entry is removed when met")
        #expect(cache.entry(for: "b", now: Self.now) == nil)
    }

    @Test("an invalidation empties the table, and an answer computed across it is not stored")
    func invalidation() {
        let cache = OCSPGetCache()
        cache.store(Self.entry(1), for: "a", epoch: cache.epoch)
        let before = cache.epoch
        cache.removeAll()
        #expect(cache.entry(for: "a", now: Self.now) == nil)
        cache.store(Self.entry(2), for: "b", epoch: before)
        #expect(cache.entry(for: "b", now: Self.now) == nil, "computed before the revocation: not stored")
        cache.store(Self.entry(3), for: "b", epoch: cache.epoch)
        #expect(cache.entry(for: "b", now: Self.now)?.body == ByteBuffer(bytes: [3]))
    }

    @Test("the table is bounded")
    func bounded() {
        let cache = OCSPGetCache()
        for index in 0..<(OCSPGetCache.maximumEntries + 5) {
            cache.store(Self.entry(1), for: "p\(index)", epoch: cache.epoch)
        }
        #expect(cache.count <= OCSPGetCache.maximumEntries)
        #expect(cache.count == 5)
    }

    @Test("live: a repeated GET is answered from the table with the same bytes and headers; it re-signs after half the validity; a revocation shows at once")
    func live() async throws {
        let f = try await PublicationFixture.start()
        let leaf = try await f.enroll("dev-get-cache")
        let request = OCSPRequest(
            certificateIDs: [
                try OCSPCertificateID(certificate: leaf, issuer: f.server.state.hierarchy.issuing.certificate)
            ])
        let path = "/ocsp/" + Data(request.derBytes).base64EncodedString()
            .addingPercentEncoding(withAllowedCharacters: .alphanumerics)!
        let first = try await f.fetch(path)
        #expect(first.status == 200)
        #expect(f.server.state.revocation.getAnswers.count == 1)
        let second = try await f.fetch(path)
        #expect(second.body == first.body, "the same signed answer")
        for name in ["Content-Type", "Cache-Control", "Last-Modified", "Expires"] {
            #expect(second.header(name) == first.header(name), "\(name)")
        }
        // Past half the validity the answer is signed again (ECDSA signatures differ).
        f.server.clock.advance(by: f.server.configuration.ocspValidity / 2 + 1)
        let third = try await f.fetch(path)
        #expect(third.status == 200)
        #expect(third.body != first.body)
        #expect(third.header("Last-Modified") != first.header("Last-Modified"))

        #expect(try await f.admin("POST", "/v1/admin/revoke", body: #"{"device":"dev-get-cache","reason":"keyCompromise"}"#).status == 200)
        let revoked = try await f.fetch(path)
        let status = try OCSPResponse(derEncoded: revoked.body).basicResponse?.responses.first?.status
        guard case .revoked = status else {
            Issue.record("expected revoked right after the revocation, got \(String(describing: status))")
            try await f.stop()
            return
        }
        try await f.stop()
    }
}
