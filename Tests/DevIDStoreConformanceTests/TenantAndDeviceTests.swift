import DevIDCore
import DevIDStore
import Foundation
import Testing

@Suite("Tenants, lots and devices")
struct TenantAndDeviceTests {
    @Test(arguments: StoreKind.allCases)
    func tenantsAndLots(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await store.createTenant(Fixture.tenant("zeta"), audit: Fixture.event("tenant.create"))
            try await store.createTenant(Fixture.tenant("acme"), audit: nil)
            #expect(try await store.tenant(Fixture.tenantID("acme")) == Fixture.tenant("acme"))
            #expect(try await store.tenant(Fixture.tenantID("nobody")) == nil)
            #expect(try await store.tenants().map(\.id.rawValue) == ["acme", "zeta"])
            #expect(try await Fixture.auditCount(store) == 1)

            await expectStoreError(.duplicate) { () async throws(StoreError) in
                try await store.createTenant(Fixture.tenant("acme"), audit: Fixture.event("tenant.create"))
            }
            #expect(try await Fixture.auditCount(store) == 1)

            try await store.createLot(Fixture.lot("lot-a"))
            #expect(try await store.lot(Fixture.lotID("lot-a")) == Fixture.lot("lot-a"))
            #expect(try await store.lot(Fixture.lotID("lot-z")) == nil)
            await expectStoreError(.duplicate) { () async throws(StoreError) in
                try await store.createLot(Fixture.lot("lot-a"))
            }
            await expectStoreError(.notFound) { () async throws(StoreError) in
                try await store.createLot(Fixture.lot("lot-x", tenant: "nobody"))
            }
            #expect(try await store.lot(Fixture.lotID("lot-x")) == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func insertAndFetchDevice(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let device = Fixture.device("dev-2", hardwareSerial: "SN-0002", lot: "lot-b")
            try await store.insertDevice(device, audit: Fixture.event("device.import", device: "dev-2"))

            #expect(try await store.device(device.id) == device)
            #expect(try await store.device(hardwareSerial: "SN-0002") == device)
            #expect(try await store.device(hardwareSerial: "SN-9999") == nil)
            #expect(try await store.device(Fixture.deviceID("nope")) == nil)
            let events = try await store.auditEvents(AuditFilter(device: device.id))
            #expect(events.map(\.action) == ["device.import"])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func duplicateDeviceChangesNothing(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let original = try #require(try await store.device(Fixture.deviceID("dev-1")))
            let auditBefore = try await Fixture.auditCount(store)

            // Same id, different hardware serial.
            await expectStoreError(.duplicate) { () async throws(StoreError) in
                try await store.insertDevice(
                    Fixture.device("dev-1", hardwareSerial: "HW-other", lot: nil, state: .active),
                    audit: Fixture.event("device.import"))
            }
            // Different id, same hardware serial.
            await expectStoreError(.duplicate) { () async throws(StoreError) in
                try await store.insertDevice(
                    Fixture.device("dev-9", hardwareSerial: original.hardwareSerial),
                    audit: Fixture.event("device.import"))
            }

            #expect(try await store.device(original.id) == original)
            #expect(try await store.device(Fixture.deviceID("dev-9")) == nil)
            #expect(try await store.device(hardwareSerial: "HW-other") == nil)
            #expect(try await store.devices(DeviceFilter()).count == 1)
            #expect(try await Fixture.auditCount(store) == auditBefore)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func deviceNeedsExistingTenantAndLot(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            await expectStoreError(.notFound) { () async throws(StoreError) in
                try await store.insertDevice(
                    Fixture.device("dev-x", tenant: "nobody"), audit: Fixture.event("device.import"))
            }
            await expectStoreError(.notFound) { () async throws(StoreError) in
                try await store.insertDevice(
                    Fixture.device("dev-y", lot: "lot-zz"), audit: Fixture.event("device.import"))
            }
            #expect(try await store.device(Fixture.deviceID("dev-x")) == nil)
            #expect(try await store.device(Fixture.deviceID("dev-y")) == nil)
            #expect(try await Fixture.auditCount(store) == 0)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func filtersAndPagination(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            // dev-1 (acme, lot-a, manufactured) comes from the seed.
            try await store.insertDevice(Fixture.device("dev-5", lot: "lot-a", state: .active), audit: nil)
            try await store.insertDevice(Fixture.device("dev-3", lot: "lot-b", state: .active), audit: nil)
            try await store.insertDevice(Fixture.device("dev-2", lot: nil, state: .suspended), audit: nil)
            try await store.insertDevice(Fixture.device("dev-4", tenant: "other", state: .active), audit: nil)

            func ids(_ filter: DeviceFilter) async throws -> [String] {
                try await store.devices(filter).map(\.id.rawValue)
            }
            #expect(try await ids(DeviceFilter()) == ["dev-1", "dev-2", "dev-3", "dev-4", "dev-5"])
            #expect(
                try await ids(DeviceFilter(tenant: Fixture.tenantID("acme"))) == ["dev-1", "dev-2", "dev-3", "dev-5"])
            #expect(try await ids(DeviceFilter(tenant: Fixture.tenantID("other"))) == ["dev-4"])
            #expect(try await ids(DeviceFilter(lot: Fixture.lotID("lot-a"))) == ["dev-1", "dev-5"])
            #expect(try await ids(DeviceFilter(state: .active)) == ["dev-3", "dev-4", "dev-5"])
            #expect(
                try await ids(
                    DeviceFilter(tenant: Fixture.tenantID("acme"), lot: Fixture.lotID("lot-b"), state: .active))
                    == ["dev-3"])
            #expect(try await ids(DeviceFilter(state: .revoked)) == [])

            // Pages of two, continuing after the last id seen.
            var pages: [[String]] = []
            var after: DeviceID?
            while true {
                let page = try await store.devices(DeviceFilter(limit: 2, after: after))
                if page.isEmpty { break }
                pages.append(page.map(\.id.rawValue))
                after = page.last?.id
            }
            #expect(pages == [["dev-1", "dev-2"], ["dev-3", "dev-4"], ["dev-5"]])
            #expect(
                try await ids(
                    DeviceFilter(tenant: Fixture.tenantID("acme"), limit: 2, after: Fixture.deviceID("dev-2")))
                    == ["dev-3", "dev-5"])
            #expect(try await ids(DeviceFilter(limit: 0)) == [])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func stateTransitionsAreOptimistic(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let id = Fixture.deviceID("dev-1")
            try await store.updateDeviceState(
                id, from: .manufactured, to: .active, audit: Fixture.event("est.enroll", device: "dev-1"))
            #expect(try await store.device(id)?.state == .active)
            #expect(try await Fixture.auditCount(store) == 1)

            // A second writer that still believes the device is manufactured loses, and records nothing.
            await expectStoreError(.conflict) { () async throws(StoreError) in
                try await store.updateDeviceState(
                    id, from: .manufactured, to: .suspended, audit: Fixture.event("device.suspend"))
            }
            #expect(try await store.device(id)?.state == .active)
            #expect(try await Fixture.auditCount(store) == 1)

            await expectStoreError(.notFound) { () async throws(StoreError) in
                try await store.updateDeviceState(
                    Fixture.deviceID("ghost"), from: .active, to: .revoked, audit: Fixture.event("device.revoke"))
            }
            #expect(try await Fixture.auditCount(store) == 1)

            try await store.updateDeviceState(id, from: .active, to: .revoked, audit: nil)
            #expect(try await store.device(id)?.state == .revoked)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func concurrentTransitionsHaveOneWinner(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let id = Fixture.deviceID("dev-1")
            let results = await withTaskGroup(of: Result<Void, StoreError>.self) { group in
                for _ in 0..<20 {
                    group.addTask {
                        do throws(StoreError) {
                            try await store.updateDeviceState(
                                id, from: .manufactured, to: .active, audit: Fixture.event("est.enroll"))
                            return .success(())
                        } catch {
                            return .failure(error)
                        }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            #expect(results.filter { (try? $0.get()) != nil }.count == 1)
            #expect(
                results.allSatisfy { result in
                    if case .failure(let error) = result { return error.code == .conflict }
                    return true
                })
            #expect(try await Fixture.auditCount(store) == 1)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func recordSeen(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let id = Fixture.deviceID("dev-1")
            #expect(try await store.device(id)?.lastSeen == nil)
            try await store.recordSeen(id, at: Fixture.time(500))
            #expect(try await store.device(id)?.lastSeen == Fixture.time(500))
            try await store.recordSeen(id, at: Fixture.time(900))
            #expect(try await store.device(id)?.lastSeen == Fixture.time(900))
            await expectStoreError(.notFound) { () async throws(StoreError) in
                try await store.recordSeen(Fixture.deviceID("ghost"), at: Fixture.time(1))
            }
        }
    }
}
