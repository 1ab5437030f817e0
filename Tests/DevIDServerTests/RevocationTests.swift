import AsyncHTTPClient
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Testing
import X509

@Suite("Revocation and suspension", .serialized)
struct RevocationTests {
    @Test("revoke one device: dry run changes nothing; then refused at status, re-enrollment and IDevID bootstrap")
    func revokeDevice() async throws {
        let f = try await ESTFixture()
        let (idKey, idCert) = try await f.idevid("HW-R1")
        let enrolled = try ESTFixture.certificate(
            try await withClient(try f.server.client(certificate: [idCert], key: idKey)) {
                try await f.post("simpleenroll", csr: try ESTFixture.csr(key: try KeyMaterial.generate(.p256)), client: $0)
            })
        let key = try KeyMaterial.generate(.p256)  // not the key of `enrolled`; only used for refusals below
        _ = key

        let dry = try await f.admin("POST", "/v1/admin/revoke", body: #"{"device":"HW-R1","reason":"keyCompromise","dryRun":true}"#)
        #expect(dry.status == 200, "\(dry.body)")
        #expect(dry.body.contains("\"credentials\":1"))
        #expect(try await f.store.device(DeviceID(rawValue: "HW-R1")!)?.state == .active, "dry run changes nothing")

        let revoked = try await f.admin("POST", "/v1/admin/revoke", body: #"{"device":"HW-R1","reason":"keyCompromise"}"#)
        #expect(revoked.status == 200, "\(revoked.body)")
        #expect(try await f.store.device(DeviceID(rawValue: "HW-R1")!)?.state == .revoked)
        let credential = try #require(try await f.store.credential(serial: enrolled.devidSerial))
        #expect(credential.status == .revoked)
        #expect(credential.revocationReason == .keyCompromise)

        let before = try await f.store.credentialCount()
        let again = try await withClient(try f.server.client(certificate: [idCert], key: idKey)) {
            try await f.post("simpleenroll", csr: try ESTFixture.csr(key: try KeyMaterial.generate(.p256)), client: $0)
        }
        try await f.expectRefused(again, status: 403, reason: "device is revoked", credentialsBefore: before)

        let status = try await f.admin("GET", "/v1/admin/certificates/\(enrolled.devidSerial)")
        #expect(status.body.contains("\"status\":\"revoked\""))
        #expect(status.body.contains("\"revocationReason\":\"keyCompromise\""))

        // Compromise response: re-provision issues a fresh claim token; the device enrolls again with it.
        let reprovision = try await f.admin("POST", "/v1/admin/devices/HW-R1/reprovision")
        #expect(reprovision.status == 201, "\(reprovision.body)")
        let token = try #require(reprovision.body.firstMatch(of: /"token":"(devid_ct_[a-z2-7]+)"/)?.1)
        #expect(try await f.store.device(DeviceID(rawValue: "HW-R1")!)?.state == .manufactured)
        let fresh = try await withClient(try f.server.client()) {
            try await f.post(
                "simpleenroll", csr: try ESTFixture.csr(key: try KeyMaterial.generate(.p256)), client: $0,
                headers: [("Authorization", "Bearer \(token)")])
        }
        #expect(try ESTFixture.certificate(fresh).commonName == "HW-R1")
        try await f.server.stop()
    }

    @Test("revoke a lot or a tenant: exactly the devices in scope; neighbours stay good")
    func revokeLotAndTenant() async throws {
        let f = try await ESTFixture()
        let store = f.store
        let now = f.server.clock.now()
        try await store.createTenant(Tenant(id: TenantID(rawValue: "globex")!, displayName: "G", createdAt: now), audit: nil)
        for (lot, tenant) in [("L1", "acme"), ("L2", "acme"), ("G1", "globex")] {
            try await store.createLot(Lot(id: LotID(rawValue: lot)!, tenant: TenantID(rawValue: tenant)!, createdAt: now))
        }
        var identities: [String: (key: Certificate.PrivateKey, certificate: Certificate)] = [:]
        for (device, lot, tenant) in [("a1", "L1", "acme"), ("a2", "L1", "acme"), ("b1", "L2", "acme"), ("g1", "G1", "globex")] {
            try await store.insertDevice(
                Device(
                    id: DeviceID(rawValue: device)!, tenant: TenantID(rawValue: tenant)!, hardwareSerial: "HW-\(device)",
                    lot: LotID(rawValue: lot), state: .manufactured, createdAt: now),
                audit: nil)
            let token = try await f.token(device: device, tenant: TenantID(rawValue: tenant)!)
            let key = try KeyMaterial.generate(.p256)
            let reply = try await withClient(try f.server.client()) {
                try await f.post(
                    "simpleenroll", csr: try ESTFixture.csr(key: key), client: $0,
                    headers: [("Authorization", "Bearer \(token.secret)")])
            }
            identities[device] = (key, try ESTFixture.certificate(reply))
        }
        let lot = try await f.admin("POST", "/v1/admin/revoke", body: #"{"lot":"L1","reason":"keyCompromise"}"#)
        #expect(lot.body.contains("\"devices\":2"), "\(lot.body)")
        for device in ["a1", "a2"] { #expect(try await f.status(identities[device]!).status == 403) }
        for device in ["b1", "g1"] { #expect(try await f.status(identities[device]!).status == 200, "\(device) is a neighbour") }

        let tenant = try await f.admin("POST", "/v1/admin/revoke", body: #"{"tenant":"acme","reason":"affiliationChanged"}"#)
        #expect(tenant.status == 200)
        #expect(try await f.status(identities["b1"]!).status == 403)
        #expect(try await f.status(identities["g1"]!).status == 200, "another tenant is untouched")
        try await f.server.stop()
    }

    @Test("suspend is a reversible hold; resume lifts it")
    func suspendAndResume() async throws {
        let f = try await ESTFixture()
        let identity = try await f.enroll("sus-1")
        #expect(try await f.admin("POST", "/v1/admin/devices/sus-1/suspend").status == 200)
        let held = try await f.status(identity)
        #expect(held.status == 403)
        #expect(held.body == "device is suspended\n")
        #expect(try await f.store.credential(serial: identity.certificate.devidSerial)?.status == .active, "no revocation")
        #expect(try await f.admin("POST", "/v1/admin/devices/sus-1/resume").status == 200)
        #expect(try await f.store.device(DeviceID(rawValue: "sus-1")!)?.state == .active)
        #expect(try await f.status(identity).status == 200)
        #expect(try await f.admin("POST", "/v1/admin/devices/sus-1/resume").status == 409)
        try await f.server.stop()
    }

    @Test("resume of a device that never enrolled: back to manufactured, and its IDevID enrolls it")
    func resumeWithoutCredentials() async throws {
        let f = try await ESTFixture()
        let (key, certificate) = try await f.idevid("HW-S2")
        #expect(try await f.admin("POST", "/v1/admin/devices/HW-S2/suspend").status == 200)
        let resumed = try await f.admin("POST", "/v1/admin/devices/HW-S2/resume")
        #expect(resumed.status == 200, "\(resumed.body)")
        #expect(resumed.body.contains("\"state\":\"manufactured\""), "\(resumed.body)")
        #expect(try await f.store.device(DeviceID(rawValue: "HW-S2")!)?.state == .manufactured)
        let enrolled = try await withClient(try f.server.client(certificate: [certificate], key: key)) {
            try await f.post("simpleenroll", csr: try ESTFixture.csr(key: try KeyMaterial.generate(.p256)), client: $0)
        }
        #expect(try ESTFixture.certificate(enrolled).commonName == "HW-S2")
        #expect(try await f.store.device(DeviceID(rawValue: "HW-S2")!)?.state == .active)
        try await f.server.stop()
    }

    @Test("bad revocation requests are refused and change nothing", arguments: [
        (#"{"reason":"keyCompromise"}"#, 400),
        (#"{"device":"x","lot":"y"}"#, 400),
        (#"{"device":"nobody"}"#, 404),
        (#"{"device":"bad id!"}"#, 400),
        (#"{"serial":"zz"}"#, 400),
        (#"{"device":"ok-1","reason":"because"}"#, 400),
        (#"{"device":"ok-1","reason":"removeFromCRL"}"#, 400),
    ])
    func badRequests(body: String, status: Int) async throws {
        let f = try await ESTFixture()
        let identity = try await f.enroll("ok-1")
        let reply = try await f.admin("POST", "/v1/admin/revoke", body: body)
        #expect(reply.status == status, "\(reply.body)")
        #expect(try await f.store.credential(serial: identity.certificate.devidSerial)?.status == .active)
        try await f.server.stop()
    }
}
