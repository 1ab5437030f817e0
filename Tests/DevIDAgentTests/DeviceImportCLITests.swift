import DevIDCore
import DevIDPKI
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import Testing

/// `devid device import` at the fleet size DevID is built for: the CLI against a live server, a manifest as
/// `devid factory mint` writes it.
@Suite("devid device import at fleet size", .serialized)
struct DeviceImportCLITests {
    /// A lot manifest of `count` devices from the server's own manufacturer CA, pretty-printed as `factory mint` writes
    /// it (the IDevIDs' fingerprints and serials are made up: the import registers them, nothing checks them here).
    static func manifest(_ server: AgentTestServer, lot: String, count: Int) throws -> Data {
        let manufacturer = try #require(server.hierarchy.trustedManufacturers.first)
        let devices = (1...count).map { index in
            let id = String(format: "%@-%06d", lot, index)
            return LotManifest.Entry(
                deviceID: DeviceID(rawValue: id)!, hardwareSerial: id,
                idevidSHA256: String(format: "%064x", index), idevidSerial: SerialNumber(rawValue: String(format: "%032x", index))!)
        }
        let manifest = LotManifest(
            lot: LotID(rawValue: lot)!, tenant: server.tenant, manufacturerCASHA256: manufacturer.sha256Fingerprint,
            createdAt: Date(), devices: devices)
        let encoder = DevIDJSON.encoder
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(manifest)
    }

    @Test("a 30,000-device lot (a 7 MB manifest) imports in one call and lists whole; strangers still cannot send more than 2 MiB")
    func fleetSizedLot() async throws {
        try await withServer { server in
            let work = try TemporaryDirectory(prefix: "devid-import-cli")
            defer { work.remove() }
            let manifest = try work.write("manifest.json", String(decoding: try Self.manifest(server, lot: "F1", count: 30_000), as: UTF8.self))
            let size = try #require(try FileManager.default.attributesOfItem(atPath: manifest)[.size] as? Int)
            #expect(size > 2 * 1024 * 1024, "the manifest is larger than the operations listener's other bodies: \(size)")

            let executable = try AgentCLITests.executable()
            let environment = ["DEVID_ADMIN_TOKEN": server.adminToken]
            let first = try await ExternalTool.runAsync(
                [executable, "device", "import", manifest, "--server", server.opsURL], environment: environment)
            #expect(first.status == 0, "\(first.stderr)")
            #expect(first.stdout == "lot F1: 30000 devices registered, 0 already present\n", "\(first.stdout) \(first.stderr)")
            let again = try await ExternalTool.runAsync(
                [executable, "device", "import", manifest, "--server", server.opsURL], environment: environment)
            #expect(again.stdout == "lot F1: 0 devices registered, 30000 already present\n", "\(again.stdout) \(again.stderr)")
            #expect(try await server.store.devices(DeviceFilter(lot: LotID(rawValue: "F1")!, limit: 50_000)).count == 30_000)

            // Listed whole, page by page (the API's pages are at most 10,000), or the first N.
            let all = try await ExternalTool.runAsync(
                [executable, "device", "list", "--lot", "F1", "--server", server.opsURL], environment: environment)
            let rows = all.stdout.split(separator: "\n")
            #expect(rows.count == 30_001, "a header and every device: \(rows.count) \(all.stderr)")
            #expect(rows.last?.hasPrefix("F1-030000  acme    F1   manufactured  F1-030000") == true, "\(rows.last ?? "")")
            let some = try await ExternalTool.runAsync(
                [executable, "device", "list", "--lot", "F1", "--limit", "2500", "--json", "--server", server.opsURL],
                environment: environment)
            let listed = try #require(try JSONSerialization.jsonObject(with: Data(some.stdout.utf8)) as? [[String: Any]])
            #expect(listed.count == 2500 && listed.last?["id"] as? String == "F1-002500", "\(listed.count)")
            let page = try await ExternalTool.runAsync([
                "curl", "-s", "-H", "Authorization: Bearer \(server.adminToken)",
                "\(server.opsURL)/v1/admin/devices?lot=F1&limit=2&after=F1-000010",
            ])
            #expect(page.stdout.hasSuffix(#""next":"F1-000012"}"#), "\(page.stdout)")
            #expect(page.stdout.contains(#""id":"F1-000011""#) && !page.stdout.contains(#""id":"F1-000010""#))
            let badCursor = try await ExternalTool.runAsync([
                "curl", "-s", "-w", "\n%{http_code}", "-H", "Authorization: Bearer \(server.adminToken)",
                "\(server.opsURL)/v1/admin/devices?after=no%20such",
            ])
            #expect(badCursor.stdout == #"{"error":{"message":"invalid after (a device id)"}}"# + "\n400")

            // Without a token the body is not even read: 401 however large it is; any other route still stops at
            // 2 MiB.
            let stranger = try await ExternalTool.runAsync([
                "curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Content-Type: application/json",
                "--data-binary", "@\(manifest)", "\(server.opsURL)/v1/admin/devices/import",
            ])
            #expect(stranger.stdout == "401", "\(stranger)")
            let otherRoute = try await ExternalTool.runAsync([
                "curl", "-s", "-w", "\n%{http_code}", "-H", "Authorization: Bearer \(server.adminToken)",
                "-H", "Content-Type: application/json", "--data-binary", "@\(manifest)", "\(server.opsURL)/v1/admin/tenants",
            ])
            #expect(otherRoute.stdout == #"{"error":{"message":"request body is larger than 2097152 bytes"}}"# + "\n413", "\(otherRoute)")

            // The import's own cap, for an admin: 64 MiB.
            let huge = work.file("huge.json")
            #expect(FileManager.default.createFile(atPath: huge, contents: Data(repeating: 0x20, count: 65 * 1024 * 1024)))
            let tooLarge = try await ExternalTool.runAsync([
                "curl", "-s", "-w", "\n%{http_code}", "-H", "Authorization: Bearer \(server.adminToken)",
                "-H", "Content-Type: application/json", "--data-binary", "@\(huge)", "\(server.opsURL)/v1/admin/devices/import",
            ])
            #expect(
                tooLarge.stdout
                    == #"{"error":{"message":"a manifest may be at most 64 MiB (at most 100000 devices per import)"}}"#
                    + "\n413", "\(tooLarge)")
            #expect(try await server.store.devices(DeviceFilter(limit: 50_000)).count == 30_000, "nothing else imported")
        }
    }
}
