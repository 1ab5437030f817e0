import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import ServiceLifecycle
import SwiftASN1
import Testing
import X509

/// The OCSP responder at `/ocsp` on the operations listener (RFC 6960), with `openssl ocsp` as the client.
@Suite("OCSP serving", .serialized)
struct OCSPServingTests {
    /// `openssl ocsp -url` against the live server; stdout and stderr together.
    func ocsp(_ f: PublicationFixture, _ certificates: [String], issuer: String = "issuing.pem",
        trust: String = "chain.pem", nonce: Bool) async throws -> ExternalTool.Result
    {
        let certs = certificates.map { "-cert \($0)" }.joined(separator: " ")
        return try await f.sh(
            "openssl ocsp -issuer \(issuer) \(certs) -url \(f.server.opsURL)/ocsp -CAfile \(trust) -resp_text "
                + (nonce ? "" : "-no_nonce ") + "2>&1")
    }

    @Test("openssl ocsp: good, revoked (with reason) and unknown, with and without nonce, against the live server")
    func opensslStatuses() async throws {
        let f = try await PublicationFixture.start()
        _ = try await f.enroll("dev-good")
        let revoked = try await f.enroll("dev-bad")
        // Signed by the issuing CA but never recorded: the responder does not know it.
        let stray = try f.server.state.hierarchy.issuing.issueLDevID(
            device: DeviceID(rawValue: "stray")!, tenant: f.tenant, trustDomain: "devid.local",
            publicKey: try KeyMaterial.generate(.p256).publicKey, now: f.server.clock.now())
        _ = try f.scratch.write("stray.pem", stray.pemString)
        let reply = try await f.admin(
            "POST", "/v1/admin/revoke", body: "{\"serial\":\"\(revoked.devidSerial)\",\"reason\":\"keyCompromise\"}")
        #expect(reply.status == 200, "\(reply.body)")

        for nonce in [true, false] {
            let result = try await ocsp(f, ["dev-good.pem", "dev-bad.pem", "stray.pem"], nonce: nonce)
            let out = result.stdout
            #expect(result.succeeded, "\(out)")
            #expect(out.contains("Response verify OK"), "\(out)")
            #expect(out.contains("OCSP Response Status: successful (0x0)"))
            #expect(out.contains("dev-good.pem: good"), "\(out)")
            #expect(out.contains("dev-bad.pem: revoked"), "\(out)")
            #expect(out.contains("Reason: keyCompromise"), "\(out)")
            #expect(out.contains("Revocation Time: "))
            #expect(out.contains("stray.pem: unknown"), "\(out)")
            #expect(out.contains("This Update: ") && out.contains("Next Update: "))
            #expect(out.contains("OCSP Signing"), "a delegated responder certificate: \(out)")
            #expect(out.contains("OCSP No Check"), "\(out)")
            #expect(out.contains("CN=DevID OCSP Responder (issuing)"), "\(out)")
            #expect(out.contains("OCSP Nonce") == nonce, "nonce echoed only when asked: \(out)")
            #expect(!out.contains("WARNING: no nonce in response"), "\(out)")
            #expect(!out.contains("Nonce Verify error"), "\(out)")
        }
        try await f.stop()
    }

    @Test("IDevIDs of DevID's manufacturer CA are answered by its own delegated responder")
    func manufacturerResponder() async throws {
        let f = try await PublicationFixture.start()
        let manufacturer = try #require(f.server.state.hierarchy.manufacturer)
        let idevid = try manufacturer.issueIDevID(
            hardwareSerial: "HW-1", publicKey: try KeyMaterial.generate(.p256).publicKey, now: f.server.clock.now())
        _ = try f.scratch.write("idevid.pem", idevid.pemString)
        let result = try await ocsp(f, ["idevid.pem"], issuer: "manufacturer.pem", trust: "manufacturer.pem", nonce: true)
        #expect(result.stdout.contains("Response verify OK"), "\(result.stdout)")
        #expect(result.stdout.contains("idevid.pem: unknown"), "\(result.stdout)")
        #expect(result.stdout.contains("CN=DevID OCSP Responder (manufacturer)"), "\(result.stdout)")
        try await f.stop()
    }

    @Test("GET /ocsp/<base64>: cacheable, and the cached answer is dropped at revocation")
    func getAndInvalidation() async throws {
        let f = try await PublicationFixture.start()
        let leaf = try await f.enroll("dev-get")
        let request = OCSPRequest(
            certificateIDs: [try OCSPCertificateID(certificate: leaf, issuer: f.server.state.hierarchy.issuing.certificate)])
        let base64 = Data(request.derBytes).base64EncodedString()
        let encoded = base64.addingPercentEncoding(withAllowedCharacters: .alphanumerics)!

        func status(_ path: String) async throws -> (OCSPCertificateStatus?, RawReply) {
            let reply = try await f.fetch(path)
            #expect(reply.status == 200)
            #expect(reply.header("Content-Type") == "application/ocsp-response")
            let response = try OCSPResponse(derEncoded: reply.body)
            #expect(response.status == OCSPResponse.Status.successful)
            return (response.basicResponse?.responses.first?.status, reply)
        }
        let (first, firstReply) = try await status("/ocsp/\(encoded)")
        #expect(first == .good)
        let cacheControl = try #require(firstReply.header("Cache-Control"))
        #expect(cacheControl.hasPrefix("max-age="), "\(cacheControl)")
        #expect(firstReply.header("Expires") != nil)
        // Unencoded base64 ('/' and '+' as they are) is accepted too.
        #expect(try await status("/ocsp/\(base64)").0 == .good)

        let reply = try await f.admin("POST", "/v1/admin/revoke", body: "{\"device\":\"dev-get\",\"reason\":\"affiliationChanged\"}")
        #expect(reply.status == 200)
        let (after, _) = try await status("/ocsp/\(encoded)")
        guard case .revoked(_, let reason) = after else {
            Issue.record("expected revoked right after POST revoke, got \(String(describing: after))")
            try await f.stop()
            return
        }
        #expect(reason == .affiliationChanged)

        // A POST with a nonce is never cached: no-store.
        let withNonce = OCSPRequest(certificateIDs: request.certificateIDs, nonce: Array(repeating: 9, count: 32))
        let posted = try await f.fetch("/ocsp", method: "POST", headers: [("Content-Type", "application/ocsp-request")], body: withNonce.derBytes)
        #expect(posted.header("Cache-Control") == "no-store")
        #expect(try OCSPResponse(derEncoded: posted.body).basicResponse?.nonce == Array(repeating: 9, count: 32))
        try await f.stop()
    }

    @Test("garbage, truncated and oversized requests get malformedRequest or 413; the server keeps answering")
    func malformedRequests() async throws {
        let f = try await PublicationFixture.start()
        let leaf = try await f.enroll("dev-m")
        let credentials = try await f.store.credentialCount()
        let valid = OCSPRequest(
            certificateIDs: [try OCSPCertificateID(certificate: leaf, issuer: f.server.state.hierarchy.issuing.certificate)]
        ).derBytes
        let malformed = OCSPResponse.malformedRequest.derBytes
        let posts: [(String, [UInt8])] = [
            ("empty", []),
            ("garbage", Array("hello, responder".utf8)),
            ("truncated", Array(valid.prefix(valid.count / 2))),
            ("trailing bytes", valid + [0x00]),
            ("wrong tag", [0x31] + valid.dropFirst()),
            ("deep nesting", Array(repeating: 0x30, count: 2_000) + Array(repeating: 0x80, count: 2_000)),
            ("length overflow", [0x30, 0x84, 0xFF, 0xFF, 0xFF, 0xFF, 0x30]),
            ("too many CertIDs", OCSPRequest(certificateIDs: Array(repeating: try OCSPCertificateID(
                certificate: leaf, issuer: f.server.state.hierarchy.issuing.certificate), count: 40)).derBytes),
            ("over the parser's 16 KiB", [0x30, 0x82, 0x4F, 0xFC] + Array(repeating: 0x00, count: 20_476)),
        ]
        for (name, body) in posts {
            let reply = try await f.fetch("/ocsp", method: "POST", headers: [("Content-Type", "application/ocsp-request")], body: body)
            #expect(reply.status == 200, "\(name)")
            #expect(reply.body == malformed, "\(name): \(reply.body.prefix(16))")
            #expect(reply.header("Content-Type") == "application/ocsp-response", "\(name)")
        }
        let huge = try await f.fetch("/ocsp", method: "POST", headers: [("Content-Type", "application/ocsp-request")],
            body: Array(repeating: 0x30, count: 100_000))
        #expect(huge.status == 413)
        #expect(String(decoding: huge.body, as: UTF8.self) == "OCSP request over 65536 bytes\n")

        let gets = [
            "/ocsp/not-base64!!", "/ocsp/" + Data(valid.prefix(10)).base64EncodedString(), "/ocsp/",
            "/ocsp/%ZZ", "/ocsp/" + String(repeating: "A", count: 30_000), "/ocsp",
        ]
        for path in gets {
            let reply = try await f.fetch(path)
            #expect(reply.status == 200, "\(path.prefix(40))")
            #expect(reply.body == malformed, "\(path.prefix(40))")
        }

        // Still answering, nothing stored.
        let result = try await f.sh(
            "openssl ocsp -issuer issuing.pem -cert dev-m.pem -url \(f.server.opsURL)/ocsp -CAfile chain.pem 2>&1")
        #expect(result.stdout.contains("dev-m.pem: good"), "\(result.stdout)")
        #expect(try await f.fetch("/healthz").status == 200)
        #expect(try await f.store.credentialCount() == credentials)
        try await f.stop()
    }

    @Test("devid's admin view shows what relying parties see: the CRL entry and the OCSP answer")
    func relyingPartyView() async throws {
        let f = try await PublicationFixture.start()
        let leaf = try await f.enroll("dev-v")
        let good = try await f.admin("GET", "/v1/admin/certificates/\(leaf.devidSerial)")
        #expect(good.body.contains("\"listed\":false"), "\(good.body)")
        #expect(good.body.contains("\"status\":\"good\""), "\(good.body)")
        _ = try await f.admin("POST", "/v1/admin/revoke", body: "{\"device\":\"dev-v\",\"reason\":\"keyCompromise\"}")
        #expect(try await f.waitUntilListed(leaf.serialNumber, in: "issuing", limit: .seconds(30)) != nil)
        let revoked = try await f.admin("GET", "/v1/admin/certificates/\(leaf.devidSerial)")
        #expect(revoked.body.contains("\"listed\":true"), "\(revoked.body)")
        #expect(revoked.body.contains("\"status\":\"revoked\""), "\(revoked.body)")
        #expect(revoked.body.contains("\"reason\":\"keyCompromise\""), "\(revoked.body)")
        #expect(revoked.body.contains("\"url\":\"\(f.server.opsURL)/ocsp\""), "\(revoked.body)")
        try await f.stop()
    }

    @Test("the delegated signer is replaced when less than half of its lifetime remains; answers stay valid")
    func signerRotation() async throws {
        let f = try await PublicationFixture.start { $0.ocspSignerLifetime = 4 * 3_600 }
        let leaf = try await f.enroll("dev-rot")
        let issuing = f.server.state.hierarchy.issuing.certificate
        let request = OCSPRequest(certificateIDs: [try OCSPCertificateID(certificate: leaf, issuer: issuing)])
        func signer() async throws -> (Certificate, OCSPBasicResponse) {
            let reply = try await f.fetch(
                "/ocsp", method: "POST", headers: [("Content-Type", "application/ocsp-request")], body: request.derBytes)
            let basic = try #require(try OCSPResponse(derEncoded: reply.body).basicResponse)
            let certificate = try #require(basic.certificates.first)
            #expect(basic.isSignatureValid(signer: certificate))
            #expect(certificate.issuer == issuing.subject)
            #expect(issuing.publicKey.isValidSignature(certificate.signature, for: certificate))
            #expect(try certificate.extensions.extendedKeyUsage?.contains(.ocspSigning) == true)
            #expect(certificate.extensions[oid: [1, 3, 6, 1, 5, 5, 7, 48, 1, 5]] != nil, "id-pkix-ocsp-nocheck")
            return (certificate, basic)
        }
        let (first, firstBasic) = try await signer()
        #expect(abs(first.notValidAfter.timeIntervalSince(f.server.clock.now()) - 4 * 3_600) < 2)
        #expect(firstBasic.responses.first?.nextUpdate.map { $0 <= first.notValidAfter } == true)
        f.server.clock.advance(by: 3_600)
        #expect(try await signer().0 == first, "kept while more than half remains")
        f.server.clock.advance(by: 3_600 + 60)  // 2 h 1 min of 4 h: less than half remains
        let (second, basic) = try await signer()
        #expect(second != first, "replaced past half of its lifetime")
        #expect(second.publicKey != first.publicKey, "with a new key")
        #expect(second.notValidAfter > first.notValidAfter)
        #expect(basic.responses.first?.status == .good)
        let audited = try await f.store.auditEvents(AuditFilter(action: "ocsp.signer", limit: 10))
        #expect(audited.count == 2, "\(audited.map(\.reason))")
        try await f.stop()
    }
}
