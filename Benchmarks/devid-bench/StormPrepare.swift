import ArgumentParser
import DevIDPKI
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import X509

/// `devid-bench storm prepare`: enroll every device of a minted lot over EST with its IDevID, and keep each LDevID
/// and key in one state file for `storm run`.
struct StormPrepare: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prepare",
        abstract: "Enroll a minted, imported lot over EST (IDevID mTLS) and write every LDevID to a state file.",
        discussion: """
            The lot comes from `devid factory mint --out LOT` and must be registered (`devid device import \
            LOT/manifest.json`). Enrollments honour 429/503 and Retry-After as the agent does; run the server with \
            the limits off (DEVID_LIMITS_*=0) to prepare fast.
            """)

    @Option(name: .long, help: "The lot directory written by devid factory mint (manifest.json and one folder per device).")
    var lot: String

    @Option(name: .long, help: "The state file to write (JSON).")
    var out: String

    @Option(name: .long, help: "Enrollments in flight at once.")
    var concurrency = 16

    @Option(name: .long, help: "Give up after this many seconds.")
    var timeout: Double = 3_600

    @OptionGroup var server: StormServerOptions

    @Flag(name: .long, help: "Print one JSON document on stdout instead of a line.")
    var json = false

    func validate() throws {
        guard (1...1_024).contains(concurrency) else { throw ValidationError("--concurrency must be 1-1024") }
        guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
    }

    struct Report: Codable, Sendable {
        var benchmark = "storm prepare"
        var machine: MachineFacts
        var devices: Int
        var enrolled: Int
        var seconds: Double
        var enrollmentsPerSecond: Double
        var journal: StormJournal.Snapshot
        var failures: [String]
    }

    func run() async throws {
        let machine = MachineFacts.current()
        let manifestData = try Data(contentsOf: URL(fileURLWithPath: lot + "/manifest.json"))
        guard let manifest = try JSONSerialization.jsonObject(with: manifestData) as? [String: Any],
            let tenant = manifest["tenant"] as? String, let entries = manifest["devices"] as? [[String: Any]]
        else { throw BenchError("\(lot)/manifest.json is not a lot manifest") }
        let ids = entries.compactMap { $0["deviceID"] as? String }
        guard !ids.isEmpty, ids.count == entries.count else { throw BenchError("the manifest lists no devices") }

        let root = try server.root()
        let endpoint = server.endpoint
        let client = StormRequest(host: endpoint.host, port: endpoint.port, group: MultiThreadedEventLoopGroup.singleton)
        let clock = ContinuousClock()
        let start = clock.now
        let journal = StormJournal()
        let retrier = StormRetrier(backoff: server.backoff, deadline: start + .seconds(timeout), journal: journal)
        let lot = self.lot
        let options = self.server

        // The CA certificates, for the state file (run needs the issuing CA to ask OCSP about the LDevIDs).
        func idevidContext(_ id: String) throws -> NIOSSLContext {
            try stormTLSContext(
                chain: try NIOSSLCertificate.fromPEMFile("\(lot)/\(id)/chain.pem"),
                key: try NIOSSLPrivateKey(file: "\(lot)/\(id)/idevid.key", format: .pem), root: root)
        }
        let cacerts = try await client.send(
            tlsContext: try idevidContext(ids[0]), source: nil, method: .GET, path: "/.well-known/est/cacerts")
        guard cacerts.status == 200, let der = ESTBase64.decode(Array(buffer: cacerts.body)),
            let cms = try? CertsOnlyCMS(derEncoded: der)
        else { throw BenchError("GET /.well-known/est/cacerts answered HTTP \(cacerts.status)") }

        progress("enrolling \(ids.count) devices of \(lot), \(concurrency) at a time")
        let next = IndexDispenser()
        let results = await withTaskGroup(of: [(Int, StormState.DeviceEntry?, String?)].self) { group in
            for _ in 0..<min(concurrency, ids.count) {
                group.addTask {
                    var mine: [(Int, StormState.DeviceEntry?, String?)] = []
                    while true {
                        let index = next.take()
                        guard index < ids.count else { break }
                        let id = ids[index]
                        do {
                            let context = try idevidContext(id)
                            let source = try options.source(index)
                            let csr = try stormCSR(device: id, tenant: tenant)
                            let publicKey = csr.key.publicKey
                            let reply = await retrier.run({
                                try await client.send(
                                    tlsContext: context, source: source, method: .POST,
                                    path: "/.well-known/est/simpleenroll", contentType: "application/pkcs10",
                                    body: csr.body)
                            }) { $0.status == 200 }
                            guard let reply, let certificate = stormIssuedCertificate(reply.body, for: publicKey)
                            else {
                                mine.append((index, nil, "\(id): no LDevID for its CSR key"))
                                continue
                            }
                            mine.append(
                                (
                                    index,
                                    StormState.DeviceEntry(
                                        id: id, certificate: Data(certificate.derBytes).base64EncodedString(),
                                        key: Data(csr.pkcs8).base64EncodedString()), nil
                                ))
                        } catch {
                            mine.append((index, nil, "\(id): \(error)"))
                        }
                    }
                    return mine
                }
            }
            var all: [(Int, StormState.DeviceEntry?, String?)] = []
            for await batch in group { all += batch }
            return all.sorted { $0.0 < $1.0 }
        }
        let seconds = (clock.now - start).seconds
        let devices = results.compactMap(\.1)
        let failures = Array(results.compactMap(\.2).prefix(10))
        let state = StormState(
            tenant: tenant,
            caCertificates: cms.certificates.map { Data($0.derBytes).base64EncodedString() },
            devices: devices)
        try JSONEncoder().encode(state).write(to: URL(fileURLWithPath: out), options: .atomic)

        let report = Report(
            machine: machine, devices: ids.count, enrolled: devices.count, seconds: seconds,
            enrollmentsPerSecond: Double(devices.count) / seconds, journal: journal.snapshot(), failures: failures)
        if json {
            try printJSON(report)
        } else {
            print(
                "enrolled \(devices.count) of \(ids.count) devices in \(fixed(seconds, 1)) s "
                    + "(\(fixed(report.enrollmentsPerSecond, 1))/s, \(machine.build)); state in \(out)")
        }
        guard devices.count == ids.count else {
            progress("FAILED: " + failures.joined(separator: "; "))
            throw ExitCode(1)
        }
    }
}
