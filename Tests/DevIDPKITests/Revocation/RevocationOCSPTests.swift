import Crypto
import DevIDCore
import DevIDPKI
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

/// The OCSP responder (RFC 6960) as `openssl ocsp` sees it.
@Suite("Revocation: OCSP responder")
struct RevocationOCSPTests {
    /// The registry the responder consults in these tests.
    struct Registry {
        var statuses: [Certificate.SerialNumber: OCSPCertificateStatus] = [:]
        func status(_ serial: Certificate.SerialNumber) -> OCSPCertificateStatus { statuses[serial] ?? .unknown }
    }

    enum Expectation: String, CaseIterable, Sendable {
        case good, revoked, unknown
    }

    /// What one request/response round through OpenSSL showed.
    struct Exchange {
        var request: OCSPRequest
        var response: OCSPResponse
        /// `openssl ocsp -respin … -issuer … -cert …`: per-certificate status lines and the signature verdict.
        var statusReport: String
        var statusExit: Int32
        /// `openssl ocsp -reqin req.der -respin …`: OpenSSL compares the response's nonce with the request's.
        var nonceReport: String
    }

    /// Has `openssl ocsp` write a request about `leaves`, answers it, and has `openssl ocsp` check the answer.
    func exchange(
        _ fixture: RevocationFixture, leaves: [Certificate], registry: Registry, nonce: Bool, hash: String = "sha1",
        responder: OCSPResponder? = nil, issuerFile: String? = nil, trustFile: String? = nil
    ) throws -> Exchange {
        let scratch = try Scratch()
        defer { scratch.remove() }
        let issuerFile = issuerFile ?? fixture.issuingFile
        let trustFile = trustFile ?? fixture.chainFile
        // The CertID digest option must come before -cert.
        var certArguments = ["-\(hash)", "-issuer", issuerFile]
        for (index, leaf) in leaves.enumerated() {
            certArguments += ["-cert", try scratch.write("leaf\(index).pem", leaf.pemString)]
        }
        let requestFile = scratch.directory.file("req.der")
        let made = try OpenSSL.run(["ocsp"] + certArguments + ["-reqout", requestFile] + (nonce ? [] : ["-no_nonce"]))
        #expect(made.status == 0, "\(made.output)")

        let request = try OCSPRequestParser().parse(try scratch.read("req.der"))
        let response = try (responder ?? fixture.responder()).respond(
            to: request, producedAt: fixture.now, thisUpdate: fixture.now - 60, nextUpdate: fixture.now + 3_600,
            status: registry.status)
        let responseFile = try scratch.write("resp.der", response.derBytes)

        // With -cert, OpenSSL builds a request of its own (so -no_nonce: it cannot match our nonce) and prints the
        // status of each certificate.
        let status = try OpenSSL.run(
            ["ocsp", "-respin", responseFile] + certArguments + ["-CAfile", trustFile, "-resp_text", "-no_nonce"])
        // With -reqin alone, OpenSSL checks the response against the request we answered, nonce included.
        let nonceCheck = try OpenSSL.run([
            "ocsp", "-reqin", requestFile, "-respin", responseFile, "-CAfile", trustFile, "-no_nonce",
        ])
        return Exchange(
            request: request, response: response, statusReport: status.output, statusExit: status.status,
            nonceReport: nonceCheck.output)
    }

    @Test(
        "openssl ocsp reports good, revoked (with reason) and unknown, with and without nonce",
        arguments: Expectation.allCases, [true, false])
    func opensslReportsStatus(expected: Expectation, nonce: Bool) throws {
        let fixture = try RevocationFixture.get()
        let leaf = try fixture.leaf(name: "ocsp-\(expected.rawValue)")
        var registry = Registry()
        switch expected {
        case .good: registry.statuses[leaf.serialNumber] = .good
        case .revoked: registry.statuses[leaf.serialNumber] = .revoked(at: fixture.now - 120, reason: .keyCompromise)
        case .unknown: break
        }
        let result = try exchange(fixture, leaves: [leaf], registry: registry, nonce: nonce)
        #expect(result.request.certificateIDs.map(\.serial) == [leaf.serialNumber])
        #expect(result.request.certificateIDs[0].hashAlgorithm == .sha1)
        #expect((result.request.nonce != nil) == nonce)
        #expect(result.response.status == .successful)

        let report = result.statusReport
        #expect(result.statusExit == 0, "\(report)")
        #expect(report.contains("Response verify OK"), "\(report)")
        #expect(report.contains("OCSP Response Status: successful (0x0)"))
        #expect(report.contains("leaf0.pem: \(expected.rawValue)"), "\(report)")
        #expect(report.contains("This Update: "))
        #expect(report.contains("Next Update: "))
        if expected == .revoked {
            #expect(report.contains("Reason: keyCompromise"), "\(report)")
            #expect(report.contains("Revocation Time: "))
        }
        #expect(report.contains("OCSP Nonce") == nonce, "\(report)")
        #expect(report.contains("OCSP Signing"), "the responder certificate is in the response")

        #expect(result.nonceReport.contains("Response verify OK"), "\(result.nonceReport)")
        #expect(!result.nonceReport.contains("Nonce Verify error"))
        #expect(result.nonceReport.contains("WARNING: no nonce in response") == false, "\(result.nonceReport)")
        let basic = try #require(result.response.basicResponse)
        #expect(basic.nonce == result.request.nonce)
    }

    @Test("OpenSSL notices a nonce that does not match (the check above can fail)")
    func nonceCheckCanFail() throws {
        let fixture = try RevocationFixture.get()
        let scratch = try Scratch()
        defer { scratch.remove() }
        let leaf = try fixture.leaf()
        let leafFile = try scratch.write("leaf.pem", leaf.pemString)
        let requestFile = scratch.directory.file("req.der")
        try OpenSSL.run(["ocsp", "-issuer", fixture.issuingFile, "-cert", leafFile, "-reqout", requestFile])
        let asked = try OCSPRequestParser().parse(try scratch.read("req.der"))
        // Answer a request with another nonce instead.
        let other = OCSPRequest(certificateIDs: asked.certificateIDs, nonce: Array(repeating: 7, count: 16))
        let response = try fixture.responder().respond(
            to: other, producedAt: fixture.now, thisUpdate: fixture.now, nextUpdate: nil
        ) { _ in .good }
        let check = try OpenSSL.run([
            "ocsp", "-reqin", requestFile, "-respin", try scratch.write("resp.der", response.derBytes), "-CAfile",
            fixture.chainFile, "-no_nonce",
        ])
        #expect(check.output.contains("Nonce Verify error"), "\(check.output)")
    }

    @Test("SHA-256 CertIDs are matched and echoed")
    func sha256CertID() throws {
        let fixture = try RevocationFixture.get()
        let leaf = try fixture.leaf()
        let registry = Registry(statuses: [leaf.serialNumber: .revoked(at: fixture.now - 5, reason: .superseded)])
        let result = try exchange(fixture, leaves: [leaf], registry: registry, nonce: true, hash: "sha256")
        #expect(result.request.certificateIDs[0].hashAlgorithm == .sha256)
        #expect(result.statusReport.contains("Hash Algorithm: sha256"))
        #expect(result.statusReport.contains("leaf0.pem: revoked"), "\(result.statusReport)")
        #expect(result.statusReport.contains("Reason: superseded"))
        #expect(result.statusReport.contains("Response verify OK"))
    }

    @Test("one request for three certificates gets three answers, in order")
    func multipleCertificates() throws {
        let fixture = try RevocationFixture.get()
        let leaves = try (0..<3).map { try fixture.leaf(name: "multi-\($0)") }
        let registry = Registry(statuses: [
            leaves[0].serialNumber: .good,
            leaves[1].serialNumber: .revoked(at: fixture.now - 3_600, reason: .affiliationChanged),
        ])
        let result = try exchange(fixture, leaves: leaves, registry: registry, nonce: true)
        #expect(result.request.certificateIDs.count == 3)
        let report = result.statusReport
        #expect(report.contains("leaf0.pem: good"), "\(report)")
        #expect(report.contains("leaf1.pem: revoked"))
        #expect(report.contains("Reason: affiliationChanged"))
        #expect(report.contains("leaf2.pem: unknown"))
        #expect(report.contains("Response verify OK"))
        let responses = try #require(result.response.basicResponse).responses
        #expect(responses.map(\.certificateID) == result.request.certificateIDs)
    }

    @Test("a CertID for another issuer is answered unknown without a lookup")
    func otherIssuer() throws {
        let fixture = try RevocationFixture.get()
        let scratch = try Scratch()
        defer { scratch.remove() }
        // Ask about the issuing CA itself, whose issuer is the root: not this responder's CA.
        let requestFile = scratch.directory.file("req.der")
        let issuingFile = try scratch.write("issuing.pem", fixture.issuing.certificate.pemString)
        try OpenSSL.run(["ocsp", "-issuer", fixture.rootFile, "-cert", issuingFile, "-reqout", requestFile])
        let request = try OCSPRequestParser().parse(try scratch.read("req.der"))
        let responder = try fixture.responder()
        #expect(!responder.isAuthoritative(for: request.certificateIDs[0]))
        var lookups = 0
        let response = responder.respond(
            to: request, producedAt: fixture.now, thisUpdate: fixture.now, nextUpdate: fixture.now + 60
        ) { _ in
            lookups += 1
            return .good
        }
        #expect(lookups == 0)
        let parsed = try OCSPResponse(derEncoded: response.derBytes)
        #expect(parsed.basicResponse?.responses.map(\.status) == [.unknown])
        let report = try OpenSSL.run([
            "ocsp", "-respin", try scratch.write("resp.der", response.derBytes), "-issuer", fixture.rootFile, "-cert",
            issuingFile, "-CAfile", fixture.chainFile, "-no_nonce",
        ])
        #expect(report.output.contains("issuing.pem: unknown"), "\(report.output)")
    }

    @Test("the CA can sign its own responses (no delegated certificate in the response)")
    func caSignedResponder() throws {
        let fixture = try RevocationFixture.get()
        let leaf = try fixture.leaf()
        let responder = try OCSPResponder(authority: fixture.issuing)
        let result = try exchange(
            fixture, leaves: [leaf], registry: Registry(statuses: [leaf.serialNumber: .good]), nonce: true,
            responder: responder)
        #expect(result.statusReport.contains("leaf0.pem: good"), "\(result.statusReport)")
        #expect(result.statusReport.contains("Response verify OK"))
        #expect(result.response.basicResponse?.certificates.isEmpty == true)
    }

    @Test("an unspecified revocation carries no reason; revocation times are whole seconds")
    func unspecifiedReason() throws {
        let fixture = try RevocationFixture.get()
        let leaf = try fixture.leaf()
        let revokedAt = fixture.now - 10.6
        let result = try exchange(
            fixture, leaves: [leaf],
            registry: Registry(statuses: [leaf.serialNumber: .revoked(at: revokedAt, reason: .unspecified)]),
            nonce: false)
        #expect(result.statusReport.contains("leaf0.pem: revoked"), "\(result.statusReport)")
        #expect(!result.statusReport.contains("Reason:"))
        let parsed = try OCSPResponse(derEncoded: result.response.derBytes)
        #expect(
            parsed.basicResponse?.responses.first?.status == .revoked(at: revokedAt.wholeSeconds, reason: .unspecified))
        #expect(parsed.basicResponse?.responses == result.response.basicResponse?.responses)
    }

    @Test("a response reads back: responder key hash, times, statuses, certificate and signature")
    func responseRoundTrip() throws {
        let fixture = try RevocationFixture.get()
        let leaves = try (0..<2).map { try fixture.leaf(name: "rt-\($0)") }
        let ids = try leaves.map { try OCSPCertificateID(certificate: $0, issuer: fixture.issuing.certificate) }
        let request = OCSPRequest(certificateIDs: ids, nonce: Array(0..<32))
        let reparsed = try OCSPRequestParser().parse(request.derBytes)
        #expect(reparsed == request)
        let response = try fixture.responder().respond(
            to: reparsed, producedAt: fixture.now + 0.9, thisUpdate: fixture.now - 30, nextUpdate: fixture.now + 600
        ) { serial in serial == leaves[0].serialNumber ? .good : .revoked(at: fixture.now, reason: .privilegeWithdrawn)
        }
        let parsed = try OCSPResponse(derEncoded: response.derBytes)
        #expect(parsed == response)
        let basic = try #require(parsed.basicResponse)
        #expect(basic.producedAt == fixture.now)
        #expect(basic.nonce == Array(0..<32))
        #expect(basic.certificates == [fixture.responderCertificate])
        #expect(basic.responderName == nil)
        let keyBits = try #require(fixture.responderCertificate.subjectKeyIdentifierBytes)
        #expect(basic.responderKeyHash.map { $0[...] } == keyBits, "SKI is the SHA-1 of the key here, as is byKey")
        #expect(basic.response(for: ids[0])?.status == .good)
        #expect(basic.response(for: ids[1])?.status == .revoked(at: fixture.now, reason: .privilegeWithdrawn))
        #expect(basic.responses.allSatisfy { $0.thisUpdate == fixture.now - 30 && $0.nextUpdate == fixture.now + 600 })
        #expect(basic.isSignatureValid(signer: fixture.responderCertificate))
        #expect(!basic.isSignatureValid(signer: fixture.issuing.certificate))
        #expect(try #require(response.basicResponse).isSignatureValid(signer: fixture.responderCertificate))
    }

    @Test("nonces outside 1...32 octets are not echoed (RFC 8954 §2.1)", arguments: [0, 1, 32, 33, 128])
    func nonceLength(length: Int) throws {
        let fixture = try RevocationFixture.get()
        let id = try OCSPCertificateID(
            issuer: fixture.issuing.certificate, serial: Certificate.SerialNumber(bytes: [1]))
        let request = try OCSPRequestParser().parse(
            OCSPRequest(certificateIDs: [id], nonce: Array(repeating: 0x5A, count: length)).derBytes)
        let response = try fixture.responder().respond(
            to: request, producedAt: fixture.now, thisUpdate: fixture.now, nextUpdate: nil
        ) { _ in .good }
        let echoed = try OCSPResponse(derEncoded: response.derBytes).basicResponse?.nonce
        #expect(echoed == ((1...32).contains(length) ? Array(repeating: 0x5A, count: length) : nil))
    }

    @Test(
        "status-only responses are five bytes and OpenSSL names them",
        arguments: [
            (OCSPResponse.malformedRequest, 1, "malformedrequest"), (.internalError, 2, "internalerror"),
            (.tryLater, 3, "trylater"), (.unauthorized, 6, "unauthorized"),
        ] as [(OCSPResponse, UInt8, String)])
    func statusOnlyResponses(response: OCSPResponse, code: UInt8, name: String) throws {
        #expect(response.derBytes == [0x30, 0x03, 0x0A, 0x01, code])
        #expect(response.basicResponse == nil)
        #expect(try OCSPResponse(derEncoded: response.derBytes).status == response.status)
        let scratch = try Scratch()
        defer { scratch.remove() }
        let report = try OpenSSL.run([
            "ocsp", "-respin", try scratch.write("status.der", response.derBytes), "-resp_text",
        ])
        #expect(report.output.contains("Responder Error: \(name) (\(code))"), "\(report.output)")
    }

    @Test("a failing lookup is an internalError response; so is an asynchronous one")
    func failingLookup() async throws {
        struct Down: Error {}
        let fixture = try RevocationFixture.get()
        let id = try OCSPCertificateID(
            issuer: fixture.issuing.certificate, serial: Certificate.SerialNumber(bytes: [2]))
        let request = OCSPRequest(certificateIDs: [id])
        let responder = try fixture.responder()
        let sync = responder.respond(to: request, producedAt: fixture.now, thisUpdate: fixture.now, nextUpdate: nil) {
            (_: Certificate.SerialNumber) throws -> OCSPCertificateStatus in throw Down()
        }
        #expect(sync == .internalError)
        let failing = await responder.respond(
            to: request, producedAt: fixture.now, thisUpdate: fixture.now, nextUpdate: nil
        ) { (_: Certificate.SerialNumber) async throws -> OCSPCertificateStatus in throw Down() }
        #expect(failing == .internalError)
        let working = await responder.respond(
            to: request, producedAt: fixture.now, thisUpdate: fixture.now, nextUpdate: nil
        ) { (_: Certificate.SerialNumber) async throws -> OCSPCertificateStatus in .good }
        #expect(working.basicResponse?.responses.map(\.status) == [.good])
    }

    @Test("the responder refuses a certificate that is not a delegated responder of its CA")
    func responderChecks() throws {
        let fixture = try RevocationFixture.get()
        let issuer = fixture.issuing.certificate
        // Key and certificate do not match.
        #expect(throws: DevIDPKIError(.policyViolation, "")) {
            try OCSPResponder(
                issuer: issuer, responderCertificate: fixture.responderCertificate,
                responderKey: try KeyMaterial.generate(.p256))
        }
        // No id-kp-OCSPSigning: an LDevID.
        let ldevid = try fixture.chain.ldevid(at: fixture.now)
        #expect(throws: DevIDPKIError(.policyViolation, "")) {
            try OCSPResponder(issuer: issuer, responderCertificate: ldevid.certificate, responderKey: ldevid.key)
        }
        // An OCSP signing certificate from another CA (the manufacturer CA).
        let manufacturer = try #require(fixture.chain.hierarchy.manufacturer)
        let key = try KeyMaterial.generate(.p256)
        let foreign = try manufacturer.issue(
            subject: try DistinguishedName { CommonName("foreign responder") }, publicKey: key.publicKey,
            profile: .ocspSigning, now: fixture.now)
        #expect(throws: DevIDPKIError(.untrusted, "")) {
            try OCSPResponder(issuer: issuer, responderCertificate: foreign, responderKey: key)
        }
        // ... which is fine for the manufacturer CA's own responder.
        _ = try OCSPResponder(issuer: manufacturer.certificate, responderCertificate: foreign, responderKey: key)
    }

    @Test(
        "the ocspSigning profile: EKU OCSPSigning, digitalSignature, ocsp-nocheck, 7 days, OpenSSL's ocsphelper purpose"
    )
    func ocspSigningProfile() throws {
        let fixture = try RevocationFixture.get()
        let scratch = try Scratch()
        defer { scratch.remove() }
        let certificate = fixture.responderCertificate
        let file = try scratch.write("responder.pem", certificate.pemString)
        let (_, text) = try OpenSSL.run(["x509", "-in", file, "-noout", "-text"])
        #expect(text.contains("X509v3 Key Usage: critical\n                Digital Signature\n"), "\(text)")
        #expect(text.contains("X509v3 Extended Key Usage: \n                OCSP Signing"))
        #expect(text.contains("OCSP No Check: \n"))
        #expect(!text.contains("OCSP No Check: critical"))
        #expect(text.contains("CA:FALSE"))
        #expect(certificate.notValidAfter == fixture.now + 7 * 86_400)
        #expect(certificate.notValidBefore == fixture.now - 300)
        let nocheck = try #require(certificate.extensions[oid: [1, 3, 6, 1, 5, 5, 7, 48, 1, 5]])
        #expect(Array(nocheck.value) == [0x05, 0x00])
        #expect(!nocheck.critical)
        #expect(!CertificateProfile.ocspSigning.isCA)
        let verified = try OpenSSL.run([
            "verify", "-purpose", "ocsphelper", "-CAfile", fixture.chainFile, file,
        ])
        #expect(verified.status == 0, "\(verified.output)")
    }

    @Test("leaves can carry the CDP and AIA OCSP URL relying parties use")
    func revocationPointers() throws {
        let fixture = try RevocationFixture.get()
        let scratch = try Scratch()
        defer { scratch.remove() }
        let leaf = try fixture.leaf(
            crlDistributionPoint: "http://ops.test.devid/crl/issuing.crl", ocspURL: "http://ops.test.devid/ocsp")
        let (_, text) = try OpenSSL.run([
            "x509", "-in", try scratch.write("leaf.pem", leaf.pemString), "-noout", "-text", "-ocsp_uri",
        ])
        #expect(text.contains("X509v3 CRL Distribution Points: \n"), "\(text)")
        #expect(text.contains("URI:http://ops.test.devid/crl/issuing.crl"))
        #expect(text.contains("OCSP - URI:http://ops.test.devid/ocsp"))
        #expect(text.hasSuffix("http://ops.test.devid/ocsp\n"))
        #expect(RevocationExtensions.crlDistributionPointURI(of: leaf) == "http://ops.test.devid/crl/issuing.crl")
        #expect(throws: DevIDPKIError(.policyViolation, "")) { try RevocationExtensions.crlDistributionPoint(uri: "") }
    }
}
