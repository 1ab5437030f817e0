import AsyncHTTPClient
import Crypto
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import SwiftASN1
import Testing
import X509

/// A live server with a tenant, plus helpers to build CSRs and check refusals.
struct ESTFixture {
    let server: LiveServer
    let tenant = TenantID(rawValue: "acme")!

    init(policy: TenantPolicy = TenantPolicy()) async throws {
        server = try await LiveServer()
        try await server.state.store.createTenant(
            Tenant(id: tenant, displayName: "Acme", createdAt: server.clock.now(), policy: policy), audit: nil)
    }

    var store: any Store { server.state.store }
    var hierarchy: CAHierarchy { server.state.hierarchy }

    func url(_ operation: String, label: String? = nil) -> String {
        server.estURL + "/.well-known/est/" + (label.map { "\($0)/" } ?? "") + operation
    }

    /// A claim token stored in the registry; returns its secret.
    func token(device: String? = nil, uses: Int = 1, ttl: TimeInterval = 3_600, tenant: TenantID? = nil) async throws
        -> (id: String, secret: String)
    {
        let generated = ClaimTokens.generate()
        try await store.insertClaimToken(
            ClaimToken(
                id: generated.id, secretHash: generated.hash, tenant: tenant ?? self.tenant,
                device: device.map { DeviceID(rawValue: $0)! }, expiresAt: server.clock.now().addingTimeInterval(ttl),
                usesRemaining: uses, createdAt: server.clock.now()),
            audit: nil)
        return (generated.id, generated.secret)
    }

    /// An allowlisted device with an IDevID from the server's manufacturer CA.
    func idevid(_ serial: String, state: DeviceState = .manufactured, register: Bool = true) async throws -> (
        key: Certificate.PrivateKey, certificate: Certificate
    ) {
        if register {
            try await store.insertDevice(
                Device(
                    id: DeviceID(derivedFromHardwareSerial: serial), tenant: tenant, hardwareSerial: serial, lot: nil,
                    state: state, createdAt: server.clock.now()),
                audit: nil)
        }
        let key = try KeyMaterial.generate(.p256)
        let cert = try #require(hierarchy.manufacturer).issueIDevID(
            hardwareSerial: serial, publicKey: key.publicKey, now: server.clock.now())
        return (key, cert)
    }

    /// A PKCS#10 CSR (DER) signed by `key`.
    static func csr(commonName: String? = nil, organization: String? = nil, key: Certificate.PrivateKey) throws -> [UInt8] {
        var rdns: [RelativeDistinguishedName] = []
        if let organization {
            rdns.append(RelativeDistinguishedName(.init(type: .RDNAttributeType.organizationName, utf8String: organization)))
        }
        if let commonName {
            rdns.append(RelativeDistinguishedName(.init(type: .RDNAttributeType.commonName, utf8String: commonName)))
        }
        let request = try CertificateSigningRequest(
            version: .v1, subject: DistinguishedName(rdns), privateKey: key, attributes: .init(),
            signatureAlgorithm: key.defaultSignatureAlgorithmForCSR)
        var serializer = DER.Serializer()
        try serializer.serialize(request)
        return serializer.serializedBytes
    }

    /// POSTs a CSR (base64) with the given headers.
    func post(
        _ operation: String, csr: [UInt8], client: HTTPClient, headers: [(String, String)] = [], label: String? = nil,
        contentType: String = "application/pkcs10", rawBody: String? = nil
    ) async throws -> Reply {
        try await client.send(
            "POST", url(operation, label: label), headers: [("Content-Type", contentType)] + headers,
            body: rawBody ?? ESTBase64.encode(csr))
    }

    /// The certificate in a successful EST response.
    static func certificate(_ reply: Reply) throws -> Certificate {
        #expect(reply.status == 200, "\(reply.body)")
        #expect(reply.header("Content-Type") == "application/pkcs7-mime; smime-type=certs-only")
        #expect(reply.header("Content-Transfer-Encoding") == "base64")
        #expect(reply.header("Content-Length") != nil)
        #expect(reply.header("Date") != nil)
        let der = try #require(ESTBase64.decode(Array(reply.body.utf8)))
        return try #require(try CertsOnlyCMS(derEncoded: der).certificates.first)
    }

    /// A refusal: the status and reason as sent, nothing issued, and an audit event recording it.
    func expectRefused(
        _ reply: Reply, status: Int, reason: String, credentialsBefore: Int, action: String = "est.enroll",
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        #expect(reply.status == status, "\(reply.body)", sourceLocation: sourceLocation)
        #expect(reply.body == reason + "\n", sourceLocation: sourceLocation)
        #expect(reply.header("Content-Type")?.hasPrefix("text/plain") == true, sourceLocation: sourceLocation)
        #expect(try await store.credentialCount() == credentialsBefore, "nothing may be issued", sourceLocation: sourceLocation)
        let events = try await store.auditEvents(AuditFilter(action: action, limit: 5))
        #expect(
            events.contains { $0.reason == reason && $0.outcome != .success }, "refusal must be audited: \(events.map(\.reason))",
            sourceLocation: sourceLocation)
    }
}

extension Certificate.PrivateKey {
    var defaultSignatureAlgorithmForCSR: Certificate.SignatureAlgorithm {
        switch KeyAlgorithm(publicKey) {
        case .p384: .ecdsaWithSHA384
        case .ed25519: .ed25519
        default: .ecdsaWithSHA256
        }
    }
}

extension Certificate {
    var commonName: String? { DeviceNames.firstValue(.RDNAttributeType.commonName, in: subject) }
}
