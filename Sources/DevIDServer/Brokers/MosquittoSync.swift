public import DevIDPKI
public import DevIDCore
public import Foundation
public import Logging
public import ServiceLifecycle
public import X509

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// Where `devid serve --mosquitto-dir D --mosquitto-pid-file F` keeps a Mosquitto broker's files, and how.
public struct MosquittoSyncConfiguration: Sendable, Hashable {
    /// The export directory (``MosquittoExport``'s files and the broker certificate).
    public var directory: String
    /// Mosquitto's pid file: the process that gets SIGHUP after each change. nil: write files only.
    public var pidFile: String?
    /// The broker's listener port and bind address, and the names its certificate carries.
    public var port: Int
    public var bindAddress: String
    public var brokerNames: [String]
    /// Rewrite at least this often even without a change (the CRLs' thisUpdate moves on), seconds.
    public var refreshInterval: TimeInterval

    public init(
        directory: String, pidFile: String? = nil, port: Int = 8883, bindAddress: String = "0.0.0.0",
        brokerNames: [String] = ["localhost", "127.0.0.1"], refreshInterval: TimeInterval = 3_600
    ) {
        self.directory = directory
        self.pidFile = pidFile
        self.port = port
        self.bindAddress = bindAddress
        self.brokerNames = brokerNames
        self.refreshInterval = refreshInterval
    }
}

/// Keeps a Mosquitto broker's DevID files fresh: rewrites them (atomically, only what changed) shortly after every
/// identity change — an enrollment adds the device's ACL block, a revocation removes it and adds the serial to
/// the CRL, a suspension removes the block — and on a timer, then signals Mosquitto (SIGHUP) to re-read them.
///
/// Changes are coalesced: a burst of revocations causes one rewrite per ``coalescingWindow``. The timer rewrite
/// keeps the exported CRL younger than its nextUpdate: Mosquitto refuses every client once its CRL has expired.
public actor MosquittoSync: Service {
    public typealias Snapshot = @Sendable () async throws -> (crls: [[UInt8]], grants: [BrokerGrant])

    public let configuration: MosquittoSyncConfiguration
    private let hierarchy: CAHierarchy
    /// The CA certificates the broker trusts for device certificates: every trusted issuing CA and the root.
    private let trust: @Sendable () -> [Certificate]
    private let clock: any WallClock
    private let logger: Logger
    private let snapshot: Snapshot
    private let recorder: ServiceCertificateRecorder
    private let endpoints: @Sendable () async -> RevocationEndpoints?
    private var pending = false
    private var wakeUp: CheckedContinuation<Void, Never>?
    private var writes = 0
    private(set) var lastWrite: ContinuousClock.Instant?
    static let coalescingWindow = Duration.milliseconds(100)

    /// - Parameters:
    ///   - recorder: records the broker certificate in the registry before it is written.
    ///   - endpoints: the services CA's CRL and OCSP endpoints, for the broker certificate.
    public init(
        configuration: MosquittoSyncConfiguration, hierarchy: CAHierarchy, clock: any WallClock, logger: Logger,
        trust: @escaping @Sendable () -> [Certificate], recorder: ServiceCertificateRecorder, endpoints: @escaping @Sendable () async -> RevocationEndpoints? = { nil },
        snapshot: @escaping Snapshot
    ) {
        self.configuration = configuration
        self.hierarchy = hierarchy
        self.trust = trust
        self.clock = clock
        self.logger = logger
        self.recorder = recorder
        self.endpoints = endpoints
        self.snapshot = snapshot
    }

    /// Something that the broker files depend on changed; rewrite soon.
    public func changed() {
        pending = true
        wakeUp?.resume()
        wakeUp = nil
    }

    /// How many times the files were written (changed or not), for tests.
    public var writeCount: Int { writes }

    public func run() async throws {
        try await sync(reason: "start")
        await cancelWhenGracefulShutdown {
            while !Task.isCancelled {
                await self.waitForChange()
                if Task.isCancelled { return }
                try? await Task.sleep(for: Self.coalescingWindow)
                do {
                    try await self.sync(reason: "change")
                } catch {
                    self.logger.error(
                        "writing the Mosquitto files failed", metadata: ["error": "\(error)"])
                }
            }
        }
    }

    private func waitForChange() async {
        if pending { return }
        let interval = configuration.refreshInterval
        let timer = Task { [weak self] in
            try? await Task.sleep(for: .seconds(interval))
            await self?.changed()
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { continuation in
                if pending || Task.isCancelled {
                    continuation.resume()
                } else {
                    wakeUp = continuation
                }
            }
        } onCancel: {
            Task { await self.changed() }
        }
        timer.cancel()
    }

    /// Writes the files now and signals the broker if any changed.
    public func sync(reason: String) async throws {
        pending = false
        let (crls, grants) = try await snapshot()
        // Mosquitto will not start with an empty crlfile, and refuses every device without its issuer's CRL: the
        // snapshot has no CRLs until the issuing CAs' first publication (at start), which triggers a sync.
        guard !crls.isEmpty else {
            logger.debug(
                "Mosquitto files not written: no CRL of the issuing CAs yet", metadata: ["reason": "\(reason)"])
            return
        }
        let directory = configuration.directory
        let now = clock.now()
        // From the services CA only (never the EST server's issuing CA), recorded before it is written.
        let names = configuration.brokerNames
        if !BrokerCertificate.isCurrent(
            directory: directory, names: names, issuer: hierarchy.services?.certificate, now: now)
        {
            let recorder = self.recorder
            try await BrokerCertificate.ensure(
                directory: directory, names: names, services: try hierarchy.requireServices(), now: now,
                revocation: await endpoints()
            ) { certificate in
                try await recorder.record(certificate, service: "mosquitto", names: names, actor: "system")
            }
        }
        let export = MosquittoExport(
            port: configuration.port, bindAddress: configuration.bindAddress,
            certificateFile: "\(directory)/\(BrokerCertificate.certificateFile)",
            keyFile: "\(directory)/\(BrokerCertificate.keyFile)")
        let trust = self.trust()
        // Both refuse (and nothing is written) when a value would not stay on its line: the broker keeps the files
        // it has, and `run()` logs the reason.
        let files = try export.files(directory: directory, trust: trust, crls: crls, grants: grants)
        let changed = try MosquittoExport.write(files, to: directory)
        writes += 1
        lastWrite = .now
        if !changed.isEmpty {
            signalBroker()
            logger.info(
                "Mosquitto files updated", metadata: ["changed": "\(changed.joined(separator: ","))", "reason": "\(reason)", "devices": "\(grants.count)"])
        }
    }

    private func signalBroker() {
        guard let pidFile = configuration.pidFile else { return }
        guard let text = try? String(contentsOfFile: pidFile, encoding: .utf8),
            let pid = Int32(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1
        else {
            logger.warning("Mosquitto pid file unreadable; broker not reloaded", metadata: ["path": "\(pidFile)"])
            return
        }
        if kill(pid, SIGHUP) != 0 {
            logger.warning("signalling Mosquitto failed", metadata: ["pid": "\(pid)"])
        }
    }
}
