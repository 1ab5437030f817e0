import DevIDCore
import DevIDStore
import Foundation
import Testing

/// IDevID serials of DevID's own manufacturer CA: registered with the device, unique, revoked with the device's
/// lot, tenant or the device itself, and listed for the manufacturer CRL.
@Suite("IDevID serials")
struct IDevIDTests {
    static func device(_ name: String, lot: String? = "lot-a", tenant: String = "acme", idevid: String?) -> Device {
        var device = Fixture.device(name, tenant: tenant, lot: lot)
        device.idevidSerial = idevid.map { SerialNumber(rawValue: $0)! }
        return device
    }

    @Test(arguments: StoreKind.allCases)
    func importAndInsertRegisterTheSerial(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let imported = Self.device("dev-2", idevid: "0a01")
            _ = try await store.importDevices(
                [imported, Self.device("dev-3", idevid: nil)], audit: DeviceImportTests.importEvent())
            try await store.insertDevice(Self.device("dev-4", idevid: "0a02"), audit: nil)
            #expect(try await store.device(idevidSerial: SerialNumber(rawValue: "0a01")!) == imported)
            #expect(try await store.device(idevidSerial: SerialNumber(rawValue: "0a02")!)?.id.rawValue == "dev-4")
            #expect(try await store.device(idevidSerial: SerialNumber(rawValue: "0a03")!) == nil)
            #expect(try await store.device(Fixture.deviceID("dev-3"))?.idevidSerial == nil)

            // Re-importing the same manifest is unchanged; a device registered without a serial (before schema
            // version 6) gets the manifest's, and keeps it.
            let again = try await store.importDevices(
                [imported, Self.device("dev-1", idevid: "0a09")], audit: DeviceImportTests.importEvent())
            #expect(again == DeviceImportResult(created: 0, unchanged: 2, lotsCreated: 0, idevidsRegistered: 1))
            let dev1 = try await store.device(Fixture.deviceID("dev-1"))
            #expect(dev1?.idevidSerial?.rawValue == "0a09")
            #expect(dev1?.idevidRevokedAt == nil && dev1?.state == .manufactured, "a good device's IDevID stays good")
            #expect(try await store.device(idevidSerial: SerialNumber(rawValue: "0a09")!)?.id.rawValue == "dev-1")
            let third = try await store.importDevices(
                [Self.device("dev-1", idevid: "0a09")], audit: DeviceImportTests.importEvent())
            #expect(third == DeviceImportResult(created: 0, unchanged: 1, lotsCreated: 0))
        }
    }

    /// A device revoked before its IDevID serial was registered: registering it later revokes the IDevID at once,
    /// with the device's revocation time and reason when a credential carries them.
    @Test(arguments: StoreKind.allCases)
    func aRevokedDeviceRegisteredLaterHasItsIDevIDRevoked(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            _ = try await store.importDevices(
                [Self.device("dev-2", idevid: nil), Self.device("dev-3", idevid: nil), Self.device("dev-4", idevid: nil)],
                audit: DeviceImportTests.importEvent())
            try await store.insertCredential(
                Fixture.credential(1, device: "dev-2"), audit: Fixture.event("issue", device: "dev-2"))
            // A revoked credential without a revocation time (a status set directly): never the newest. PostgreSQL
            // sorts NULL first in a descending order; it took this one's reason and the import's time.
            try await store.insertCredential(
                Fixture.credential(7, device: "dev-2"), audit: Fixture.event("issue", device: "dev-2"))
            try await store.updateCredentialStatus(
                serial: Fixture.serial(7), status: .revoked, revokedAt: nil, reason: .affiliationChanged, audit: nil)
            _ = try await store.revoke(
                .device(Fixture.deviceID("dev-2")), reason: .keyCompromise, at: Fixture.time(60),
                audit: Fixture.event("revoke", at: 60))
            // dev-3's only credential was revoked by a rotation before the device was: that is not the device's
            // revocation, so its IDevID gets the import's time and no reason.
            try await store.insertCredential(
                Fixture.credential(2, device: "dev-3"), audit: Fixture.event("issue", device: "dev-3"))
            _ = try await store.revoke(
                .serial(Fixture.serial(2)), reason: .superseded, at: Fixture.time(58),
                audit: Fixture.event("revoke", at: 58))
            _ = try await store.revoke(
                .device(Fixture.deviceID("dev-3")), reason: .cessationOfOperation, at: Fixture.time(61),
                audit: Fixture.event("revoke", at: 61))
            #expect(try await store.revokedIDevIDs(afterSerial: nil, limit: 10).isEmpty, "no serial, no entry")

            // A serial held by another device is refused, and the refusal changes nothing.
            _ = try await store.importDevices([Self.device("dev-5", idevid: "0c05")], audit: DeviceImportTests.importEvent())
            let before = try await Fixture.allDevices(store)
            let taken = await #expect(throws: StoreError.self) {
                _ = try await store.importDevices(
                    [Self.device("dev-2", idevid: "0c02"), Self.device("dev-4", idevid: "0c05")],
                    audit: DeviceImportTests.importEvent())
            }
            #expect(taken?.reason == "import devices: the IDevID serial of device dev-4 is registered to another device")
            #expect(try await Fixture.allDevices(store) == before)

            let event = DeviceImportTests.importEvent(at: 90)
            let result = try await store.importDevices(
                [
                    Self.device("dev-2", idevid: "0c02"), Self.device("dev-3", idevid: "0c03"),
                    Self.device("dev-4", idevid: "0c04"),
                ],
                audit: event)
            #expect(result == DeviceImportResult(created: 0, unchanged: 3, lotsCreated: 0, idevidsRegistered: 3))
            let revoked = try await store.revokedIDevIDs(afterSerial: nil, limit: 10)
            #expect(revoked.map(\.id.rawValue) == ["dev-2", "dev-3"])
            #expect(revoked.first?.idevidRevokedAt == Fixture.time(60), "the credential's revocation time")
            #expect(revoked.first?.idevidRevocationReason == .keyCompromise)
            #expect(revoked.last?.idevidRevokedAt == event.time, "no credential: the import's time")
            #expect(revoked.last?.idevidRevocationReason == nil)
            let good = try await store.device(Fixture.deviceID("dev-4"))
            #expect(good?.idevidSerial?.rawValue == "0c04" && good?.idevidRevokedAt == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func aSerialBelongsToOneDevice(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            _ = try await store.importDevices([Self.device("dev-2", idevid: "0a01")], audit: DeviceImportTests.importEvent())
            let before = try await Fixture.allDevices(store)
            let auditBefore = try await Fixture.auditCount(store)

            let taken = await #expect(throws: StoreError.self) {
                _ = try await store.importDevices(
                    [Self.device("dev-5", idevid: "0b01"), Self.device("dev-6", idevid: "0a01")],
                    audit: DeviceImportTests.importEvent())
            }
            #expect(taken?.code == .duplicate)
            #expect(taken?.reason == "import devices: the IDevID serial of device dev-6 is registered to another device")

            let twice = await #expect(throws: StoreError.self) {
                _ = try await store.importDevices(
                    [Self.device("dev-5", idevid: "0b01"), Self.device("dev-6", idevid: "0b01")],
                    audit: DeviceImportTests.importEvent())
            }
            #expect(twice?.code == .duplicate)
            #expect(twice?.reason == "import devices: the IDevID serial of device dev-6 appears more than once")

            let other = await #expect(throws: StoreError.self) {
                _ = try await store.importDevices(
                    [Self.device("dev-2", idevid: "0a02")], audit: DeviceImportTests.importEvent())
            }
            #expect(other?.code == .duplicate)
            #expect(
                other?.reason
                    == "import devices: device dev-2 is registered with another tenant, hardware serial, lot or IDevID")

            let inserted = await #expect(throws: StoreError.self) {
                try await store.insertDevice(Self.device("dev-7", idevid: "0a01"), audit: nil)
            }
            #expect(inserted?.code == .duplicate)
            #expect(try await Fixture.allDevices(store) == before, "a refused write changes nothing")
            #expect(try await Fixture.auditCount(store) == auditBefore)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func revokingALotRevokesItsIDevIDsOnce(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            _ = try await store.importDevices(
                [
                    Self.device("dev-2", idevid: "0a02"), Self.device("dev-3", idevid: "0a03"),
                    Self.device("dev-4", idevid: nil), Self.device("dev-5", lot: "lot-b", idevid: "0a05"),
                    Self.device("dev-6", lot: nil, tenant: "other", idevid: "0a06"),
                ],
                audit: DeviceImportTests.importEvent())
            _ = try await store.blastRadius(.lot(Fixture.lotID("lot-a")), now: Fixture.time(60))
            #expect(try await store.revokedIDevIDs(afterSerial: nil, limit: 10).isEmpty, "a preview changes nothing")

            _ = try await store.revoke(
                .lot(Fixture.lotID("lot-a")), reason: .keyCompromise, at: Fixture.time(60),
                audit: Fixture.event("revoke", at: 60))
            let revoked = try await store.revokedIDevIDs(afterSerial: nil, limit: 10)
            #expect(revoked.map(\.id.rawValue) == ["dev-2", "dev-3"])
            #expect(revoked.allSatisfy { $0.idevidRevokedAt == Fixture.time(60) && $0.idevidRevocationReason == .keyCompromise })
            #expect(try await store.device(Fixture.deviceID("dev-5"))?.idevidRevokedAt == nil, "another lot")

            // A later revocation (a re-provisioning, a tenant) keeps the first time and reason.
            try await store.updateDeviceState(Fixture.deviceID("dev-2"), from: .revoked, to: .manufactured, audit: nil)
            _ = try await store.revoke(
                .tenant(Fixture.tenantID("acme")), reason: .cessationOfOperation, at: Fixture.time(70),
                audit: Fixture.event("revoke", at: 70))
            let all = try await store.revokedIDevIDs(afterSerial: nil, limit: 10)
            #expect(all.map(\.id.rawValue) == ["dev-2", "dev-3", "dev-5"])
            #expect(all[0].idevidRevokedAt == Fixture.time(60) && all[0].idevidRevocationReason == .keyCompromise)
            #expect(all[2].idevidRevokedAt == Fixture.time(70) && all[2].idevidRevocationReason == .cessationOfOperation)
            #expect(try await store.device(Fixture.deviceID("dev-6"))?.idevidRevokedAt == nil, "another tenant")

            // Pages follow the last serial.
            let first = try await store.revokedIDevIDs(afterSerial: nil, limit: 2)
            #expect(first.map(\.id.rawValue) == ["dev-2", "dev-3"])
            let next = try await store.revokedIDevIDs(afterSerial: first.last?.idevidSerial, limit: 2)
            #expect(next.map(\.id.rawValue) == ["dev-5"])
        }
    }
}
