public import DevIDCore
import DevIDPKI
import DevIDStore
import Foundation
import Hummingbird
import HummingbirdCore
public import Logging
import NIOCore
import NIOSSL
public import ServiceLifecycle
import SwiftASN1
import X509

/// `devid serve`: the EST / mTLS listener and the operations listener, run as one `Service`.
///
/// Both Hummingbird applications run in a `ServiceGroup` inside `run()`; the caller puts this service in its own
/// group with the signal handling (SIGINT/SIGTERM → graceful shutdown).
public struct DevIDServerApp: Service {
    public let state: ServerState
    /// What the first start created; empty on later starts.
    public let firstStart: FirstStartReport
    private let bound: BoundAddresses
    /// What the listeners present: their certificate, the active issuing CA, and cross-certificates of its root.
    private let serverChain: [X509.Certificate]

    /// Prepares the data directory (creating the CA hierarchy and the first admin token if missing).
    public init(configuration: ServerConfiguration, clock: any WallClock = SystemWallClock(), logger: Logger) async throws {
        try configuration.ldevidPolicy.rotation.validate()
        try configuration.validateRevocation()
        try configuration.connectionLimits.validate()
        let prepared = try await DataDirectory.prepare(configuration: configuration, clock: clock, logger: logger)
        let records = try await IssuingAuthorities.register(
            prepared.hierarchy.issuingAuthorities, store: prepared.store,
            auditor: Auditor(store: prepared.store, clock: clock, logger: logger), now: clock.now(), actor: "system")
        let issuers = try IssuingAuthorities(
            authorities: prepared.hierarchy.issuingAuthorities, records: records, roots: prepared.hierarchy.roots,
            manufacturers: prepared.hierarchy.trustedManufacturers)
        self.state = ServerState(
            configuration: configuration, hierarchy: prepared.hierarchy, issuers: issuers, store: prepared.store,
            clock: clock, logger: logger)
        // The settings kept in the registry apply over the file's from the start.
        await RegistryChangeRouter.applySettings(state)
        self.serverChain = try await Self.serverChain(state: state)
        self.firstStart = prepared.report
        self.bound = BoundAddresses()
    }

    /// Waits until both listeners are bound and returns their ports (useful with port 0).
    public func waitUntilRunning() async -> (est: Int, ops: Int) {
        await bound.wait()
    }

    public func run() async throws {
        let state = self.state
        let configuration = state.configuration
        // Every cache follows the registry's change stream while the server runs. What other writers committed
        // between opening the store and now was read by this server's own writes with nobody listening: apply it.
        let subscription = RegistryChangeRouter.subscribe(state)
        defer { state.store.changeFeed.unsubscribe(subscription) }
        await RegistryChangeRouter.replay(state, after: state.store.changeFeed.start)

        let deviceRouter = Router(context: DeviceRequestContext.self)
        Routes.device(deviceRouter, state: state)
        let limits = configuration.connectionLimits
        let opsRouter = Router(context: OpsRequestContext.self)
        // First: the body cap reads every body but the import's before the routes' own middleware.
        opsRouter.add(middleware: ContinueOnReadMiddleware())
        opsRouter.add(
            middleware: BodyLimitMiddleware(
                maxBytes: limits.opsMaxBodyBytes,
                exempt: [BodyLimitMiddleware<OpsRequestContext>.route(.post, "/v1/admin/devices/import")]))
        let authzToken = Routes.ops(opsRouter, state: state)
        let fastPath = authzToken.map {
            AuthzFastPathHandler.Shared(
                token: $0, engine: state.authz, clock: state.clock, answered: state.authzFastPathAnswered,
                metrics: state.metrics.http.recorder(listener: .ops, route: "/v1/authz/mqtt", method: .post, status: 200))
        }

        let tlsConfiguration = try Self.tlsConfiguration(state.hierarchy, chain: serverChain)
        let verifier = ClientCertificateVerifier(state: state)
        // Chain verdicts by exact certificate: a device that reconnects (or resumes) is not re-verified; the registry is.
        let leafCache = state.verifiedLeaves
        let idleTimeout = TimeAmount.nanoseconds(Int64(limits.idleTimeoutSeconds * 1e9))
        let handshakeTimeout = TimeAmount.nanoseconds(Int64(limits.handshakeTimeoutSeconds * 1e9))
        // Each listener counts its own connections: a flood on one does not lock operators out of the other.
        let estConnections = ConnectionCounter(
            maxConnections: limits.maxConnections, maxPerAddress: limits.maxConnectionsPerAddress)
        let opsConnections = ConnectionCounter(
            maxConnections: limits.maxConnections, maxPerAddress: limits.maxConnectionsPerAddress)
        let estServer = HTTPServerBuilder { responder in
            LimitedChannel(
                try MTLSChannel(
                    HTTP1Channel(responder: responder, configuration: .init(idleTimeout: idleTimeout)),
                    tlsConfiguration: tlsConfiguration, handshakeTimeout: handshakeTimeout, leafCache: leafCache,
                    verify: { certificates in await verifier.verify(certificates) }),
                counter: estConnections)
        }
        let opsServer = HTTPServerBuilder { responder in
            LimitedChannel(
                AuthzFastPathChannel(
                    HTTP1Channel(responder: responder, configuration: .init(idleTimeout: idleTimeout)),
                    shared: fastPath),
                counter: opsConnections)
        }
        let bound = self.bound
        let est = Application(
            router: deviceRouter,
            server: estServer,
            configuration: .init(address: .hostname(configuration.estHost, port: configuration.estPort), serverName: "DevID"),
            onServerRunning: { channel in await bound.set(est: channel.localAddress?.port ?? 0) },
            logger: state.logger
        )
        let ops = Application(
            router: opsRouter,
            server: opsServer,
            configuration: .init(address: .hostname(configuration.opsHost, port: configuration.opsPort), serverName: "DevID"),
            onServerRunning: { channel in
                let port = channel.localAddress?.port ?? 0
                await bound.set(ops: port)
                await state.revocation.listenerBound(
                    opsURL: "http://\(EndpointsWriter.urlHost(configuration.opsHost)):\(port)")
            },
            logger: state.logger
        )
        let endpointsWriter = EndpointsWriter(state: state, bound: bound)
        let brokers = state.brokers
        await state.revocation.observePublications { await brokers.crlsPublished() }
        // First in the group, so it stops last and its shutdown checkpoint covers everything the listeners wrote.
        let checkpointer = AuditCheckpointer(
            store: state.store, secret: try AuditSecret.load(configuration).0,
            file: AuditCheckpointFile(dataDirectory: configuration.dataDirectory), wallClock: state.clock,
            clock: ContinuousClock(), logger: state.logger)
        let group = ServiceGroup(
            configuration: .init(
                services: [
                    .init(service: checkpointer),
                    // Before the listeners, so it stops after them and writes what they counted.
                    .init(
                        service: AnonymousFailureFlusher(
                            failures: state.anonymousFailures, decisions: [state.repeatedDenials, state.repeatedConnects],
                            clock: ContinuousClock())),
                    // Before the listeners, so it stops after them and writes the last hour's health counts.
                    .init(service: HealthHistoryFlusher(history: state.metrics.history, clock: ContinuousClock())),
                    // Before the listeners, so it stops after them and writes back the last uses of admin tokens.
                    .init(service: state.adminTokens),
                    .init(service: est), .init(service: ops),
                    .init(service: endpointsWriter, successTerminationBehavior: .ignore),
                    .init(service: RotationSweeper(state: state)),
                    .init(service: RegistryChangePoller(store: state.store, logger: state.logger)),
                    .init(service: AuthzWarmup(state: state), successTerminationBehavior: .ignore),
                    .init(service: state.revocation),
                ] + (state.brokers.mosquitto.map { [.init(service: $0)] } ?? [])
                    + (state.brokers.rabbitMQ.map {
                        [.init(service: RabbitMQRechecks(sessions: $0, clock: ContinuousClock()))]
                    } ?? []),
                logger: state.logger))
        try await withGracefulShutdownHandler {
            try await group.run()
        } onGracefulShutdown: {
            Task { await group.triggerGracefulShutdown() }
        }
    }

    /// The listeners' chain: a certificate of the active issuing CA (re-issued, same key and names, when the one on
    /// disk is another CA's: after `devid ca issuing activate`, at the next start), the active issuing CA, and the
    /// cross-certificates that certify its root under the other trusted roots, so that a device trusting either
    /// root of a rollover validates it. Read at start: restart after `devid ca root prepare`.
    static func serverChain(state: ServerState) async throws -> [X509.Certificate] {
        let hierarchy = state.hierarchy
        var chain = hierarchy.serverChain
        let active = state.issuers.snapshot.active
        // With the listener key in memory (CA keys in a token), its certificate is made at every start.
        let inMemory = hierarchy.metadata.listenerKeyInMemory == true
        if let leaf = chain.first, chain.dropFirst().first != active.certificate || inMemory {
            chain = try CAStore.reissueServerCertificate(
                layout: CALayout(dataDirectory: state.configuration.dataDirectory), current: leaf, issuing: active.ca,
                now: state.clock.now(),
                publicKey: inMemory ? try KeyMaterial.privateKey(pkcs8: hierarchy.serverKeyPKCS8).publicKey : nil)
            await state.auditor.record(
                actor: "system", action: "tls.server_certificate", outcome: .success,
                reason: "re-issued the listeners' certificate from the active issuing CA \(active.id)",
                serial: chain.first?.devidSerial)
        }
        let roots = state.issuers.snapshot.roots
        if let rootID = roots.ids.first(where: { id in
            roots.certificates[id].map { active.certificate.issuer == $0.subject } == true
        }) {
            // Also by a retired root: a device that was away through the rollover still trusts only that one.
            chain += roots.cross.filter { $0.subjectID == rootID }.map(\.certificate)
        }
        return chain
    }

    static func tlsConfiguration(_ hierarchy: CAHierarchy, chain: [X509.Certificate]) throws -> TLSConfiguration {
        let chain = try chain.map {
            NIOSSLCertificateSource.certificate(try NIOSSLCertificate(bytes: $0.derBytes, format: .der))
        }
        let key = try NIOSSLPrivateKey(bytes: hierarchy.serverKeyPKCS8, format: .der)
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        tls.minimumTLSVersion = .tlsv12
        // TLS 1.2: ECDHE with an AEAD cipher only (the server key is P-256, so ECDSA suites): AES-128-GCM, the one every
        // TLS 1.2 device stack has, and ChaCha20-Poly1305 for devices without AES hardware. No CBC (LUCKY13, the
        // "average" class of testssl), no static RSA, no AES-256-GCM: NIOSSL has no server-preference switch, and with
        // two AES-GCM strengths the client's order would pick (testssl: "NOT a cipher order configured", HIGH). TLS 1.3
        // keeps BoringSSL's three AEAD suites. See docs/security.md, "TLS scan".
        tls.cipherSuiteValues = [
            .TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, .TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        ]
        // Request a client certificate, accept a connection without one, verify one that is presented.
        tls.certificateVerification = .optionalVerification
        // Names the acceptable CAs in the CertificateRequest; verification itself is DevID's callback.
        tls.trustRoots = .certificates(
            try (hierarchy.roots.ids.compactMap { hierarchy.roots.certificates[$0] }
                + hierarchy.issuingAuthorities.map(\.certificate) + hierarchy.trustedManufacturers).map {
                try NIOSSLCertificate(bytes: $0.derBytes, format: .der)
            })
        return tls
    }
}

/// Verifies client certificates at the injected time against the device trust (the issuing CA for LDevIDs, whose
/// signature by the root was checked when the hierarchy loaded; trusted manufacturer CAs for IDevIDs), and audits
/// every refusal.
struct ClientCertificateVerifier: Sendable {
    let state: ServerState

    func verify(_ presented: [NIOSSLCertificate]) async -> NIOSSLVerificationResultWithMetadata {
        let presentedLeaf = presented.first
        let certificates: [X509.Certificate]
        var leafDER: [UInt8] = []
        do {
            // The leaf is new on each handshake; the CA certificates a device sends along are the same few.
            certificates = try presented.enumerated().map { index, certificate in
                let der = try certificate.toDERBytes()
                if index == 0 { leafDER = der }
                if index > 0, let known = IssuerCertificateCache.shared.known(der: der) { return known }
                return try X509.Certificate(derEncoded: der)
            }
        } catch {
            await state.anonymousFailures.record(
                action: "tls.client_auth", reason: "client certificate does not parse", source: TLSPeerAddress.current)
            state.metrics.authFailure(.tls, .other)
            return .failed
        }
        guard let leaf = certificates.first else { return .failed }
        let now = state.clock.now()
        let presented = Array(certificates.dropFirst())
        let issuers = state.issuers.snapshot
        var outcome = await issuers.deviceTrust.validate(leaf: leaf, presented: presented, at: now)
        // Late renewal: an LDevID that expired less than the grace period ago may still reach simplereenroll.
        // The handshake accepts it only if it chained while it was valid; every handler checks expiry itself.
        let lifecycle = CredentialLifecycle(policy: state.configuration.ldevidPolicy.rotation)
        if case .untrusted = outcome, now > leaf.notValidAfter, lifecycle.withinGrace(notAfter: leaf.notValidAfter, at: now),
            case .trusted(let chain) = await issuers.deviceTrust.validate(
                leaf: leaf, presented: presented, at: leaf.notValidAfter.addingTimeInterval(-1)),
            issuers.isLDevIDChain(chain)
        {
            outcome = .trusted(chain: chain)
        }
        switch outcome {
        case .trusted(let chain):
            do {
                // The leaf as presented; its issuers (trust anchors) encoded for NIOSSL once, not per handshake.
                let validated = try chain.enumerated().map { index, certificate in
                    if index == 0, let presentedLeaf { return presentedLeaf }
                    return try IssuerCertificateCache.shared.nioSSLCertificate(for: certificate)
                }
                VerifiedLeafHandoff.shared.put(der: leafDER, leaf)
                return .certificateVerified(VerificationMetadata(ValidatedCertificateChain(validated)))
            } catch {
                return .failed
            }
        case .untrusted(let reason):
            state.metrics.authFailure(.tls, .tls(leaf: leaf, now: now))
            // Nothing is proven by a certificate that does not verify: counted and audited in aggregate.
            await state.anonymousFailures.record(
                action: "tls.client_auth", reason: leaf.devidSerialNote.map { "\(reason); \($0)" } ?? reason,
                source: TLSPeerAddress.current, serial: leaf.devidSerial)
            return .failed
        }
    }
}

/// The ports the listeners actually bound, for `waitUntilRunning()` and `server.json`.
actor BoundAddresses {
    private var est: Int?
    private var ops: Int?
    private var waiters: [CheckedContinuation<(est: Int, ops: Int), Never>] = []

    func set(est port: Int) {
        est = port
        resume()
    }

    func set(ops port: Int) {
        ops = port
        resume()
    }

    func wait() async -> (est: Int, ops: Int) {
        if let est, let ops { return (est, ops) }
        return await withCheckedContinuation { waiters.append($0) }
    }

    private func resume() {
        guard let est, let ops else { return }
        for waiter in waiters { waiter.resume(returning: (est, ops)) }
        waiters.removeAll()
    }
}

/// Writes `DATA/server.json` once both listeners are up, so CLI commands find the server from `--data-dir`.
struct EndpointsWriter: Service {
    let state: ServerState
    let bound: BoundAddresses

    func run() async throws {
        let ports = await bound.wait()
        let configuration = state.configuration
        let endpoints = ServerEndpoints(
            estURL: "https://\(Self.urlHost(configuration.estHost)):\(ports.est)",
            opsURL: "http://\(Self.urlHost(configuration.opsHost)):\(ports.ops)",
            pid: getpid())
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try SecureFile.write(Array(try encoder.encode(endpoints)), to: configuration.endpointsPath, mode: 0o644)
        state.logger.info(
            "DevID listening", metadata: ["est": "\(endpoints.estURL)", "ops": "\(endpoints.opsURL)"])
        // Stay until graceful shutdown: finishing while the group shuts another service down fails the group.
        try? await gracefulShutdown()
    }

    static func urlHost(_ host: String) -> String {
        if host == "0.0.0.0" || host == "::" { return "127.0.0.1" }
        return host.contains(":") ? "[\(host)]" : host
    }
}

// ServiceLifecycle logs services with `description` at debug level: never let reflection print keys or tokens.
extension DevIDServerApp: CustomStringConvertible {
    public var description: String { "DevIDServerApp(\(state))" }
}

extension ServerState: CustomStringConvertible {
    public var description: String {
        "ServerState(dataDirectory: \(configuration.dataDirectory), trustDomain: \(hierarchy.trustDomain))"
    }
}

extension FirstStartReport: CustomStringConvertible {
    public var description: String {
        "FirstStartReport(createdHierarchy: \(createdHierarchy), adminToken: \(adminToken == nil ? "none" : "<redacted>"))"
    }
}
