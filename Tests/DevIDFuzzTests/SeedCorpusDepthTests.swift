import DevIDAgent
import DevIDCore
import DevIDPKI
import DevIDServer
import Foundation
import Testing

/// The valid seeds really are valid: a seed the parser refuses would leave the fuzzer mutating garbage from the
/// start, never reaching the code behind a successful parse.
@Suite("Fuzz seed corpus depth")
struct SeedCorpusDepthTests {
    static func seed(_ target: String, _ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: FuzzCorpusTests.corpus.appendingPathComponent(target).appendingPathComponent(name)))
    }

    /// A seed `Fuzz/make-key-seeds.sh` made for this run.
    static func keySeed(_ target: String, _ name: String) throws -> [UInt8] {
        let folder = try FuzzCorpusTests.generatedSeeds.get()
        return Array(try Data(contentsOf: folder.appendingPathComponent(target).appendingPathComponent(name)))
    }

    static let passphrase = Array("fuzz-passphrase".utf8)

    @Test("the CSR seeds verify, and the near-valid ones are refused with their reason")
    func csrSeeds() throws {
        for name in ["p256-device.der", "ed25519.der", "rsa2048.der", "empty-subject.der"] {
            #expect(throws: Never.self, "\(name)") { try EnrollmentRequest(der: try Self.seed("csr", name)) }
        }
        let request = try EnrollmentRequest(der: try Self.seed("csr", "p256-device.der"))
        try request.checkNames(
            device: DeviceID(rawValue: "dev-1")!, tenant: TenantID(rawValue: "acme")!, trustDomain: "devid.test")
        #expect(throws: DevIDPKIError(.invalidSignature, "")) {
            try EnrollmentRequest(der: try Self.seed("csr", "bad-signature.der"))
        }
        #expect(throws: DevIDPKIError(.malformed, "")) {
            try EnrollmentRequest(der: try Self.seed("csr", "truncated.der"))
        }
    }

    @Test("the EST body seeds decode to a CSR or a certs-only CMS")
    func estBodySeeds() throws {
        for name in ["csr-crlf.b64", "csr-one-line.b64", "csr-unpadded.b64", "csr.pem"] {
            let der = try #require(ESTBase64.decode(try Self.seed("est-body", name)), "\(name)")
            #expect(throws: Never.self, "\(name)") { try EnrollmentRequest(der: der) }
        }
        let der = try #require(ESTBase64.decode(try Self.seed("est-body", "certs-only.b64")))
        #expect(try CertsOnlyCMS(derEncoded: der).certificates.count == 1)
    }

    @Test("the CMS, csrattrs and OCSP seeds parse")
    func derSeeds() throws {
        #expect(try CertsOnlyCMS(derEncoded: try Self.seed("cms", "chain.der")).certificates.count == 3)
        #expect(try CSRAttributes(derEncoded: try Self.seed("csrattrs", "rfc7030-example.der")).elements.count == 4)
        let parser = OCSPRequestParser()
        #expect(try parser.parse(try Self.seed("ocsp-request", "nonce.der")).nonce != nil)
        #expect(try parser.parse(try Self.seed("ocsp-request", "two-sha256.der")).certificateIDs.count == 2)
        for name in ["base64.txt", "percent-encoded.txt", "url-safe-unpadded.txt"] {
            let component = String(decoding: try Self.seed("ocsp-get", name), as: UTF8.self)
            #expect(throws: Never.self, "\(name)") { try parser.parse(getPathComponent: component) }
        }
    }

    @Test("the generated key seeds open with the fuzz passphrase at a low iteration count")
    func keySeeds() throws {
        for name in ["aes256-sha256-iter1.der", "aes128-sha1-iter2.der", "aes192-sha512-iter3.der"] {
            let der = try EncryptedPrivateKey.decrypt(
                der: try Self.keySeed("encrypted-pkcs8", name), passphrase: Self.passphrase, maximumIterations: 3)
            #expect(throws: Never.self, "\(name)") { try KeyMaterial.privateKey(pkcs8: der) }
        }
        #expect(throws: DevIDPKIError(.wrongPassphrase, "")) {
            try EncryptedPrivateKey.decrypt(
                der: try Self.keySeed("encrypted-pkcs8", "wrong-passphrase.der"), passphrase: Self.passphrase)
        }
        for name in ["pkcs8-p256.pem", "sec1-p256.pem", "pkcs8-p384.pem", "encrypted-p256.pem"] {
            let pem = String(decoding: try Self.keySeed("pem-key", name), as: UTF8.self)
            #expect(throws: Never.self, "\(name)") { try KeyMaterial.privateKey(pem: pem, passphrase: Self.passphrase) }
        }
    }

    @Test("the JSON seeds decode and pass the routes' checks; the near misses are refused")
    func jsonSeeds() throws {
        #expect(throws: Never.self) {
            try AdminRequestBody.lotManifest.check(try Self.seed("lot-manifest", "two-devices.json"))
        }
        #expect(throws: (any Error).self) {
            try AdminRequestBody.lotManifest.check(try Self.seed("lot-manifest", "dotted-device.json"))
        }
        #expect(throws: Never.self) {
            try AdminRequestBody.topicPolicy.check(try Self.seed("topic-policy", "default.json"))
        }
        #expect(throws: (any Error).self) {
            try AdminRequestBody.topicPolicy.check(try Self.seed("topic-policy", "escapes-tenant.json"))
        }
        let files = try FileManager.default.contentsOfDirectory(
            atPath: FuzzCorpusTests.corpus.appendingPathComponent("admin-json").path)
        var kinds = Set<AdminRequestBody>()
        for name in files {
            let bytes = try Self.seed("admin-json", name)
            let kind = AdminRequestBody.allCases[Int(bytes[0]) % AdminRequestBody.allCases.count]
            #expect(throws: Never.self, "\(name)") { try kind.check(Array(bytes.dropFirst())) }
            kinds.insert(kind)
        }
        // Every body but the lot manifest (its own target's seeds) has a seed.
        #expect(kinds == Set(AdminRequestBody.allCases).subtracting([.lotManifest]))
    }

    @Test("the HTTP date seeds parse")
    func httpDateSeeds() throws {
        #expect(HTTPDate.parse(String(decoding: try Self.seed("http-date", "imf-fixdate.txt"), as: UTF8.self)) != nil)
        let stamp = String(decoding: try Self.seed("http-date", "devid-time.txt"), as: UTF8.self)
        #expect(HTTPDate.parseRFC3339(stamp) != nil)
    }
}

/// A key file decides how much PBKDF2 work reading it costs; a reader can bound it.
@Suite("PBKDF2 work bound")
struct PBKDF2WorkBoundTests {
    @Test("a file asking for more iterations than the reader allows is refused before any derivation")
    func overTheCapIsRefused() throws {
        let pkcs8 = try KeyMaterial.generateWithDER(.p256).pkcs8
        let passphrase = Array("correct horse".utf8)
        let der = try EncryptedPrivateKey.encryptDER(
            privateKeyInfoDER: pkcs8, passphrase: passphrase, iterations: 2_048)
        #expect(throws: DevIDPKIError(.malformed, "")) {
            try EncryptedPrivateKey.decrypt(der: der, passphrase: passphrase, maximumIterations: 1_024)
        }
        let pem = try EncryptedPrivateKey.encryptPEM(
            privateKeyInfoDER: pkcs8, passphrase: passphrase, iterations: 2_048)
        #expect(throws: DevIDPKIError(.malformed, "")) {
            try KeyMaterial.privateKey(pem: pem, passphrase: passphrase, maximumIterations: 2_047)
        }
        // At or under the bound, and with the default (the parser's 10,000,000), it opens.
        #expect(try EncryptedPrivateKey.decrypt(der: der, passphrase: passphrase, maximumIterations: 2_048) == pkcs8)
        #expect(try EncryptedPrivateKey.decrypt(der: der, passphrase: passphrase) == pkcs8)
        _ = try KeyMaterial.privateKey(pem: pem, passphrase: passphrase)
    }
}
