import ArgumentParser
import DevIDCore
import DevIDPKI
import DevIDServer
import Foundation

struct Factory: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Factory tooling: issue IDevIDs for a manufacturing lot.", subcommands: [Mint.self])

    struct Mint: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Issue IDevIDs for a lot from the manufacturer CA and write manifest.json.",
            discussion: """
                Runs locally against the data directory (it needs the manufacturer CA key and the CA passphrase). \
                Each device gets OUT/<device-id>/idevid.key (0600), idevid.crt and chain.pem. With --csr-dir, \
                device-generated CSRs are signed instead and no key is written. Register the lot with \
                `devid device import OUT/manifest.json`.
                """)

        @OptionGroup var global: GlobalOptions
        @Option(name: .long, help: "Lot id, e.g. L2026-11.") var lot: String
        @Option(name: .long, help: "Tenant the lot is built for.") var tenant: String
        @Option(name: .long, help: "How many devices (without --csr-dir).") var count: Int?
        @Option(name: .long, help: "Output directory.") var out: String
        @Option(name: .long, help: "Sign the CSRs in this directory instead of generating keys.") var csrDir: String?
        @Option(name: .long, help: "Organization name in the IDevID subject.") var manufacturer: String = "DevID Manufacturer"
        @Option(
            name: .long,
            help: "Write CRL Distribution Point BASE/crl/manufacturer.crl and OCSP BASE/ocsp into each IDevID.")
        var revocationBaseURL: String?

        func run() async throws {
            guard let lotID = LotID(rawValue: lot) else { throw CLIError("invalid lot id \(lot)") }
            guard let tenantID = TenantID(rawValue: tenant) else { throw CLIError("invalid tenant \(tenant)") }
            if csrDir == nil && count == nil { throw CLIError("give --count N or --csr-dir DIR") }
            var configuration = try await ServerConfiguration.load(configFile: nil)
            configuration.dataDirectory = global.dataDir
            let hierarchy: CAHierarchy
            do {
                hierarchy = try DataDirectory.loadHierarchy(configuration: configuration)
            } catch {
                throw CLIError("\(error)")
            }
            guard let ca = hierarchy.manufacturer else {
                throw CLIError("this data directory has no manufacturer CA key (external manufacturers mint their own)")
            }
            var revocation: RevocationEndpoints?
            if let revocationBaseURL {
                guard RevocationEndpoints.isValidBaseURL(revocationBaseURL) else {
                    throw CLIError("--revocation-base-url must be http(s)://host[:port][/path]")
                }
                // The active manufacturer CA's CRL: `manufacturer`, `manufacturer2`, ... (devid ca manufacturer).
                let id = hierarchy.ownManufacturers.first { $0.value.certificate == ca.certificate }?.key ?? 1
                revocation = RevocationEndpoints(
                    baseURL: revocationBaseURL, caName: id == 1 ? "manufacturer" : "manufacturer\(id)")
            }
            let minter = LotMinter(manufacturer: ca, manufacturerName: manufacturer, revocation: revocation)
            let progress = ProgressBar(total: count ?? 0)
            let clock = SystemWallClock()
            let start = ContinuousClock.now
            let manifest: LotManifest
            do {
                if let csrDir {
                    manifest = try minter.sign(
                        csrDirectory: csrDir, lot: lotID, tenant: tenantID, outputDirectory: out, now: clock.now(),
                        progress: progress.update)
                } else {
                    manifest = try minter.mint(
                        lot: lotID, tenant: tenantID, count: count ?? 0, outputDirectory: out, now: clock.now(),
                        progress: progress.update)
                }
            } catch {
                progress.finish()
                throw CLIError("\(error)")
            }
            progress.finish()
            let elapsed = ContinuousClock.now - start
            let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
            if global.json {
                try Output.json(manifest)
            } else {
                print("minted \(manifest.devices.count) IDevIDs for lot \(lotID) (tenant \(tenantID)) in "
                    + String(format: "%.1f", seconds) + " s")
                print("manifest: \(out)/manifest.json   next: devid device import \(out)/manifest.json")
            }
        }
    }
}

/// A one-line progress bar on a terminal; silent when stderr is a pipe or a file.
final class ProgressBar: @unchecked Sendable {
    let total: Int
    let enabled: Bool
    private var last = -1

    init(total: Int) {
        self.total = total
        self.enabled = isatty(STDERR_FILENO) == 1
    }

    func update(_ done: Int) {
        guard enabled else { return }
        let width = 30
        let percent = total > 0 ? min(100, done * 100 / total) : 0
        guard percent != last || total == 0 else { return }
        last = percent
        let filled = total > 0 ? width * percent / 100 : 0
        let bar = String(repeating: "#", count: filled) + String(repeating: " ", count: width - filled)
        FileHandle.standardError.write(Data("\r[\(bar)] \(done)\(total > 0 ? "/\(total)" : "")".utf8))
    }

    func finish() {
        if enabled { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
