import DevIDCore
import DevIDStore
import Foundation
import Testing

@Suite("Device import")
struct DeviceImportTests {
    static func importEvent(at offset: TimeInterval = 50, reason: String = "manifest") -> AuditEvent {
        Fixture.event("device.import", at: offset, reason: reason)
    }

    @Test(arguments: StoreKind.allCases)
    func createsDevicesAndMissingLots(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            var seen = Fixture.device("dev-5")
            seen.lastSeen = Fixture.time(40)
            let manifest = [
                Fixture.device("dev-2", lot: "lot-a"),
                Fixture.device("dev-3", lot: "lot-new"),
                Fixture.device("dev-4", lot: "lot-new"),
                seen,
                Fixture.device("dev-6", tenant: "other", lot: "lot-other"),
            ]
            let result = try await store.importDevices(manifest, audit: Self.importEvent(reason: "manifest m-1"))
            #expect(result == DeviceImportResult(created: 5, unchanged: 0, lotsCreated: 2))

            for device in manifest {
                #expect(try await store.device(device.id) == device)
                #expect(try await store.device(hardwareSerial: device.hardwareSerial) == device)
            }
            // New lots belong to their devices' tenant and date from the import.
            #expect(
                try await store.lot(Fixture.lotID("lot-new"))
                    == Lot(id: Fixture.lotID("lot-new"), tenant: Fixture.tenantID("acme"), createdAt: Fixture.time(50)))
            #expect(
                try await store.lot(Fixture.lotID("lot-other"))
                    == Lot(
                        id: Fixture.lotID("lot-other"), tenant: Fixture.tenantID("other"), createdAt: Fixture.time(50)))
            #expect(try await store.lot(Fixture.lotID("lot-a")) == Fixture.lot("lot-a"))
            #expect(
                try await store.devices(DeviceFilter(lot: Fixture.lotID("lot-new"))).map(\.id.rawValue) == [
                    "dev-3", "dev-4",
                ])

            let events = try await store.auditEvents(AuditFilter())
            #expect(events.map(\.action) == ["device.import"])
            #expect(events.map(\.reason) == ["manifest m-1"])
            #expect(try await store.verifyAuditChain() == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func reimportCountsUnchangedAndKeepsTheRegistryEntry(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let manifest = [
                Fixture.device("dev-1", lot: "lot-a"),  // the seeded device, as the manifest lists it
                Fixture.device("dev-2", lot: "lot-new"),
                Fixture.device("dev-3"),
            ]
            #expect(
                try await store.importDevices(manifest, audit: Self.importEvent())
                    == DeviceImportResult(created: 2, unchanged: 1, lotsCreated: 1))

            // The devices move on; importing the manifest again must not reset them.
            try await store.updateDeviceState(Fixture.deviceID("dev-1"), from: .manufactured, to: .active, audit: nil)
            try await store.recordSeen(Fixture.deviceID("dev-2"), at: Fixture.time(70))
            let before = try await Fixture.allDevices(store)

            let again = manifest.map { device in
                var device = device
                device.createdAt = Fixture.time(99)
                return device
            }
            #expect(
                try await store.importDevices(again, audit: Self.importEvent(at: 100))
                    == DeviceImportResult(created: 0, unchanged: 3, lotsCreated: 0))
            #expect(try await Fixture.allDevices(store) == before)
            #expect(try await store.auditEvents(AuditFilter()).map(\.action) == ["device.import", "device.import"])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func emptyManifestOnlyRecordsTheEvent(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let devices = try await Fixture.allDevices(store)
            #expect(
                try await store.importDevices([], audit: Self.importEvent())
                    == DeviceImportResult(created: 0, unchanged: 0, lotsCreated: 0))
            #expect(try await Fixture.allDevices(store) == devices)
            #expect(try await Fixture.auditCount(store) == 1)
        }
    }

    /// One way a manifest is refused; `devices` go between valid rows that create devices and lots.
    enum Refusal: String, CaseIterable, Sendable, CustomTestStringConvertible {
        case unknownTenant
        case lotOfAnotherTenant
        case lotSplitAcrossTenants
        case registeredIDWithOtherSerial
        case registeredIDWithOtherTenant
        case registeredIDWithOtherLot
        case registeredIDWithoutItsLot
        case registeredSerialUnderOtherID
        case repeatedID
        case repeatedSerial
        case repeatedIdenticalRow
        case repeatedRegisteredRow

        var testDescription: String { rawValue }

        var devices: [Device] {
            switch self {
            case .unknownTenant: [Fixture.device("bad", tenant: "nobody")]
            case .lotOfAnotherTenant: [Fixture.device("bad", tenant: "other", lot: "lot-a")]
            case .lotSplitAcrossTenants:
                [Fixture.device("split", lot: "lot-split"), Fixture.device("bad", tenant: "other", lot: "lot-split")]
            case .registeredIDWithOtherSerial: [Fixture.device("dev-1", hardwareSerial: "HW-dev-1-b", lot: "lot-a")]
            case .registeredIDWithOtherTenant: [Fixture.device("dev-1", tenant: "other")]
            case .registeredIDWithOtherLot: [Fixture.device("dev-1", lot: "lot-b")]
            case .registeredIDWithoutItsLot: [Fixture.device("dev-1")]
            case .registeredSerialUnderOtherID: [Fixture.device("bad", hardwareSerial: "HW-dev-1")]
            case .repeatedID:
                [
                    Fixture.device("twin", hardwareSerial: "HW-twin-a"),
                    Fixture.device("twin", hardwareSerial: "HW-twin-b"),
                ]
            case .repeatedSerial:
                [Fixture.device("twin", hardwareSerial: "HW-twin"), Fixture.device("bad", hardwareSerial: "HW-twin")]
            case .repeatedIdenticalRow: [Fixture.device("twin"), Fixture.device("twin")]
            case .repeatedRegisteredRow: [Fixture.device("dev-1", lot: "lot-a"), Fixture.device("dev-1", lot: "lot-a")]
            }
        }

        var code: StoreError.Code {
            switch self {
            case .unknownTenant: .notFound
            case .lotOfAnotherTenant, .lotSplitAcrossTenants: .conflict
            default: .duplicate
            }
        }

        /// The device the refusal must name.
        var offender: String {
            switch self {
            case .registeredIDWithOtherSerial, .registeredIDWithOtherTenant, .registeredIDWithOtherLot,
                .registeredIDWithoutItsLot, .repeatedRegisteredRow:
                "dev-1"
            case .repeatedID, .repeatedIdenticalRow: "twin"
            default: "bad"
            }
        }
    }

    @Test(arguments: StoreKind.allCases, Refusal.allCases)
    func refusedManifestStoresNothing(kind: StoreKind, refusal: Refusal) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let manifest =
                [
                    Fixture.device("good-1", lot: "lot-fresh"),
                    Fixture.device("good-2", tenant: "other", lot: "lot-fresh-2"),
                ] + refusal.devices + [Fixture.device("good-3", lot: "lot-after")]
            let lots = ["lot-a", "lot-b", "lot-fresh", "lot-fresh-2", "lot-split", "lot-after"]
            let before = try await RegistrySnapshot(store, lots: lots)

            let error = await expectStoreError(refusal.code) { () async throws(StoreError) in
                try await store.importDevices(manifest, audit: Self.importEvent())
            }
            #expect(try await RegistrySnapshot(store, lots: lots) == before)
            #expect(try await store.verifyAuditChain() == nil)

            let reason = try #require(error?.reason)
            #expect(reason.contains("device \(refusal.offender) "), "\(reason)")
            // Nothing from the manifest but the id: no hardware serial, lot or other device.
            ErrorDescriptionTests.assertClean(
                error, of: manifest.map(\.hardwareSerial) + lots + ["good-1", "good-2", "good-3"])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func concurrentImportsOfOneManifestCreateEachDeviceOnce(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let manifest = (0..<200).map { Fixture.device("m-\($0)", lot: "lot-m\($0 % 4)") }
            let results = try await withThrowingTaskGroup(of: DeviceImportResult.self) { group in
                for attempt in 0..<10 {
                    group.addTask {
                        try await store.importDevices(manifest, audit: Self.importEvent(reason: "attempt \(attempt)"))
                    }
                }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(results.filter { $0 == DeviceImportResult(created: 200, unchanged: 0, lotsCreated: 4) }.count == 1)
            #expect(results.filter { $0 == DeviceImportResult(created: 0, unchanged: 200, lotsCreated: 0) }.count == 9)
            #expect(try await Fixture.allDevices(store).count == 201)
            #expect(try await Fixture.auditCount(store) == 10)
            #expect(try await store.verifyAuditChain() == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func concurrentClashingImportsHaveOneWinner(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let results = await withTaskGroup(of: Result<Int, StoreError>.self) { group in
                for attempt in 0..<10 {
                    group.addTask {
                        // Every manifest claims device "clash", each with its own hardware serial.
                        let manifest = [
                            Fixture.device("own-\(attempt)"),
                            Fixture.device("clash", hardwareSerial: "HW-clash-\(attempt)"),
                        ]
                        do throws(StoreError) {
                            _ = try await store.importDevices(manifest, audit: Self.importEvent())
                            return .success(attempt)
                        } catch {
                            return .failure(error)
                        }
                    }
                }
                return await group.reduce(into: []) { $0.append($1) }
            }
            let winners = results.compactMap { try? $0.get() }
            #expect(winners.count == 1)
            #expect(
                results.allSatisfy { result in
                    if case .failure(let error) = result { return error.code == .duplicate }
                    return true
                })
            let winner = try #require(winners.first)
            #expect(
                try await Fixture.allDevices(store).map(\.id.rawValue).sorted() == [
                    "clash", "dev-1", "own-\(winner)",
                ])
            #expect(try await store.device(Fixture.deviceID("clash"))?.hardwareSerial == "HW-clash-\(winner)")
            #expect(try await Fixture.auditCount(store) == 1)
        }
    }

    /// A factory manifest of 10,000 devices in one call. Prints the time. Run alone, a debug build takes about
    /// 0.4 s on SQLite; inside the parallel suite on two cores the first import also waits for every other test,
    /// so the bound is generous and only catches a transaction per row or an accidental O(n²).
    @Test(arguments: StoreKind.allCases)
    func tenThousandDevicesInOneCall(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let manifest = (0..<10_000).map { index in
                Fixture.device(
                    "bulk-\(index)", hardwareSerial: "SN-\(100_000 + index)", lot: "lot-bulk-\(index / 1_000)")
            }
            let clock = ContinuousClock()
            let start = clock.now
            let result = try await store.importDevices(manifest, audit: Self.importEvent())
            let imported = clock.now - start
            #expect(result == DeviceImportResult(created: 10_000, unchanged: 0, lotsCreated: 10))

            let again = clock.now
            let second = try await store.importDevices(manifest, audit: Self.importEvent(at: 60))
            let reimported = clock.now - again
            #expect(second == DeviceImportResult(created: 0, unchanged: 10_000, lotsCreated: 0))

            print("DevIDStore import of 10,000 devices [\(kind.rawValue)]: \(imported) new, \(reimported) re-import")
            #expect(imported < .seconds(10))
            #expect(reimported < .seconds(10))
            #expect(try await Fixture.allDevices(store).count == 10_001)
            #expect(try await store.devices(DeviceFilter(lot: Fixture.lotID("lot-bulk-7"))).count == 1_000)
            #expect(try await store.device(hardwareSerial: "SN-109999") == manifest.last)
            #expect(try await Fixture.auditCount(store) == 2)
        }
    }
}
