import DevIDCore
import DevIDPKI
import Foundation
import SwiftASN1
import X509

/// Targets for the PKI parsers: what devices, EST clients, OCSP clients and key files send DevID.
enum PKITargets {
    /// The passphrase the encrypted-key seeds are encrypted with, so mutations reach past the decryption.
    static let passphrase = Array("fuzz-passphrase".utf8)
    /// The PBKDF2 work one input may ask for: a fuzzed iteration count must not make one execution take seconds.
    static let maximumIterations = 1_024

    static let device = DeviceID(rawValue: "dev-1")!
    static let tenant = TenantID(rawValue: "acme")!

    /// `POST /simpleenroll` and `/simplereenroll` after base64: PKCS#10, proof of possession, DevID's name rules.
    static let csr = FuzzTarget(
        name: "csr", maximumLength: 4_096,
        summary: "PKCS#10 CSR DER: parse and verify, re-encode and parse again, profile and name checks"
    ) { bytes throws(FuzzFailure) in
        let request: EnrollmentRequest
        do { request = try EnrollmentRequest(der: bytes) } catch { return }
        var serializer = DER.Serializer()
        do { try serializer.serialize(request.csr) } catch { throw FuzzFailure("csr", "a parsed CSR does not encode") }
        let again: EnrollmentRequest
        do {
            again = try EnrollmentRequest(der: serializer.serializedBytes)
        } catch {
            throw FuzzFailure("csr", "a re-encoded CSR does not parse: \(error)")
        }
        try require(again.csr == request.csr, "csr", "a CSR changed in a round trip")
        try require(again.requestedURIs == request.requestedURIs, "csr", "URIs changed in a round trip")
        try require(again.keyAlgorithm == request.keyAlgorithm, "csr", "key algorithm changed in a round trip")
        _ = try? request.check(profile: .ldevid)
        _ = try? request.checkNames(device: device, tenant: tenant, trustDomain: "devid.test")
    }

    /// An EST body as the server (CSR) and the agent (certs-only CMS) read it: base64 or PEM, then DER.
    static let estBody = FuzzTarget(
        name: "est-body", maximumLength: 8_192,
        summary: "EST body base64/PEM: decode, re-encode round trip, agree with Foundation, then CSR and CMS parse"
    ) { bytes throws(FuzzFailure) in
        guard let der = ESTBase64.decode(bytes) else { return }
        try require(!der.isEmpty, "est-body", "decoded to nothing")
        let encoded = Array(ESTBase64.encode(der).utf8)
        try require(ESTBase64.decode(encoded) == der, "est-body", "encode then decode changed the bytes")
        // Plain padded base64 without whitespace: Foundation must agree wherever it accepts the text.
        if let reference = Data(base64Encoded: Data(bytes)), !reference.isEmpty {
            try require(Array(reference) == der, "est-body", "disagrees with Foundation's base64")
        }
        _ = try? EnrollmentRequest(der: der)
        _ = try? CertsOnlyCMS(derEncoded: der)
    }

    /// The certs-only CMS of `/cacerts` and the enrollment responses, as the agent reads it.
    static let cms = FuzzTarget(
        name: "cms", maximumLength: 8_192,
        summary: "certs-only CMS (BER/DER): parse, encode, parse again: the same certificates"
    ) { bytes throws(FuzzFailure) in
        let cms: CertsOnlyCMS
        do { cms = try CertsOnlyCMS(derEncoded: bytes) } catch { return }
        let der: [UInt8]
        do { der = try cms.derBytes() } catch { throw FuzzFailure("cms", "a parsed CMS does not encode") }
        let again: CertsOnlyCMS
        do { again = try CertsOnlyCMS(derEncoded: der) } catch {
            throw FuzzFailure("cms", "an encoded CMS does not parse: \(error)")
        }
        try require(again.certificates.count == cms.certificates.count, "cms", "certificate count changed")
        try require(Set(again.certificates) == Set(cms.certificates), "cms", "certificates changed")
    }

    /// The `/csrattrs` body an EST client reads.
    static let csrAttributes = FuzzTarget(
        name: "csrattrs", maximumLength: 2_048,
        summary: "EST CsrAttrs DER: parse, encode, parse again: the encoding is stable"
    ) { bytes throws(FuzzFailure) in
        let attributes: CSRAttributes
        do { attributes = try CSRAttributes(derEncoded: bytes) } catch { return }
        let der: [UInt8]
        do { der = try attributes.derBytes() } catch { return }  // a value that is not DER (e.g. BER) may not encode
        let again: CSRAttributes
        do { again = try CSRAttributes(derEncoded: der) } catch {
            throw FuzzFailure("csrattrs", "encoded CsrAttrs does not parse")
        }
        let derAgain: [UInt8]
        do { derAgain = try again.derBytes() } catch {
            throw FuzzFailure("csrattrs", "re-parsed CsrAttrs does not encode")
        }
        try require(derAgain == der, "csrattrs", "the encoding changed in a round trip")
    }

    /// `POST /ocsp`: a DER OCSPRequest.
    static let ocspRequest = FuzzTarget(
        name: "ocsp-request", maximumLength: 16_384,
        summary: "OCSP request DER (POST body): parse within the size and CertID limits"
    ) { bytes throws(FuzzFailure) in
        let parser = OCSPRequestParser()
        guard let request = try? parser.parse(bytes) else { return }
        try require(
            (1...parser.maximumCertificateIDs).contains(request.certificateIDs.count), "ocsp-request",
            "\(request.certificateIDs.count) CertIDs got through")
    }

    /// `GET /ocsp/<url-encoded base64>`.
    static let ocspGet = FuzzTarget(
        name: "ocsp-get", maximumLength: 8_192,
        summary: "OCSP GET path component: percent-decode, base64 (standard or URL-safe), then the DER parser"
    ) { bytes throws(FuzzFailure) in
        let parser = OCSPRequestParser()
        let component = String(decoding: bytes, as: UTF8.self)
        guard let request = try? parser.parse(getPathComponent: component) else { return }
        try require(
            (1...parser.maximumCertificateIDs).contains(request.certificateIDs.count), "ocsp-get",
            "\(request.certificateIDs.count) CertIDs got through")
    }

    /// A PEM key or certificate file (CA keys, agent keys, trust bundles).
    static let privateKeyPEM = FuzzTarget(
        name: "pem-key", maximumLength: 8_192,
        summary: "PEM key files (PKCS#8, SEC1, encrypted PKCS#8) and certificate bundles, PBKDF2 capped"
    ) { bytes throws(FuzzFailure) in
        let text = String(decoding: bytes, as: UTF8.self)
        let key = try? KeyMaterial.privateKey(pem: text, passphrase: passphrase, maximumIterations: maximumIterations)
        if let key { _ = KeyMaterial.fingerprint(key.publicKey) }
        if let certificates = try? PEM.certificates(text) {
            let again = try? PEM.certificates(PEM.bundle(certificates))
            try require(again == certificates, "pem-key", "a certificate bundle changed in a round trip")
        }
    }

    /// An `EncryptedPrivateKeyInfo` DER (PBES2: PBKDF2 + AES-CBC).
    static let encryptedPKCS8 = FuzzTarget(
        name: "encrypted-pkcs8", maximumLength: 2_048,
        summary: "EncryptedPrivateKeyInfo/PBES2 DER: decrypt with a capped PBKDF2 count, re-encrypt round trip"
    ) { bytes throws(FuzzFailure) in
        guard
            let plaintext = try? EncryptedPrivateKey.decrypt(
                der: bytes, passphrase: passphrase, maximumIterations: maximumIterations)
        else { return }
        let again: [UInt8]
        do {
            let encrypted = try EncryptedPrivateKey.encryptDER(
                privateKeyInfoDER: plaintext, passphrase: passphrase, iterations: 1)
            again = try EncryptedPrivateKey.decrypt(der: encrypted, passphrase: passphrase, maximumIterations: 1)
        } catch {
            throw FuzzFailure("encrypted-pkcs8", "a decrypted key does not re-encrypt: \(error)")
        }
        try require(again == plaintext, "encrypted-pkcs8", "a key changed in a round trip")
        _ = try? KeyMaterial.privateKey(pkcs8: plaintext)
    }
}
