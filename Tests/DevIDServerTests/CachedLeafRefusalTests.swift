import DevIDCore
import DevIDPKI
@testable import DevIDServer
import DevIDTesting
import Foundation
import Testing

/// Issue #13 part 6: the listener remembers chain verdicts (``VerifiedLeafCache``), never registry state. A device
/// whose certificate the cache holds is refused at once after a revocation or a suspension, on a new full handshake
/// (the resumed-session case is in `TLSResumptionTests`).
@Suite("Cached client certificates and live state")
struct CachedLeafRefusalTests {
    @Test("a cached LDevID is refused after revocation, on the next connection")
    func revoked() async throws {
        let f = try await ConnectionHygieneTests.Fixture()
        let identity = try await f.enroll("cached-rev")
        #expect(try await f.status(identity) == 200)
        #expect(try await f.status(identity) == 200)  // this handshake's chain came from the cache
        let revoke = try await withClient(try f.server.client()) {
            try await $0.send(
                "POST", f.server.opsURL + "/v1/admin/revoke",
                headers: [("Authorization", "Bearer \(f.server.adminToken)"), ("Content-Type", "application/json")],
                body: #"{"device":"cached-rev"}"#)
        }
        #expect(revoke.status == 200, "\(revoke.body)")
        #expect(try await f.status(identity) == 403)
        try await f.stop()
    }

    @Test("a cached LDevID is refused while its device is suspended, and served again after")
    func suspended() async throws {
        let f = try await ConnectionHygieneTests.Fixture()
        let identity = try await f.enroll("cached-sus")
        #expect(try await f.status(identity) == 200)
        let admin = { (path: String) async throws -> Int in
            try await withClient(try f.server.client()) {
                try await $0.send(
                    "POST", f.server.opsURL + path,
                    headers: [("Authorization", "Bearer \(f.server.adminToken)"), ("Content-Type", "application/json")],
                    body: "{}"
                ).status
            }
        }
        #expect(try await admin("/v1/admin/devices/cached-sus/suspend") == 200)
        #expect(try await f.status(identity) == 403)
        #expect(try await admin("/v1/admin/devices/cached-sus/resume") == 200)
        #expect(try await f.status(identity) == 200)
        try await f.stop()
    }
}
