import AsyncHTTPClient
import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Testing
import X509

/// A leaked factory lot: the IDevIDs of DevID's own manufacturer CA, registered by serial at lot import, are
/// listed in the manufacturer CRL and answered `revoked` by OCSP, and never enroll again, while a neighbouring
/// lot stays good. `openssl` is the relying party.
@Suite("IDevID revocation")
struct IDevIDRevocationTests {
    /// Mints `count` IDevIDs of `lot` with the server's manufacturer CA into the scratch directory and imports
    /// the manifest through the admin API.
    func mintAndImport(_ f: PublicationFixture, lot: String, count: Int) async throws -> LotManifest {
        let manifest = try mint(f, lot: lot, count: count)
        let reply = try await importManifest(f, manifest)
        #expect(reply.status == 200, "\(reply.body)")
        return manifest
    }

    func mint(_ f: PublicationFixture, lot: String, count: Int) throws -> LotManifest {
        let minter = LotMinter(manufacturer: try #require(f.server.state.hierarchy.manufacturer))
        return try minter.mint(
            lot: LotID(rawValue: lot)!, tenant: f.tenant, count: count, outputDirectory: f.scratch.file("lot-\(lot)"),
            now: f.server.clock.now())
    }

    func importManifest(_ f: PublicationFixture, _ manifest: LotManifest) async throws -> Reply {
        try await f.admin(
            "POST", "/v1/admin/devices/import",
            body: String(decoding: try DevIDJSON.encoder.encode(manifest), as: UTF8.self))
    }

    func certificateSerial(_ serial: DevIDCore.SerialNumber) -> Certificate.SerialNumber {
        Certificate.SerialNumber(bytes: Hex.decode(serial.rawValue.count % 2 == 0 ? serial.rawValue : "0" + serial.rawValue)!)
    }

    /// `simpleenroll` over mTLS with the minted IDevID of `device`.
    func enrollWithIDevID(_ f: PublicationFixture, lot: String, device: String) async throws -> Reply {
        let directory = f.scratch.file("lot-\(lot)/\(device)")
        let chain = try PEM.certificates(try String(contentsOfFile: directory + "/chain.pem", encoding: .utf8))
        let key = try KeyMaterial.privateKey(
            pem: try String(contentsOfFile: directory + "/idevid.key", encoding: .utf8), passphrase: nil)
        let csr = try ESTFixture.csr(key: try KeyMaterial.generate(.p256))
        return try await withClient(try f.server.client(certificate: chain, key: key)) {
            try await $0.send(
                "POST", f.server.estURL + "/.well-known/est/simpleenroll",
                headers: [("Content-Type", "application/pkcs10")], body: ESTBase64.encode(csr))
        }
    }

    @Test("revoke --lot: the lot's IDevIDs are in the manufacturer CRL and revoked at OCSP; the next lot stays good")
    func lotRevocationReachesTheManufacturerCRL() async throws {
        let f = try await PublicationFixture.start()
        defer { Task { try? await f.stop() } }
        let leaked = try await mintAndImport(f, lot: "L1", count: 3)
        let neighbour = try await mintAndImport(f, lot: "L2", count: 2)
        for entry in leaked.devices + neighbour.devices {
            let device = try #require(try await f.store.device(entry.deviceID))
            #expect(device.idevidSerial == entry.idevidSerial, "the import registers each IDevID serial")
            #expect(device.idevidRevokedAt == nil)
        }
        // One device of the leaked lot enrolled before the leak; its LDevID goes too.
        let enrolled = try await enrollWithIDevID(f, lot: "L1", device: "L1-000001")
        #expect(enrolled.status == 200, "\(enrolled.body)")

        let dryRun = try await f.admin("POST", "/v1/admin/revoke", body: #"{"lot":"L1","reason":"keyCompromise","dryRun":true}"#)
        #expect(dryRun.status == 200, "\(dryRun.body)")
        #expect(try await f.store.device(leaked.devices[0].deviceID)?.idevidRevokedAt == nil, "a dry run changes nothing")

        let reply = try await f.admin("POST", "/v1/admin/revoke", body: #"{"lot":"L1","reason":"keyCompromise"}"#)
        #expect(reply.status == 200, "\(reply.body)")
        let first = certificateSerial(leaked.devices[0].idevidSerial)
        #expect(try await f.waitUntilListed(first, in: "manufacturer", limit: .seconds(30)) != nil)

        let crl = try await f.crl("manufacturer")
        for entry in leaked.devices {
            let serial = certificateSerial(entry.idevidSerial)
            #expect(crl.entry(for: serial)?.reason == .keyCompromise, "\(entry.deviceID)")
        }
        for entry in neighbour.devices {
            let serial = certificateSerial(entry.idevidSerial)
            #expect(crl.entry(for: serial) == nil, "\(entry.deviceID) is in another lot")
        }
        #expect(crl.entries.count == leaked.devices.count)

        // openssl as the relying party: the CRL verifies, the leaked IDevID is refused, the neighbour accepted.
        let crlReply = try await f.fetch("/crl/manufacturer.crl")
        _ = FileManager.default.createFile(atPath: f.scratch.file("manufacturer.crl.der"), contents: Data(crlReply.body))
        let verify = try await f.sh(
            """
            openssl crl -inform DER -in manufacturer.crl.der -out manufacturer.crl.pem
            openssl crl -in manufacturer.crl.pem -noout -CAfile manufacturer.pem 2>&1
            echo "leaked:"; openssl verify -crl_check -CAfile manufacturer.pem -CRLfile manufacturer.crl.pem \
                lot-L1/L1-000002/idevid.crt 2>&1
            echo "neighbour:"; openssl verify -crl_check -CAfile manufacturer.pem -CRLfile manufacturer.crl.pem \
                lot-L2/L2-000001/idevid.crt 2>&1
            """)
        #expect(verify.stdout.contains("verify OK"), "\(verify.stdout)")
        #expect(verify.stdout.contains("certificate revoked"), "\(verify.stdout)")
        #expect(verify.stdout.contains("lot-L2/L2-000001/idevid.crt: OK"), "\(verify.stdout)")

        let ocsp = try await f.sh(
            "openssl ocsp -issuer manufacturer.pem -cert lot-L1/L1-000003/idevid.crt -cert lot-L2/L2-000002/idevid.crt "
                + "-url \(f.server.opsURL)/ocsp -CAfile manufacturer.pem -resp_text 2>&1")
        #expect(ocsp.stdout.contains("Response verify OK"), "\(ocsp.stdout)")
        #expect(ocsp.stdout.contains("lot-L1/L1-000003/idevid.crt: revoked"), "\(ocsp.stdout)")
        #expect(ocsp.stdout.contains("Reason: keyCompromise"), "\(ocsp.stdout)")
        #expect(ocsp.stdout.contains("lot-L2/L2-000002/idevid.crt: good"), "\(ocsp.stdout)")

        // EST: the neighbour enrolls with its IDevID; the leaked one is refused, also after a re-provisioning
        // made the device enrollable again (the way back is the claim token it creates).
        let good = try await enrollWithIDevID(f, lot: "L2", device: "L2-000001")
        #expect(good.status == 200, "\(good.body)")
        let reprovision = try await f.admin("POST", "/v1/admin/devices/L1-000002/reprovision")
        #expect(reprovision.status == 201, "\(reprovision.body)")
        #expect(try await f.store.device(leaked.devices[1].deviceID)?.state == .manufactured)
        let credentials = try await f.store.credentialCount()
        let refused = try await enrollWithIDevID(f, lot: "L1", device: "L1-000002")
        #expect(refused.status == 403, "\(refused.body)")
        #expect(refused.body == "IDevID of device L1-000002 is revoked (keyCompromise)\n")
        #expect(try await f.store.credentialCount() == credentials, "nothing issued")
        let denied = try await f.store.auditEvents(AuditFilter(action: "est.enroll", outcome: .denied, limit: 1))
        #expect(denied.first?.reason == "IDevID of device L1-000002 is revoked (keyCompromise)")

        // Still listed after the re-provisioning, with its first revocation's time and reason.
        let after = try await f.crl("manufacturer")
        #expect(after.entries.count == leaked.devices.count)
    }

    @Test("a lot registered before IDevID serials were kept: re-importing its manifest after the leak lists it")
    func reimportRegistersSerialsOfARevokedLot() async throws {
        let f = try await PublicationFixture.start()
        defer { Task { try? await f.stop() } }
        // What a schema-v5 import stored: the devices, without their IDevID serials.
        let manifest = try mint(f, lot: "L6", count: 3)
        _ = try await f.store.importDevices(
            manifest.devices.map {
                Device(
                    id: $0.deviceID, tenant: f.tenant, hardwareSerial: $0.hardwareSerial, lot: manifest.lot,
                    state: .manufactured, createdAt: f.server.clock.now())
            },
            audit: f.server.state.auditor.event(actor: "test", action: "device.import", outcome: .success, reason: "v5"))
        let enrolled = try await enrollWithIDevID(f, lot: "L6", device: "L6-000001")
        #expect(enrolled.status == 200, "\(enrolled.body)")
        let revoke = try await f.admin("POST", "/v1/admin/revoke", body: #"{"lot":"L6","reason":"keyCompromise"}"#)
        #expect(revoke.status == 200, "\(revoke.body)")
        let unknown = try await f.sh(
            "openssl ocsp -issuer manufacturer.pem -cert lot-L6/L6-000002/idevid.crt -url \(f.server.opsURL)/ocsp "
                + "-CAfile manufacturer.pem 2>&1")
        #expect(unknown.stdout.contains("lot-L6/L6-000002/idevid.crt: unknown"), "the gap: \(unknown.stdout)")

        let reply = try await importManifest(f, manifest)
        #expect(reply.status == 200, "\(reply.body)")
        #expect(reply.body.contains(#""idevidsRegistered":3"#), "\(reply.body)")
        #expect(reply.body.contains(#""unchanged":3"#), "\(reply.body)")
        let listed = certificateSerial(manifest.devices[2].idevidSerial)
        #expect(try await f.waitUntilListed(listed, in: "manufacturer", limit: .seconds(30)) != nil)
        let crl = try await f.crl("manufacturer")
        #expect(crl.entries.count == 3)
        #expect(crl.entry(for: certificateSerial(manifest.devices[0].idevidSerial))?.reason == .keyCompromise,
            "the reason of the enrolled device's revoked LDevID")

        let ocsp = try await f.sh(
            "openssl ocsp -issuer manufacturer.pem -cert lot-L6/L6-000002/idevid.crt -url \(f.server.opsURL)/ocsp "
                + "-CAfile manufacturer.pem 2>&1")
        #expect(ocsp.stdout.contains("lot-L6/L6-000002/idevid.crt: revoked"), "\(ocsp.stdout)")
        let reprovision = try await f.admin("POST", "/v1/admin/devices/L6-000003/reprovision")
        #expect(reprovision.status == 201, "\(reprovision.body)")
        let refused = try await enrollWithIDevID(f, lot: "L6", device: "L6-000003")
        #expect(refused.status == 403, "\(refused.body)")
        #expect(refused.body == "IDevID of device L6-000003 is revoked (unspecified)\n")
    }

    @Test("only the IDevID the manifest registered enrolls: another one with the same hardware serial is refused")
    func onlyTheRegisteredIDevIDEnrolls() async throws {
        let f = try await PublicationFixture.start()
        defer { Task { try? await f.stop() } }
        _ = try await mintAndImport(f, lot: "L3", count: 1)
        // A second IDevID for the same hardware serial, signed by the same (trusted) manufacturer CA.
        let manufacturer = try #require(f.server.state.hierarchy.manufacturer)
        let key = try KeyMaterial.generate(.p256)
        let twin = try manufacturer.issueIDevID(hardwareSerial: "L3-000001", publicKey: key.publicKey, now: f.server.clock.now())
        let credentials = try await f.store.credentialCount()
        let csr = try ESTFixture.csr(key: try KeyMaterial.generate(.p256))
        let reply = try await withClient(try f.server.client(certificate: [twin, manufacturer.certificate], key: key)) {
            try await $0.send(
                "POST", f.server.estURL + "/.well-known/est/simpleenroll",
                headers: [("Content-Type", "application/pkcs10")], body: ESTBase64.encode(csr))
        }
        #expect(reply.status == 403, "\(reply.body)")
        #expect(reply.body == "IDevID serial \(twin.devidSerial) is not the one registered for device L3-000001\n")
        #expect(try await f.store.credentialCount() == credentials)
        #expect(try await f.store.device(DeviceID(rawValue: "L3-000001")!)?.state == .manufactured)
        // The registered one still works.
        let registered = try await enrollWithIDevID(f, lot: "L3", device: "L3-000001")
        #expect(registered.status == 200, "\(registered.body)")
    }

    @Test("a manifest that lists one IDevID serial twice, or one another device holds, imports nothing")
    func duplicateIDevIDSerialsAreRefused() async throws {
        let f = try await PublicationFixture.start()
        defer { Task { try? await f.stop() } }
        let first = try await mintAndImport(f, lot: "L4", count: 2)
        let devicesBefore = try await f.store.devices(DeviceFilter(limit: 100)).count

        var twice = first
        twice.lot = LotID(rawValue: "L5")!
        twice.devices = first.devices.enumerated().map { index, entry in
            LotManifest.Entry(
                deviceID: DeviceID(rawValue: "L5-00000\(index + 1)")!, hardwareSerial: "L5-00000\(index + 1)",
                idevidSHA256: entry.idevidSHA256, idevidSerial: first.devices[0].idevidSerial)
        }
        let inManifest = try await f.admin(
            "POST", "/v1/admin/devices/import", body: String(decoding: try DevIDJSON.encoder.encode(twice), as: UTF8.self))
        #expect(inManifest.status == 409, "\(inManifest.body)")
        #expect(inManifest.body.contains("the IDevID serial of device L5-000001 is registered to another device"), "\(inManifest.body)")

        twice.devices = [twice.devices[1]]
        twice.devices[0].idevidSerial = SerialNumber(rawValue: "0abc")!
        twice.devices.append(
            LotManifest.Entry(
                deviceID: DeviceID(rawValue: "L5-000003")!, hardwareSerial: "L5-000003", idevidSHA256: "00",
                idevidSerial: SerialNumber(rawValue: "0abc")!))
        let twiceInOne = try await f.admin(
            "POST", "/v1/admin/devices/import", body: String(decoding: try DevIDJSON.encoder.encode(twice), as: UTF8.self))
        #expect(twiceInOne.status == 409, "\(twiceInOne.body)")
        #expect(twiceInOne.body.contains("the IDevID serial of device L5-000003 appears more than once"), "\(twiceInOne.body)")
        #expect(try await f.store.devices(DeviceFilter(limit: 100)).count == devicesBefore, "nothing imported")
        #expect(try await f.store.lot(LotID(rawValue: "L5")!) == nil)
    }
}
