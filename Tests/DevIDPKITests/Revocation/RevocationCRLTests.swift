import DevIDCore
import DevIDPKI
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

/// CRLs (RFC 5280 §5) as OpenSSL reads and verifies them.
@Suite("Revocation: CRLs")
struct RevocationCRLTests {
    /// `openssl crl -text`'s names for the reason codes.
    static let opensslReasonNames: [RevocationReason: String] = [
        .keyCompromise: "Key Compromise", .caCompromise: "CA Compromise", .affiliationChanged: "Affiliation Changed",
        .superseded: "Superseded", .cessationOfOperation: "Cessation Of Operation",
        .certificateHold: "Certificate Hold", .privilegeWithdrawn: "Privilege Withdrawn",
        .aaCompromise: "AA Compromise",
    ]

    /// The reasons a complete CRL may carry (removeFromCRL is for delta CRLs only).
    static let crlReasons = RevocationReason.allCases.filter { $0 != .removeFromCRL }

    func sampleEntries(_ fixture: RevocationFixture) -> [RevokedEntry] {
        Self.crlReasons.enumerated().map { index, reason in
            RevokedEntry(
                serial: [0x10, UInt8(index)], revokedAt: fixture.now - Double(3_600 * (index + 1)), reason: reason)
        }
    }

    @Test("openssl crl -text shows every entry and its reason code, the CRL number and the AKI")
    func opensslText() throws {
        let fixture = try RevocationFixture.get()
        let scratch = try Scratch()
        defer { scratch.remove() }
        let entries = sampleEntries(fixture)
        let crl = try fixture.crlBuilder().build(
            entries: entries, thisUpdate: fixture.now, nextUpdate: fixture.now + 86_400, crlNumber: 42)
        let file = try scratch.write("sample.crl", crl.derBytes)
        let (status, text) = try OpenSSL.run(["crl", "-inform", "DER", "-in", file, "-noout", "-text"])
        #expect(status == 0, "\(text)")
        #expect(text.contains("Version 2 (0x1)"))
        #expect(text.contains("Signature Algorithm: ecdsa-with-SHA256"))
        #expect(text.contains("Issuer: O = DevID, OU = test.devid, CN = DevID Issuing CA"))
        #expect(text.contains("X509v3 CRL Number: \n                42"))
        #expect(text.contains("X509v3 Authority Key Identifier: \n"))
        let ski = try #require(fixture.issuing.certificate.subjectKeyIdentifierBytes)
        #expect(text.contains(ski.map { String(format: "%02X", $0) }.joined(separator: ":")))
        for (index, entry) in entries.enumerated() {
            #expect(text.contains("Serial Number: 10" + String(format: "%02X", index)))
            if let name = Self.opensslReasonNames[entry.reason] {
                #expect(text.contains(name), "reason \(entry.reason)")
            }
        }
        // RFC 5280 §5.3.1: reasonCode unspecified SHOULD be absent, so one entry has no extension.
        #expect(text.components(separatedBy: "X509v3 CRL Reason Code").count - 1 == entries.count - 1)
        #expect(!text.contains("Unspecified"))
        #expect(!text.contains("Issuing Distribution Point"))
    }

    @Test("openssl crl -verify accepts the CA's signature", arguments: [0, 1, 9])
    func opensslVerify(entryCount: Int) throws {
        let fixture = try RevocationFixture.get()
        let scratch = try Scratch()
        defer { scratch.remove() }
        let entries = Array(sampleEntries(fixture).prefix(entryCount))
        let crl = try fixture.crlBuilder().build(
            entries: entries, thisUpdate: fixture.now, nextUpdate: fixture.now + 86_400, crlNumber: 1)
        let file = try scratch.write("verify.crl", crl.derBytes)
        let (status, output) = try OpenSSL.run([
            "crl", "-inform", "DER", "-in", file, "-CAfile", fixture.issuingFile, "-noout", "-verify",
        ])
        #expect(status == 0)
        #expect(output.contains("verify OK"), "\(output)")
        #expect(crl.isSignatureValid(issuer: fixture.issuing.certificate))
        #expect(!crl.isSignatureValid(issuer: fixture.chain.hierarchy.root))
    }

    @Test("an empty CRL has no revokedCertificates field and still verifies")
    func emptyCRL() throws {
        let fixture = try RevocationFixture.get()
        let scratch = try Scratch()
        defer { scratch.remove() }
        let crl = try fixture.crlBuilder().build(
            entries: [], thisUpdate: fixture.now, nextUpdate: fixture.now + 3_600, crlNumber: 7)
        let file = try scratch.write("empty.crl", crl.derBytes)
        let (_, text) = try OpenSSL.run(["crl", "-inform", "DER", "-in", file, "-noout", "-text"])
        #expect(text.contains("No Revoked Certificates."), "\(text)")
        let (status, output) = try OpenSSL.run([
            "crl", "-inform", "DER", "-in", file, "-CAfile", fixture.issuingFile, "-noout", "-verify",
        ])
        #expect(status == 0 && output.contains("verify OK"), "\(output)")
        // TBSCertList: version, signature, issuer, thisUpdate, nextUpdate, crlExtensions; nothing else.
        let parsed = try CertificateRevocationList(derEncoded: crl.derBytes)
        #expect(parsed.entries.isEmpty)
        #expect(parsed.crlNumber == 7)
    }

    @Test("openssl verify -crl_check rejects a revoked leaf and accepts a good one")
    func opensslVerifyCRLCheck() throws {
        let fixture = try RevocationFixture.get()
        let scratch = try Scratch()
        defer { scratch.remove() }
        let revoked = try fixture.leaf(name: "revoked")
        let good = try fixture.leaf(name: "good")
        let crl = try fixture.crlBuilder().build(
            entries: [
                RevokedEntry(serial: revoked.serialNumber, revokedAt: fixture.now - 60, reason: .keyCompromise)
            ],
            thisUpdate: fixture.now - 60, nextUpdate: fixture.now + 86_400, crlNumber: 2)
        let crlFile = try scratch.write("issuing.crl", crl.derBytes)
        let (pemStatus, pem) = try OpenSSL.run(["crl", "-inform", "DER", "-in", crlFile, "-outform", "PEM"])
        #expect(pemStatus == 0)
        #expect(pem.contains(crl.pemString.trimmingCharacters(in: .whitespacesAndNewlines)))
        let bundle = try scratch.write(
            "chain+crl.pem", PEM.bundle([fixture.issuing.certificate, fixture.chain.hierarchy.root]) + crl.pemString)

        let revokedFile = try scratch.write("revoked.pem", revoked.pemString)
        let rejected = try OpenSSL.run(["verify", "-crl_check", "-CAfile", bundle, revokedFile])
        #expect(rejected.status != 0)
        #expect(rejected.output.contains("certificate revoked"), "\(rejected.output)")

        let goodFile = try scratch.write("good.pem", good.pemString)
        let accepted = try OpenSSL.run(["verify", "-crl_check", "-CAfile", bundle, goodFile])
        #expect(accepted.status == 0)
        #expect(accepted.output.contains(": OK"), "\(accepted.output)")
    }

    @Test("a partition CRL carries a critical IDP and OpenSSL matches it against the leaf's CDP")
    func partitionedCRL() throws {
        let fixture = try RevocationFixture.get()
        let scratch = try Scratch()
        defer { scratch.remove() }
        let partitioner = CRLPartitioner(partitionCount: 4)
        func uri(_ index: Int) -> String { "http://ops.test.devid:8444/crl/issuing-4-\(index).crl" }

        // Serials chosen so that two leaves share partition `p` and a third sits in another partition.
        var generator = SeededGenerator(seed: 5_280)
        func serial(inPartition wanted: Int?, notIn avoided: Int? = nil) -> Certificate.SerialNumber {
            while true {
                var bytes = generator.bytes(16)
                bytes[0] &= 0x7F
                let serial = Certificate.SerialNumber(bytes: bytes)
                let p = partitioner.partition(for: serial)
                if let wanted, p != wanted { continue }
                if let avoided, p == avoided { continue }
                return serial
            }
        }
        let revokedSerial = serial(inPartition: nil)
        let p = partitioner.partition(for: revokedSerial)
        let goodSerial = serial(inPartition: p)
        let otherSerial = serial(inPartition: nil, notIn: p)
        let otherPartition = partitioner.partition(for: otherSerial)

        let revoked = try fixture.leaf(serial: revokedSerial, crlDistributionPoint: uri(p), name: "revoked")
        let good = try fixture.leaf(serial: goodSerial, crlDistributionPoint: uri(p), name: "good")
        let other = try fixture.leaf(serial: otherSerial, crlDistributionPoint: uri(otherPartition), name: "other")
        #expect(RevocationExtensions.crlDistributionPointURI(of: revoked) == uri(p))

        let entries = [
            RevokedEntry(serial: revokedSerial, revokedAt: fixture.now - 120, reason: .cessationOfOperation),
            RevokedEntry(serial: otherSerial, revokedAt: fixture.now - 120, reason: .keyCompromise),
        ]
        let crls = try fixture.crlBuilder().buildPartitions(
            entries: entries, partitioner: partitioner, thisUpdate: fixture.now - 60, nextUpdate: fixture.now + 3_600,
            crlNumber: 3, distributionPoint: uri)
        #expect(crls.count == 4)
        #expect(crls[p].entries.map(\.serial) == [revokedSerial])
        #expect(crls[otherPartition].entries.map(\.serial) == [otherSerial])

        let crlFile = try scratch.write("partition.crl", crls[p].derBytes)
        let (_, text) = try OpenSSL.run(["crl", "-inform", "DER", "-in", crlFile, "-noout", "-text"])
        #expect(text.contains("X509v3 Issuing Distribution Point: critical"), "\(text)")
        #expect(text.contains("URI:\(uri(p))"))
        #expect(text.contains("Only User Certificates"))
        let verified = try OpenSSL.run([
            "crl", "-inform", "DER", "-in", crlFile, "-CAfile", fixture.issuingFile, "-noout", "-verify",
        ])
        #expect(verified.output.contains("verify OK"), "\(verified.output)")

        let parsed = try CertificateRevocationList(derEncoded: crls[p].derBytes)
        #expect(parsed.distributionPoint == uri(p))
        #expect(parsed.onlyContainsUserCertificates)

        let bundle = try scratch.write(
            "chain+partition.pem",
            PEM.bundle([fixture.issuing.certificate, fixture.chain.hierarchy.root]) + crls[p].pemString)
        let revokedResult = try OpenSSL.run([
            "verify", "-crl_check", "-CAfile", bundle, try scratch.write("revoked.pem", revoked.pemString),
        ])
        #expect(revokedResult.output.contains("certificate revoked"), "\(revokedResult.output)")
        let goodResult = try OpenSSL.run([
            "verify", "-crl_check", "-CAfile", bundle, try scratch.write("good.pem", good.pemString),
        ])
        #expect(goodResult.status == 0, "\(goodResult.output)")
        // This partition's CRL does not cover a certificate whose CDP names another partition.
        let otherResult = try OpenSSL.run([
            "verify", "-crl_check", "-CAfile", bundle, try scratch.write("other.pem", other.pemString),
        ])
        #expect(otherResult.status != 0)
        #expect(otherResult.output.contains("different CRL scope"), "\(otherResult.output)")
    }

    @Test("the CRL reads back: fields, entries, reasons and whole-second times", arguments: crlReasons)
    func roundTrip(reason: RevocationReason) throws {
        let fixture = try RevocationFixture.get()
        let serials: [[UInt8]] = [
            [0x01], [0x80], [0x00, 0x00, 0x7F], [0xFF, 0xFF], Array(repeating: 0xAB, count: 20),
        ]
        let revokedAt = fixture.now - 0.75
        let entries = serials.map { RevokedEntry(serial: $0, revokedAt: revokedAt, reason: reason) }
        let crl = try fixture.crlBuilder().build(
            entries: entries, thisUpdate: fixture.now + 0.5, nextUpdate: fixture.now + 7_200, crlNumber: UInt64.max,
            distributionPoint: "http://crl.example/p-1.crl")
        let parsed = try CertificateRevocationList(derEncoded: crl.derBytes)
        #expect(parsed == crl)
        #expect(parsed.issuer == fixture.issuing.certificate.subject)
        #expect(parsed.thisUpdate == fixture.now)
        #expect(parsed.nextUpdate == fixture.now + 7_200)
        #expect(parsed.crlNumber == UInt64.max)
        #expect(parsed.authorityKeyIdentifier.map { $0[...] } == fixture.issuing.certificate.subjectKeyIdentifierBytes)
        #expect(parsed.distributionPoint == "http://crl.example/p-1.crl")
        #expect(parsed.entries.map(\.serial) == serials.map { Certificate.SerialNumber(bytes: $0) })
        #expect(parsed.entries.allSatisfy { $0.reason == reason && $0.revokedAt == revokedAt.wholeSeconds })
        #expect(parsed.isSignatureValid(issuer: fixture.issuing.certificate))
        #expect(parsed.entry(for: Certificate.SerialNumber(bytes: [0x80])) != nil)
        #expect(parsed.entry(for: Certificate.SerialNumber(bytes: [0x81])) == nil)
    }

    @Test("serial numbers are written as positive INTEGERs: 0x80 gets a leading zero, leading zeros are dropped")
    func serialEncoding() throws {
        let fixture = try RevocationFixture.get()
        let scratch = try Scratch()
        defer { scratch.remove() }
        let hexSerial: DevIDCore.SerialNumber? = .init(rawValue: "abc")
        let crl = try fixture.crlBuilder().build(
            entries: [
                RevokedEntry(serial: [0x80, 0x01], revokedAt: fixture.now, reason: .superseded),
                RevokedEntry(serial: [0x00, 0x00, 0x42], revokedAt: fixture.now, reason: .superseded),
                RevokedEntry(serial: try #require(hexSerial), revokedAt: fixture.now, reason: .superseded),
            ],
            thisUpdate: fixture.now, nextUpdate: fixture.now + 60, crlNumber: 1)
        #expect(crl.derBytes.containsSubsequence([0x02, 0x03, 0x00, 0x80, 0x01]))
        #expect(crl.derBytes.containsSubsequence([0x02, 0x01, 0x42]))
        #expect(crl.derBytes.containsSubsequence([0x02, 0x02, 0x0A, 0xBC]))
        let (_, text) = try OpenSSL.run([
            "crl", "-inform", "DER", "-in", try scratch.write("serials.crl", crl.derBytes), "-noout", "-text",
        ])
        #expect(text.contains("Serial Number: 8001"))
        #expect(text.contains("Serial Number: 42"))
        #expect(text.contains("Serial Number: 0ABC"))
    }

    @Test("dates from 2050 are GeneralizedTime, earlier ones UTCTime (RFC 5280 §5.1.2.4)")
    func timeEncoding() throws {
        let fixture = try RevocationFixture.get()
        let scratch = try Scratch()
        defer { scratch.remove() }
        let y2050 = Date(timeIntervalSince1970: 2_524_608_000)  // 2050-01-01T00:00:00Z
        let crl = try fixture.crlBuilder().build(
            entries: [
                RevokedEntry(serial: [1], revokedAt: y2050 - 1, reason: .superseded),
                RevokedEntry(serial: [2], revokedAt: y2050, reason: .superseded),
            ],
            thisUpdate: fixture.now, nextUpdate: y2050 + 86_400 * 366, crlNumber: 1)
        #expect(crl.derBytes.containsSubsequence([0x17, 0x0D] + Array("491231235959Z".utf8)))
        #expect(crl.derBytes.containsSubsequence([0x18, 0x0F] + Array("20500101000000Z".utf8)))
        #expect(crl.derBytes.containsSubsequence([0x18, 0x0F] + Array("20510102000000Z".utf8)))
        let parsed = try CertificateRevocationList(derEncoded: crl.derBytes)
        #expect(parsed.entries.map(\.revokedAt) == [y2050 - 1, y2050])
        #expect(parsed.nextUpdate == y2050 + 86_400 * 366)
        let (_, text) = try OpenSSL.run([
            "crl", "-inform", "DER", "-in", try scratch.write("times.crl", crl.derBytes), "-noout", "-text",
        ])
        #expect(text.contains("Dec 31 23:59:59 2049 GMT"))
        #expect(text.contains("Jan  1 00:00:00 2050 GMT"))
    }

    @Test("the builder refuses what RFC 5280 forbids")
    func refusals() throws {
        let fixture = try RevocationFixture.get()
        let builder = try fixture.crlBuilder()
        #expect(throws: DevIDPKIError(.policyViolation, "")) {
            try builder.build(entries: [], thisUpdate: fixture.now, nextUpdate: fixture.now, crlNumber: 1)
        }
        #expect(throws: DevIDPKIError(.policyViolation, "")) {
            try builder.build(
                entries: [RevokedEntry(serial: [1], revokedAt: fixture.now, reason: .removeFromCRL)],
                thisUpdate: fixture.now, nextUpdate: fixture.now + 1, crlNumber: 1)
        }
        #expect(throws: DevIDPKIError(.policyViolation, "")) {
            try builder.build(
                entries: [], thisUpdate: fixture.now, nextUpdate: fixture.now + 1, crlNumber: 1,
                distributionPoint: "http://bad uri")
        }
        // A leaf cannot issue CRLs.
        let leafKey = try KeyMaterial.generate(.p256)
        let leafCert = try fixture.issuing.issue(
            subject: try DistinguishedName { CommonName("leaf") }, publicKey: leafKey.publicKey, profile: .ldevid,
            now: fixture.now)
        #expect(throws: DevIDPKIError(.policyViolation, "")) {
            try CRLBuilder(authority: try CertificateAuthority(certificate: leafCert, signingKey: leafKey))
        }
    }

    @Test(
        "garbage does not parse as a CRL",
        arguments: [[], [0x30, 0x00], [0x30, 0x80, 0x00, 0x00], [0xFF]] as [[UInt8]])
    func parseGarbage(bytes: [UInt8]) {
        #expect(throws: DevIDPKIError(.malformed, "")) { try CertificateRevocationList(derEncoded: bytes) }
    }

    @Test("a P-384 root signs its CRL with ecdsa-with-SHA384")
    func p384Root() throws {
        let fixture = try RevocationFixture.get()
        let scratch = try Scratch()
        defer { scratch.remove() }
        // The root's key is not loaded by the hierarchy; make a P-384 root of our own.
        let key = try KeyMaterial.generate(.p384)
        let root = try CertificateAuthority.makeRoot(
            subject: try DistinguishedName { CommonName("P-384 Root") }, key: key, profile: .root, now: fixture.now)
        let crl = try CRLBuilder(authority: root).build(
            entries: [RevokedEntry(serial: [9], revokedAt: fixture.now, reason: .caCompromise)],
            thisUpdate: fixture.now, nextUpdate: fixture.now + 60, crlNumber: 1)
        let caFile = try scratch.write("p384.pem", root.certificate.pemString)
        let (_, output) = try OpenSSL.run([
            "crl", "-inform", "DER", "-in", try scratch.write("p384.crl", crl.derBytes), "-CAfile", caFile, "-noout",
            "-verify", "-text",
        ])
        #expect(output.contains("verify OK"), "\(output)")
        #expect(output.contains("ecdsa-with-SHA384"))
    }

    @Test("a 100,000-entry CRL builds, and OpenSSL parses and verifies it")
    func hundredThousandEntries() throws {
        let fixture = try RevocationFixture.get()
        let scratch = try Scratch()
        defer { scratch.remove() }
        let entries = RevocationBenchmark.entries(count: 100_000, now: fixture.now)
        let clock = ContinuousClock()
        var crl: CertificateRevocationList?
        let elapsed = try clock.measure {
            crl = try fixture.crlBuilder().build(
                entries: entries, thisUpdate: fixture.now, nextUpdate: fixture.now + 86_400, crlNumber: 100_000)
        }
        let built = try #require(crl)
        print("100k-entry CRL: \(built.derBytes.count) bytes, built in \(elapsed)")
        let file = try scratch.write("big.crl", built.derBytes)
        let verified = try OpenSSL.run([
            "crl", "-inform", "DER", "-in", file, "-CAfile", fixture.issuingFile, "-noout", "-verify",
        ])
        #expect(verified.output.contains("verify OK"), "\(verified.output)")
        let (status, text) = try OpenSSL.run(["crl", "-inform", "DER", "-in", file, "-noout", "-text"])
        #expect(status == 0)
        #expect(text.components(separatedBy: "Serial Number: ").count - 1 == 100_000)
    }
}

extension Array where Element == UInt8 {
    func containsSubsequence(_ needle: [UInt8]) -> Bool {
        guard !needle.isEmpty, needle.count <= count else { return needle.isEmpty }
        for start in 0...(count - needle.count) where self[start] == needle[0] {
            if self[start..<(start + needle.count)].elementsEqual(needle) { return true }
        }
        return false
    }
}
