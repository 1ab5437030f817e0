import Crypto
import DevIDPKCS11
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

/// The PKCS#11 layer against a real module: SoftHSM2, in a temporary token directory.
@Suite("PKCS#11 keys in SoftHSM2", .serialized)
struct SoftHSMTokenTests {
    let hsm: SoftHSM

    init() throws {
        hsm = try SoftHSM.shared()
    }

    /// The shared token (SoftHSM2 sees no token made after it is loaded); each test uses labels of its own.
    func token() throws -> String { SoftHSM.sharedToken }
    let unique = String(UUID().uuidString.prefix(8))

    @Test("a P-256 key made in the token signs certificates that verify; it is sensitive and never extractable")
    func generateAndSign() throws {
        let label = try token()
        let uri = try PKCS11URI(hsm.uri(token: label))
        let key = try PKCS11PrivateKey.generate(in: uri, label: "issuing-\(unique)", curve: .p256)
        #expect(try key.isProtected())
        #expect(key.uri.object == "issuing-\(unique)")
        let signing = Certificate.PrivateKey(key)
        let name = try DistinguishedName { CommonName("HSM test CA") }
        let now = Date()
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: key.publicKey, notValidBefore: now,
            notValidAfter: now + 3600, issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: Certificate.Extensions {}, issuerPrivateKey: signing)
        #expect(key.publicKey.isValidSignature(certificate.signature, for: certificate))
        // Opened again by its URI (a new handle), it is the same key.
        let again = try PKCS11PrivateKey.open(try PKCS11URI(hsm.uri(token: label, object: "issuing-\(unique)")))
        #expect(again.publicKey == key.publicKey)
        let digest = Array(SHA256.hash(data: Array("hello".utf8)))
        let der = try again.signDigest(digest)
        let signature = try P256.Signing.ECDSASignature(derRepresentation: der)
        let publicKey = try #require(P256.Signing.PublicKey(key.publicKey))
        #expect(publicKey.isValidSignature(signature, for: SHA256.hash(data: Array("hello".utf8))))
        #expect(try hsm.uri(token: label).isEmpty == false)
    }

    @Test("a P-384 key (a root's) signs with ecdsa-with-SHA384")
    func p384() throws {
        let label = try token()
        let key = try PKCS11PrivateKey.generate(in: try PKCS11URI(hsm.uri(token: label)), label: "root-\(unique)", curve: .p384)
        #expect(key.defaultSignatureAlgorithm == .ecdsaWithSHA384)
        let name = try DistinguishedName { CommonName("HSM test root") }
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: key.publicKey, notValidBefore: Date(),
            notValidAfter: Date() + 3600, issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA384,
            extensions: Certificate.Extensions {}, issuerPrivateKey: Certificate.PrivateKey(key))
        #expect(certificate.signatureAlgorithm == .ecdsaWithSHA384)
        #expect(key.publicKey.isValidSignature(certificate.signature, for: certificate))
    }

    @Test("a signature algorithm the key cannot make is refused as mechanismUnsupported, and nothing is signed")
    func mechanismUnsupported() throws {
        let key = try PKCS11PrivateKey.generate(
            in: try PKCS11URI(hsm.uri(token: try token())), label: "m-\(unique)", curve: .p384)
        #expect {
            _ = try key.signSynchronously(bytes: Array("x".utf8), signatureAlgorithm: .ecdsaWithSHA256)
        } throws: { error in
            (error as? PKCS11Error)?.code == .mechanismUnsupported
                && (error as? PKCS11Error)?.reason == "key m-\(unique) signs with \(Certificate.SignatureAlgorithm.ecdsaWithSHA384) only"
        }
        try key.destroy()
    }

    @Test("the same label twice is refused; destroy removes both objects")
    func labelsAreUnique() throws {
        let label = try token()
        let uri = try PKCS11URI(hsm.uri(token: label))
        let key = try PKCS11PrivateKey.generate(in: uri, label: "k-\(unique)", curve: .p256)
        #expect {
            _ = try PKCS11PrivateKey.generate(in: uri, label: "k-\(unique)", curve: .p256)
        } throws: { ($0 as? PKCS11Error)?.code == .alreadyExists }
        #expect(try key.token.privateKeyLabels().filter { $0 == "k-\(unique)" }.count == 1)
        try key.destroy()
        #expect(try !key.token.privateKeyLabels().contains("k-\(unique)"))
        #expect {
            _ = try PKCS11PrivateKey.open(try PKCS11URI(hsm.uri(token: label, object: "k-\(unique)")))
        } throws: { ($0 as? PKCS11Error)?.code == .keyNotFound }
    }

    @Test(
        "failures are clear: no such token, no such key, no module (a wrong PIN: HSMCATests, in a process of its own)",
        arguments: [
            ("no token", PKCS11Error.Code.tokenNotFound),
            ("no key", .keyNotFound),
            ("no module", .moduleUnavailable),
            ("not a module", .moduleUnavailable),
        ])
    func failures(_ situation: String, _ code: PKCS11Error.Code) throws {
        let label = try token()
        let text: String
        switch situation {
        case "no token": text = hsm.uri(token: "nope-\(label)", object: "k")
        case "no key": text = hsm.uri(token: label, object: "missing")
        case "no module": text = "pkcs11:token=\(label);object=k?module-path=/nonexistent/lib.so"
        default: text = "pkcs11:token=\(label);object=k?module-path=/usr/lib/x86_64-linux-gnu/libc.so.6"
        }
        #expect {
            _ = try PKCS11PrivateKey.open(try PKCS11URI(text))
        } throws: { error in
            guard let error = error as? PKCS11Error else { return false }
            return error.code == code && !error.reason.contains("0000") && !error.reason.contains(SoftHSM.userPIN)
        }
    }

    @Test("eight threads sign at once through the session pool")
    func concurrent() async throws {
        let label = try token()
        let key = try PKCS11PrivateKey.generate(in: try PKCS11URI(hsm.uri(token: label)), label: "c-\(unique)", curve: .p256)
        let publicKey = try #require(P256.Signing.PublicKey(key.publicKey))
        try await withThrowingTaskGroup(of: Bool.self) { group in
            for worker in 0..<8 {
                group.addTask {
                    var ok = true
                    for round in 0..<25 {
                        let message = Array("\(worker)-\(round)".utf8)
                        let der = try key.signDigest(Array(SHA256.hash(data: message)))
                        let signature = try P256.Signing.ECDSASignature(derRepresentation: der)
                        if !publicKey.isValidSignature(signature, for: SHA256.hash(data: message)) { ok = false }
                    }
                    return ok
                }
            }
            for try await ok in group { #expect(ok) }
        }
    }

    @Test("a token that goes away fails signing cleanly (tokenUnavailable) and is used again when it returns")
    func tokenRemoved() throws {
        let key = try PKCS11PrivateKey.generate(
            in: try PKCS11URI(hsm.uri(token: try token())), label: "gone-\(unique)", curve: .p256)
        let digest = Array(SHA256.hash(data: Array("x".utf8)))
        _ = try key.signDigest(digest)
        let tokens = hsm.directory.file("tokens")
        let away = hsm.directory.file("away-\(unique)")
        try FileManager.default.createDirectory(atPath: away, withIntermediateDirectories: true)
        let entries = try FileManager.default.contentsOfDirectory(atPath: tokens)
        for entry in entries { try FileManager.default.moveItem(atPath: tokens + "/" + entry, toPath: away + "/" + entry) }
        var failure: PKCS11Error?
        do { _ = try key.signDigest(digest) } catch { failure = error }
        for entry in entries { try FileManager.default.moveItem(atPath: away + "/" + entry, toPath: tokens + "/" + entry) }
        #expect(failure?.code == .tokenUnavailable, "\(String(describing: failure))")
        #expect(failure?.reason == "token devid-unit is not present in \(SoftHSM.module) (removed?)")
        // The module is re-initialized at most every two seconds (SoftHSM2 sees a returned token only then).
        Thread.sleep(forTimeInterval: 2.1)
        var recovered: (any Error)?
        do { _ = try key.signDigest(digest) } catch { recovered = error }
        #expect(recovered == nil, "\(String(describing: recovered))")
        // Other keys of the token work again too (their handles were found again, not reused).
        let other = try PKCS11PrivateKey.open(try PKCS11URI(hsm.uri(token: try token(), object: "gone-\(unique)")))
        _ = try other.signDigest(digest)
    }
}
