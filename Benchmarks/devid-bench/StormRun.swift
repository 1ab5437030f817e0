import ArgumentParser
import DevIDPKI
import Foundation
import Histogram
import NIOCore
import NIOHTTP1
import NIOPosix
import NIOSSL
import SwiftASN1
import Synchronization
import X509

/// `devid-bench storm run`: every prepared device checks in at the same moment, a share of them re-enrolls, all
/// retrying as the agent does, while probes time the operations listener.
struct StormRun: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "All prepared devices check in at once (a share re-enrolls), retrying as the agent does; probes "
            + "time /healthz, /readyz, OCSP and the admin API.")

    @Option(name: .long, help: "The state file written by storm prepare.")
    var state: String

    @Option(name: .long, help: "The operations listener, e.g. http://127.0.0.1:8080 (server.json's opsURL).")
    var ops: String

    @Option(name: .long, help: "A file holding an admin token (DATA/secrets/admin-token) for the admin API probe.")
    var adminTokenFile: String

    @Option(name: .long, help: "Share of the devices that re-enroll (simplereenroll) after checking in, 0-1.")
    var reenrollShare = 0.2

    @Option(name: .long, help: "Connections this process holds open at once (file descriptors).")
    var maxConnections = 2_048

    @Option(name: .long, help: "Milliseconds between two probes of each kind.")
    var probeIntervalMs = 50

    @Option(name: .long, help: "Give up on devices not served after this many seconds.")
    var deadline: Double = 600

    @Option(name: .long, help: "The server's process id, to sample its memory from /proc/PID/status.")
    var serverPid: Int32?

    @OptionGroup var server: StormServerOptions

    @Flag(name: .long, help: "Print one JSON document on stdout instead of the tables.")
    var json = false

    func validate() throws {
        guard StormEndpoint(ops) != nil else { throw ValidationError("--ops must be http://HOST:PORT") }
        guard (0...1).contains(reenrollShare) else { throw ValidationError("--reenroll-share must be 0-1") }
        guard (1...16_384).contains(maxConnections) else { throw ValidationError("--max-connections must be 1-16384") }
        guard (5...10_000).contains(probeIntervalMs) else {
            throw ValidationError("--probe-interval-ms must be 5-10000")
        }
        guard deadline > 0 else { throw ValidationError("--deadline must be positive") }
    }

    /// One device, ready before the storm.
    struct Prepared: Sendable {
        var id: String
        var context: NIOSSLContext
        var source: SocketAddress?
        var reenroll: Bool
    }

    func run() async throws {
        let machine = MachineFacts.current()
        let stormState = try JSONDecoder().decode(StormState.self, from: Data(contentsOf: URL(fileURLWithPath: state)))
        guard !stormState.devices.isEmpty else { throw BenchError("\(state) holds no devices") }
        let adminToken = try String(contentsOfFile: adminTokenFile, encoding: .utf8)
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let root = try server.root()
        let endpoint = server.endpoint
        let opsEndpoint = StormEndpoint(ops)!
        let clock = ContinuousClock()

        // Everything a device needs, before the storm: TLS contexts with its LDevID.
        progress("loading \(stormState.devices.count) devices from \(state)")
        let setupStart = clock.now
        var devices: [Prepared] = []
        devices.reserveCapacity(stormState.devices.count)
        var firstCertificate: Certificate?
        for (index, entry) in stormState.devices.enumerated() {
            guard let certificateDER = Data(base64Encoded: entry.certificate), let keyDER = Data(base64Encoded: entry.key)
            else { throw BenchError("\(state): device \(entry.id) is not readable") }
            if firstCertificate == nil { firstCertificate = try Certificate(derEncoded: Array(certificateDER)) }
            let context = try stormTLSContext(
                chain: [try NIOSSLCertificate(bytes: Array(certificateDER), format: .der)],
                key: try NIOSSLPrivateKey(bytes: Array(keyDER), format: .der), root: root)
            // Re-enrollers spread evenly over the list (and so over the sources).
            let reenroll = Int(Double(index + 1) * reenrollShare) > Int(Double(index) * reenrollShare)
            devices.append(Prepared(id: entry.id, context: context, source: try server.source(index), reenroll: reenroll))
        }
        let setupSeconds = (clock.now - setupStart).seconds

        // The probes: liveness, readiness (when the server has it), OCSP for a device's LDevID, an admin read.
        let caCertificates = try stormState.caCertificates.map {
            try Certificate(derEncoded: Array(Data(base64Encoded: $0) ?? Data()))
        }
        guard let leaf = firstCertificate, let issuer = caCertificates.first(where: { $0.subject == leaf.issuer }) else {
            throw BenchError("\(state) has no CA certificate that issued the LDevIDs")
        }
        let ocspRequest = OCSPRequest(certificateIDs: [try OCSPCertificateID(certificate: leaf, issuer: issuer)])
        var probes = [
            StormProbe(name: "healthz", path: "/healthz"),
            StormProbe(name: "ocsp", path: "/ocsp/" + Data(ocspRequest.derBytes).base64EncodedString()),
            StormProbe(
                name: "admin", path: "/v1/admin/devices/\(devices[0].id)",
                headers: [("Authorization", "Bearer \(adminToken)")]),
        ]
        let readyz = try? await KeepAliveConnection.with(host: opsEndpoint.host, port: opsEndpoint.port) {
            try await $0.send(method: .GET, path: "/readyz")
        }
        if readyz?.status == 200 { probes.insert(StormProbe(name: "readyz", path: "/readyz"), at: 1) }

        let stop = StormStopFlag()
        let interval = Duration.milliseconds(probeIntervalMs)
        let probeTasks = probes.map { probe in
            Task { await probe.run(host: opsEndpoint.host, port: opsEndpoint.port, interval: interval, stop: stop) }
        }
        let memoryTask = serverPid.map { pid in
            Task { await StormMemory.sample(pid: pid, interval: interval, stop: stop) }
        }

        // The storm: every device at once.
        progress(
            "storm: \(devices.count) devices check in at once, \(devices.filter(\.reenroll).count) then re-enroll")
        let journal = StormJournal()
        let stormStart = clock.now
        let retrier = StormRetrier(
            backoff: server.backoff, deadline: stormStart + .seconds(deadline), journal: journal)
        let client = StormRequest(host: endpoint.host, port: endpoint.port, group: MultiThreadedEventLoopGroup.singleton)
        let connections = StormSemaphore(maxConnections)
        let tenant = stormState.tenant
        let outcomes = await withTaskGroup(of: DeviceOutcome.self) { group in
            for device in devices {
                group.addTask {
                    await Self.storm(
                        device, tenant: tenant, client: client, retrier: retrier, connections: connections,
                        start: stormStart)
                }
            }
            var all: [DeviceOutcome] = []
            for await outcome in group { all.append(outcome) }
            return all
        }
        let stormSeconds = (clock.now - stormStart).seconds
        // A second of probes after the storm, then stop.
        try? await Task.sleep(for: .seconds(1))
        stop.set()
        var probeResults: [StormProbe.Result] = []
        for task in probeTasks { probeResults.append(await task.value) }
        let memory = await memoryTask?.value

        let report = StormReport(
            machine: machine, devices: devices.count, reenrollers: devices.filter(\.reenroll).count,
            sources: server.sources, backoff: server.backoff, setupSeconds: setupSeconds, stormSeconds: stormSeconds,
            outcomes: outcomes, journal: journal.snapshot(), probes: probeResults, memory: memory)
        if json {
            try printJSON(report)
        } else {
            print(report.render())
        }
        guard report.failures.isEmpty else {
            progress("FAILED: " + report.failures.joined(separator: "; "))
            throw ExitCode(1)
        }
    }

    struct DeviceOutcome: Sendable {
        var checkedIn: Bool
        var reenrolled: Bool?
        /// Seconds from the storm's start until this device was served (checked in, and re-enrolled if it had to).
        var servedAfter: Double?
    }

    private static func storm(
        _ device: Prepared, tenant: String, client: StormRequest, retrier: StormRetrier,
        connections: StormSemaphore, start: ContinuousClock.Instant
    ) async -> DeviceOutcome {
        let checkIn = await retrier.run({
            try await connections.with {
                try await client.send(
                    tlsContext: device.context, source: device.source, method: .GET, path: "/v1/device/status")
            }
        }) { $0.status == 200 }
        guard checkIn != nil else { return DeviceOutcome(checkedIn: false, reenrolled: nil, servedAfter: nil) }
        guard device.reenroll else {
            return DeviceOutcome(checkedIn: true, reenrolled: nil, servedAfter: (ContinuousClock.now - start).seconds)
        }
        // A new key, as the agent's rotation does; the CSR is made once and sent on every try.
        guard let csr = try? stormCSR(device: device.id, tenant: tenant) else {
            return DeviceOutcome(checkedIn: true, reenrolled: false, servedAfter: nil)
        }
        let publicKey = csr.key.publicKey
        let reenroll = await retrier.run({
            try await connections.with {
                try await client.send(
                    tlsContext: device.context, source: device.source, method: .POST,
                    path: "/.well-known/est/simplereenroll", contentType: "application/pkcs10", body: csr.body)
            }
        }) { $0.status == 200 }
        guard let reenroll, stormIssuedCertificate(reenroll.body, for: publicKey) != nil else {
            return DeviceOutcome(checkedIn: true, reenrolled: false, servedAfter: nil)
        }
        return DeviceOutcome(checkedIn: true, reenrolled: true, servedAfter: (ContinuousClock.now - start).seconds)
    }
}
