import DevIDCore
import DevIDStore
import Foundation
import Testing

@Suite("service certificates (brokers' TLS certificates of the services CA)")
struct ServiceCertificateTests {
    static let issuer = "CN=DevID Services CA,OU=devid.local,O=DevID"

    static func certificate(
        _ index: Int, names: [String] = ["localhost", "127.0.0.1"], notAfter: TimeInterval = 365 * 86_400,
        createdAt: TimeInterval = 10
    ) -> ServiceCertificate {
        let der = Fixture.der(1_000 + index)
        return ServiceCertificate(
            serial: Fixture.serial(1_000 + index), service: "mosquitto", names: names, issuer: issuer,
            notBefore: Fixture.time(-300), notAfter: Fixture.time(notAfter),
            publicKeySHA256: Fixture.sha256Hex(Array("broker key \(index)".utf8)),
            certificateSHA256: Fixture.sha256Hex(der), der: der, createdAt: Fixture.time(createdAt))
    }

    @Test(arguments: StoreKind.allCases)
    func insertReadListWithItsAuditEvent(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let first = Self.certificate(1, createdAt: 10)
            let second = Self.certificate(2, names: ["broker.example.com"], createdAt: 20)
            try await store.insertServiceCertificate(first, audit: Fixture.event("broker.certificate", serial: first.serial))
            try await store.insertServiceCertificate(second, audit: Fixture.event("broker.certificate", serial: second.serial))
            #expect(try await store.serviceCertificate(serial: first.serial) == first)
            #expect(try await store.serviceCertificate(serial: Fixture.serial(1)) == nil)
            #expect(try await store.serviceCertificates() == [second, first], "newest first")
            let events = try await store.auditEvents(AuditFilter(action: "broker.certificate"))
            #expect(events.map(\.serial) == [second.serial, first.serial])
            // A service certificate is no device's credential.
            #expect(try await store.credential(serial: first.serial) == nil)
            #expect(try await store.credentialCount() == 0)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func duplicatesAreRefusedAndStoreNothing(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let first = Self.certificate(1)
            try await store.insertServiceCertificate(first, audit: Fixture.event("broker.certificate"))
            let before = try await Fixture.auditCount(store)

            var sameSerial = Self.certificate(2)
            sameSerial.serial = first.serial
            await expectStoreError(.duplicate) { () async throws(StoreError) in
                try await store.insertServiceCertificate(sameSerial, audit: Fixture.event("broker.certificate"))
            }
            var sameFingerprint = Self.certificate(3)
            sameFingerprint.certificateSHA256 = first.certificateSHA256
            await expectStoreError(.duplicate) { () async throws(StoreError) in
                try await store.insertServiceCertificate(sameFingerprint, audit: Fixture.event("broker.certificate"))
            }
            // One serial space with credentials: OCSP and `devid revoke --serial` look in both.
            try await store.insertCredential(Fixture.credential(7, device: "dev-1"), audit: Fixture.event("est.enroll"))
            var credentialSerial = Self.certificate(4)
            credentialSerial.serial = Fixture.serial(7)
            await expectStoreError(.duplicate) { () async throws(StoreError) in
                try await store.insertServiceCertificate(credentialSerial, audit: Fixture.event("broker.certificate"))
            }
            #expect(try await store.serviceCertificates() == [first])
            #expect(try await Fixture.auditCount(store) == before + 1, "only the credential's event was added")
        }
    }

    @Test(arguments: StoreKind.allCases)
    func revokeOnceThenTheCRLPages(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let certificates = [
                Self.certificate(2), Self.certificate(255), Self.certificate(16), Self.certificate(1),
                Self.certificate(5, notAfter: 1000), Self.certificate(6),
            ]
            for certificate in certificates {
                try await store.insertServiceCertificate(certificate, audit: Fixture.event("broker.certificate"))
            }
            for index in [2, 255, 16, 1, 5] {
                #expect(
                    try await store.revokeServiceCertificate(
                        serial: Fixture.serial(1_000 + index), reason: .keyCompromise, at: Fixture.time(500),
                        audit: Fixture.event("revoke")))
            }
            let events = try await Fixture.auditCount(store)
            // A second revocation changes nothing and writes no event.
            #expect(
                try await store.revokeServiceCertificate(
                    serial: Fixture.serial(1_002), reason: .unspecified, at: Fixture.time(600),
                    audit: Fixture.event("revoke")) == false)
            #expect(try await Fixture.auditCount(store) == events)
            let revoked = try #require(try await store.serviceCertificate(serial: Fixture.serial(1_002)))
            #expect(revoked.status == .revoked)
            #expect(revoked.revokedAt == Fixture.time(500))
            #expect(revoked.revocationReason == .keyCompromise)

            // Unexpired at 1000 (5 expires exactly then), ascending byte order of the hex serial.
            let expected = [1, 16, 2, 255].map { Fixture.serial(1_000 + $0) }.sorted {
                $0.rawValue.utf8.lexicographicallyPrecedes($1.rawValue.utf8)
            }
            let page = try await store.revokedServiceCertificates(
                notExpiredAt: Fixture.time(1000), afterSerial: nil, limit: 100)
            #expect(page.map(\.serial) == expected)
            let next = try await store.revokedServiceCertificates(
                notExpiredAt: Fixture.time(1000), afterSerial: expected[1], limit: 1)
            #expect(next.map(\.serial) == [expected[2]])

            await expectStoreError(.notFound) { () async throws(StoreError) in
                try await store.revokeServiceCertificate(
                    serial: Fixture.serial(9), reason: .unspecified, at: Fixture.time(600),
                    audit: Fixture.event("revoke"))
            }
            #expect(try await Fixture.auditCount(store) == events)
        }
    }
}
