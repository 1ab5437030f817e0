import Crypto
import DevIDCore
import DevIDPKI
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

/// A CA hierarchy made at the machine's real time (OpenSSL checks CRL and OCSP times against its own clock), the
/// files OpenSSL needs, and helpers to issue leaves and run `openssl`.
struct RevocationFixture: Sendable {
    static let shared: Result<RevocationFixture, any Error> = Result { try RevocationFixture() }
    static func get() throws -> RevocationFixture { try shared.get() }

    let chain: TestChain
    let now: Date
    /// The delegated OCSP responder: certificate and key, profile `.ocspSigning`, issued by the issuing CA.
    let responderCertificate: Certificate
    let responderKey: Certificate.PrivateKey
    /// issuing.pem, root.pem, chain.pem (issuing + root) in the chain's directory.
    let issuingFile: String
    let rootFile: String
    let chainFile: String

    var issuing: CertificateAuthority { chain.hierarchy.issuing }

    init() throws {
        now = Date().wholeSeconds
        chain = try TestChain(clock: ManualWallClock(now))
        responderKey = try KeyMaterial.generate(.p256)
        responderCertificate = try chain.hierarchy.issuing.issue(
            subject: try DistinguishedName { CommonName("DevID OCSP Responder") }, publicKey: responderKey.publicKey,
            profile: .ocspSigning, now: now)
        issuingFile = try chain.directory.write("issuing.pem", chain.hierarchy.issuing.certificate.pemString)
        rootFile = try chain.directory.write("root.pem", chain.hierarchy.root.pemString)
        chainFile = try chain.directory.write(
            "chain.pem", PEM.bundle([chain.hierarchy.issuing.certificate, chain.hierarchy.root]))
    }

    /// A P-256 end-entity certificate from the issuing CA with the given serial and, optionally, a CRL Distribution
    /// Point and an OCSP AIA.
    func leaf(
        serial: Certificate.SerialNumber = Certificate.SerialNumber(), crlDistributionPoint: String? = nil,
        ocspURL: String? = nil, name: String = "device"
    ) throws -> Certificate {
        let key = Certificate.PrivateKey(P256.Signing.PrivateKey())
        var extensions = Certificate.Extensions()
        try extensions.append(Certificate.Extension(BasicConstraints.notCertificateAuthority, critical: true))
        try extensions.append(Certificate.Extension(KeyUsage(digitalSignature: true), critical: true))
        try extensions.append(Certificate.Extension(try ExtendedKeyUsage([.clientAuth]), critical: false))
        try extensions.append(
            Certificate.Extension(SubjectKeyIdentifier(hash: key.publicKey), critical: false))
        try extensions.append(
            Certificate.Extension(
                AuthorityKeyIdentifier(keyIdentifier: issuing.certificate.subjectKeyIdentifierBytes),
                critical: false))
        if let crlDistributionPoint {
            try extensions.append(RevocationExtensions.crlDistributionPoint(uri: crlDistributionPoint))
        }
        if let ocspURL {
            try extensions.append(RevocationExtensions.authorityInformationAccess(ocsp: ocspURL))
        }
        return try Certificate(
            version: .v3, serialNumber: serial, publicKey: key.publicKey, notValidBefore: now - 300,
            notValidAfter: now + 30 * 86_400, issuer: issuing.certificate.subject,
            subject: try DistinguishedName { CommonName(name) }, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: extensions, issuerPrivateKey: issuing.signingKey)
    }

    func crlBuilder() throws -> CRLBuilder { try CRLBuilder(authority: issuing) }

    func responder() throws -> OCSPResponder {
        try OCSPResponder(
            issuer: issuing.certificate, responderCertificate: responderCertificate, responderKey: responderKey)
    }
}

/// A scratch directory for one test's files.
struct Scratch {
    let directory: TemporaryDirectory

    init() throws { directory = try TemporaryDirectory(prefix: "devid-revocation") }

    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let path = directory.file(name)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    func write(_ name: String, _ text: String) throws -> String { try directory.write(name, text) }

    func read(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: directory.file(name))))
    }

    func remove() { directory.remove() }
}

enum OpenSSL {
    /// Runs `openssl` with `arguments`, returning stdout and stderr together (OpenSSL splits its verdicts between
    /// the two) and the exit status.
    @discardableResult
    static func run(_ arguments: [String]) throws -> (status: Int32, output: String) {
        let result = try ExternalTool.run(["openssl"] + arguments)
        return (result.status, result.stdout + result.stderr)
    }
}

extension Date {
    /// CRLs and OCSP carry whole seconds.
    var wholeSeconds: Date { Date(timeIntervalSince1970: timeIntervalSince1970.rounded(.down)) }
}

/// A small deterministic generator (SplitMix64) so that fuzz inputs and serials are reproducible from a seed.
struct SeededGenerator: RandomNumberGenerator {
    private var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func bytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8.random(in: .min ... .max, using: &self) }
    }
}
