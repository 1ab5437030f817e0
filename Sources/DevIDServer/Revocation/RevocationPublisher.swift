import DevIDCore
public import DevIDPKI
import DevIDStore
import Foundation
import Synchronization
import Logging
public import ServiceLifecycle
import X509

/// Publishes revocation status: the signed CRLs of every CA whose key the server holds (the issuing CA for
/// LDevIDs, the services CA for brokers' certificates, DevID's own manufacturer CA for IDevIDs), and OCSP answers
/// signed by a short-lived delegated responder.
///
/// - CRLs are rebuilt from the registry when ``invalidate()`` is called (after any revocation; at most one rebuild
///   per `revocationCoalesceMilliseconds`, so a burst shares a few rebuilds and each revocation is published within
///   a second), and on a
///   schedule at half of their validity, so a relying party never holds an expired CRL while the server runs.
///   Expired certificates leave the CRL. The CRL number comes from the registry (one counter for every server that
///   shares it), is persisted before a CRL is published and never goes down, across restarts too.
/// - OCSP answers read the registry live. Answers without a nonce are cached until a revocation; the delegated
///   signing certificate (id-kp-OCSPSigning, id-pkix-ocsp-nocheck) lives in memory only and is replaced when less
///   than half of its lifetime remains.
///
/// Runs as a `Service` in `DevIDServerApp`'s group; the routes read from it.
public actor RevocationPublisher: Service {
    /// One CA whose revocation status DevID publishes.
    struct Authority: Sendable {
        /// `issuing`, `services` or `manufacturer`: the CRL's file name.
        let name: String
        let ca: CertificateAuthority
        /// The issuer as the registry stores it on each credential.
        let registryIssuer: String
        let partitions: Int
        /// DevID's own manufacturer CA: its IDevIDs are devices' ``Device/idevidSerial``s, not credentials.
        let issuesIDevIDs: Bool
        /// The services CA: its certificates are the registry's service certificates, not credentials.
        var issuesServiceCertificates = false
        let builder: CRLBuilder
        /// Signs nothing: answers whether a CertID names this CA (its issuer name and key hashes).
        let matcher: OCSPResponder

        func isAskedAbout(_ request: OCSPRequest) -> Bool {
            request.certificateIDs.contains { matcher.isAuthoritative(for: $0) }
        }
    }

    /// The current delegated OCSP signer of one CA.
    struct Signer: Sendable {
        let responder: OCSPResponder
        let renewAt: Date
        let notAfter: Date
    }

    /// A cached OCSP answer (requests without a nonce only).
    struct CachedAnswer: Sendable {
        let response: OCSPResponse
        let nextUpdate: Date
        let expiresAt: Date
    }

    /// What the OCSP route sends.
    struct Answer: Sendable {
        let response: OCSPResponse
        /// Set for a cacheable successful answer (no nonce): when it stops being valid.
        let nextUpdate: Date?
        /// Set with `nextUpdate`: until when the answer may be served again without signing anew.
        var cacheUntil: Date? = nil
    }

    private let configuration: ServerConfiguration
    private let store: any Store
    private let clock: any WallClock
    private let logger: Logger
    private let auditor: Auditor
    private(set) var authorities: [Authority]

    private var baseURL: String?
    private var baseURLWaiters: [CheckedContinuation<String, Never>] = []

    private var published: [String: PublishedCRL] = [:]
    /// Loaded at the first rebuild; see ``PartitionHistory``.
    private var partitionHistory: PartitionHistory?
    /// Names that are known but deliberately not served, with the reason.
    private var withheld: [String: String] = [:]
    private var lastCRLNumber: UInt64?
    /// Whether the job lease was held at the last rebuild: a server that gains it builds at once.
    private var heldAtLastRebuild = false
    private var pending = false
    private var waiter: CheckedContinuation<Void, Never>?
    private var scheduled = ContinuousClock.now
    private var lastRebuildStarted = ContinuousClock.now
    /// How many times the CRLs were rebuilt (tests, logs).
    private(set) var rebuildCount = 0

    private var signers: [String: Signer] = [:]
    /// The `GET /ocsp/<request>` answers by request path, read without entering the actor; emptied with `cache`.
    nonisolated let getAnswers = OCSPGetCache()
    private var cache: [[UInt8]: CachedAnswer] = [:]
    /// Bumped by every invalidation: an answer computed across one is not cached.
    private var generation: UInt64 = 0
    static let maximumCachedAnswers = 10_000

    /// - Parameter issuing: the issuing CAs the registry knows (every state: a revoked CA's CRL still lists its
    ///   LDevIDs), by id.
    init(
        configuration: ServerConfiguration, hierarchy: CAHierarchy, issuing: [IssuingAuthority], store: any Store,
        clock: any WallClock, logger: Logger, auditor: Auditor
    ) {
        self.configuration = configuration
        self.store = store
        self.clock = clock
        self.logger = logger
        self.auditor = auditor
        var authorities = Self.issuingAuthorities(issuing, partitions: configuration.crlPartitions)
        // The services CA (brokers' certificates): few certificates, one CRL, never partitioned.
        if let services = hierarchy.services, let builder = try? CRLBuilder(authority: services),
            let matcher = try? OCSPResponder(authority: services)
        {
            authorities.append(
                Authority(
                    name: "services", ca: services, registryIssuer: String(describing: services.certificate.subject),
                    partitions: 1, issuesIDevIDs: false, issuesServiceCertificates: true, builder: builder,
                    matcher: matcher))
        }
        // DevID's own manufacturer CAs only (`manufacturer`, `manufacturer2`, ...): an external manufacturer publishes
        // its own revocation status.
        for (id, manufacturer) in hierarchy.ownManufacturers.sorted(by: { $0.key < $1.key }) {
            guard let builder = try? CRLBuilder(authority: manufacturer),
                let matcher = try? OCSPResponder(authority: manufacturer)
            else { continue }
            authorities.append(
                Authority(
                    name: id == 1 ? "manufacturer" : "manufacturer\(id)", ca: manufacturer,
                    registryIssuer: String(describing: manufacturer.certificate.subject), partitions: 1,
                    issuesIDevIDs: true, builder: builder, matcher: matcher))
        }
        self.authorities = authorities
        self.baseURL = configuration.revocationBaseURL.map { RevocationEndpoints(baseURL: $0, caName: "").baseURL }
    }

    /// One ``Authority`` per issuing CA, CA 1 first (its CRL is `issuing`).
    private static func issuingAuthorities(_ issuing: [IssuingAuthority], partitions: Int) -> [Authority] {
        issuing.sorted { $0.id < $1.id }.compactMap { authority in
            guard let builder = try? CRLBuilder(authority: authority.ca),
                let matcher = try? OCSPResponder(authority: authority.ca)
            else { return nil }
            return Authority(
                name: authority.crlName, ca: authority.ca, registryIssuer: authority.registryIssuer,
                partitions: partitions, issuesIDevIDs: false, builder: builder, matcher: matcher)
        }
    }

    /// The set of issuing CAs changed (one was prepared): publish a CRL for each from the next rebuild, which
    /// starts now.
    func setIssuing(_ issuing: [IssuingAuthority]) {
        let others = authorities.filter { $0.issuesIDevIDs || $0.issuesServiceCertificates }
        authorities = Self.issuingAuthorities(issuing, partitions: configuration.crlPartitions) + others
        invalidate()
    }

    // MARK: - Endpoints

    /// Called when the operations listener is bound: the default base URL is `http://<ops host>:<port>`.
    func listenerBound(opsURL: String) {
        guard baseURL == nil else { return }
        baseURL = opsURL
        for waiter in baseURLWaiters { waiter.resume(returning: opsURL) }
        baseURLWaiters.removeAll()
    }

    private func resolvedBaseURL() async -> String {
        if let baseURL { return baseURL }
        return await withCheckedContinuation { baseURLWaiters.append($0) }
    }

    /// Where the CA named `caName` publishes; what goes into the certificates it issues.
    public func endpoints(caName: String) async -> RevocationEndpoints {
        let partitions = authorities.first { $0.name == caName }?.partitions ?? 1
        return RevocationEndpoints(baseURL: await resolvedBaseURL(), caName: caName, partitionCount: partitions)
    }

    // MARK: - Invalidation and the rebuild loop

    /// A revocation happened: drop cached OCSP answers now, and rebuild the CRLs within the coalescing window.
    public func invalidate() {
        generation &+= 1
        cache.removeAll(keepingCapacity: true)
        getAnswers.removeAll()
        pending = true
        wake()
    }

    private func wake() {
        waiter?.resume()
        waiter = nil
    }

    public func run() async throws {
        // Graceful shutdown cancels the loop, including its sleeps.
        await cancelWhenGracefulShutdown {
            await self.loop()
        }
    }

    /// The job-lease holder stored new CRLs (a change of kind `crl`): a server that does not hold the lease serves
    /// them at once.
    public func storedCRLsChanged() {
        guard !store.jobLease.isHeld else { return }
        pending = true
        wake()
    }

    private func loop() async {
        await rebuild()
        while !Task.isCancelled {
            // Without the job lease, wake every 2 s to see whether it came (then build at once).
            let deadline = store.jobLease.isHeld ? scheduled : min(scheduled, ContinuousClock.now.advanced(by: .seconds(2)))
            await sleepUntilWork(deadline: deadline)
            if Task.isCancelled { break }
            if !pending, store.jobLease.isHeld == heldAtLastRebuild, ContinuousClock.now < scheduled { continue }
            if pending {
                // At most one rebuild per coalescing window: the first revocation after a quiet spell is
                // published at once, the rest of a burst together at the end of the window.
                let window = Duration.milliseconds(configuration.revocationCoalesceMilliseconds)
                let sinceLast = ContinuousClock.now - lastRebuildStarted
                if sinceLast < window {
                    try? await Task.sleep(for: window - sinceLast)
                }
            }
            await rebuild()
        }
    }

    private func sleepUntilWork(deadline: ContinuousClock.Instant) async {
        guard !pending, deadline > ContinuousClock.now else { return }
        let timer = Task { [weak self] in
            try? await Task.sleep(until: deadline, clock: .continuous)
            await self?.wake()
        }
        await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                if pending || Task.isCancelled {
                    continuation.resume()
                } else {
                    waiter = continuation
                }
            }
        } onCancel: {
            timer.cancel()
        }
        timer.cancel()
    }

    private var publishObservers: [@Sendable () async -> Void] = []

    /// Calls `observer` after every successful rebuild (brokers that keep a copy of the CRLs refresh it).
    public func observePublications(_ observer: @escaping @Sendable () async -> Void) {
        publishObservers.append(observer)
    }

    /// Rebuilds and publishes every CRL now. On failure the previous CRLs stay published and a retry is scheduled
    /// in five seconds.
    func rebuild() async {
        pending = false
        heldAtLastRebuild = store.jobLease.isHeld
        let started = ContinuousClock.now
        lastRebuildStarted = started
        do {
            try await rebuildCRLs()
            rebuildCount += 1
            for observer in publishObservers { await observer() }
            let halfValidity = max(1, configuration.crlValidity / 2)
            scheduled = started.advanced(by: .seconds(halfValidity))
        } catch {
            // Shutting down: nothing to publish any more.
            if Task.isCancelled { return }
            logger.error("CRL rebuild failed; the previous CRLs stay published", metadata: ["error": "\(error)"])
            scheduled = ContinuousClock.now.advanced(by: .seconds(5))
        }
    }

    private func rebuildCRLs() async throws {
        let now = clock.now()
        // Several servers on one registry: the holder of the job lease builds, signs and stores the CRLs; the
        // others serve what it stored, so every server serves the same CRLs under the same numbers. Without usable
        // stored CRLs (none yet, expired, or for another set of CAs) a server builds its own and keeps them to itself.
        let holder = store.jobLease.isHeld
        if !holder, try await loadStored(now: now) { return }
        let thisUpdate = now
        let nextUpdate = now.addingTimeInterval(configuration.crlValidity)
        var entriesByAuthority: [[RevokedEntry]] = []
        for authority in authorities {
            entriesByAuthority.append(try await revokedEntries(of: authority, now: now))
        }
        let number = try await nextCRLNumber()
        var fresh: [String: PublishedCRL] = [:]
        var withheld: [String: String] = [:]
        for (authority, entries) in zip(authorities, entriesByAuthority) {
            let endpoints = await endpoints(caName: authority.name)
            let built = try await Self.build(
                authority.builder, entries: entries, endpoints: endpoints, thisUpdate: thisUpdate,
                nextUpdate: nextUpdate, number: number)
            let maximum = configuration.crlMaximumBytes
            for (index, crl) in built.enumerated() {
                let partition: Int? = index == 0 ? nil : index - 1
                let name = endpoints.crlName(partition: partition)
                if partition == nil, authority.partitions > 1, crl.derBytes.count > maximum {
                    withheld[name] =
                        "CRL \(name) is partitioned (\(crl.derBytes.count) bytes complete); fetch the partition "
                        + "named in the certificate's CRL distribution point"
                    continue
                }
                if crl.derBytes.count > maximum {
                    logger.error(
                        "CRL over the size limit: raise crl.partitions for new certificates",
                        metadata: ["crl": "\(name)", "bytes": "\(crl.derBytes.count)", "limit": "\(maximum)"])
                }
                fresh[name] = PublishedCRL(
                    name: name, caName: authority.name, crl: crl, url: endpoints.crlURL(name: name))
            }
            // The partitions of earlier counts, for the unexpired certificates that still name them.
            for count in earlierPartitionCounts(of: authority, now: now) {
                let earlier = RevocationEndpoints(
                    baseURL: endpoints.baseURL, caName: authority.name, partitionCount: count)
                let partitions = try await Self.buildPartitions(
                    authority.builder, entries: entries, endpoints: earlier, thisUpdate: thisUpdate,
                    nextUpdate: nextUpdate, number: number)
                for (index, crl) in partitions.enumerated() {
                    let name = earlier.crlName(partition: index)
                    if crl.derBytes.count > configuration.crlMaximumBytes {
                        logger.error(
                            "CRL over the size limit: a partition of an earlier crl.partitions",
                            metadata: [
                                "crl": "\(name)", "bytes": "\(crl.derBytes.count)",
                                "limit": "\(configuration.crlMaximumBytes)",
                            ])
                    }
                    fresh[name] = PublishedCRL(
                        name: name, caName: authority.name, crl: crl, url: earlier.crlURL(name: name))
                }
            }
        }
        // A registry of one server (SQLite) has nobody to share them with.
        if holder, store.jobLease !== JobLease.alwaysHeld {
            var stored = fresh.values.map {
                StoredCRL(name: $0.name, caName: $0.caName, url: $0.url, number: number, der: $0.der)
            }
            for (name, reason) in withheld {
                let caName = authorities.first { name.hasPrefix($0.name) }?.name ?? name
                stored.append(StoredCRL(name: name, caName: caName, url: "", number: number, der: [], withheld: reason))
            }
            // Stored before this server serves them: the others follow (a change of kind `crl`).
            try await store.storeCRLs(stored)
        }
        published = fresh
        self.withheld = withheld
        logger.debug(
            "CRLs published",
            metadata: [
                "number": "\(number)", "crls": "\(fresh.count)",
                "entries": "\(entriesByAuthority.map(\.count).reduce(0, +))",
            ])
    }

    /// Serves the CRLs the job-lease holder stored, if they are usable: each signed by its CA, not past its next
    /// update, and one for every CA this server publishes. Returns false (the caller builds its own) otherwise.
    private func loadStored(now: Date) async throws -> Bool {
        let stored = try await store.storedCRLs()
        guard !stored.isEmpty else { return false }
        var fresh: [String: PublishedCRL] = [:]
        var withheld: [String: String] = [:]
        for entry in stored {
            if let reason = entry.withheld {
                withheld[entry.name] = reason
                continue
            }
            guard let authority = authorities.first(where: { $0.name == entry.caName }) else { continue }
            let crl = try CertificateRevocationList(derEncoded: entry.der)
            guard crl.isSignatureValid(issuer: authority.ca.certificate) else {
                logger.error("a stored CRL is not signed by its CA; building this server's own", metadata: ["crl": "\(entry.name)"])
                return false
            }
            guard (crl.nextUpdate ?? crl.thisUpdate) > now else { return false }
            fresh[entry.name] = PublishedCRL(name: entry.name, caName: entry.caName, crl: crl, url: entry.url)
        }
        for authority in authorities where fresh[authority.name] == nil && withheld[authority.name] == nil {
            return false
        }
        published = fresh
        self.withheld = withheld
        return true
    }

    /// The complete CRL first, then each partition when the CA is partitioned. Signing a large CRL takes a while,
    /// so it runs off the actor.
    @concurrent
    private static func build(
        _ builder: CRLBuilder, entries: [RevokedEntry], endpoints: RevocationEndpoints, thisUpdate: Date,
        nextUpdate: Date, number: UInt64
    ) async throws -> [CertificateRevocationList] {
        let complete = try builder.build(
            entries: entries, thisUpdate: thisUpdate, nextUpdate: nextUpdate, crlNumber: number)
        return [complete]
            + (try await buildPartitions(
                builder, entries: entries, endpoints: endpoints, thisUpdate: thisUpdate, nextUpdate: nextUpdate,
                number: number))
    }

    /// The partitions `0..<endpoints.partitionCount` of `entries`, each with its Issuing Distribution Point; none
    /// for a count of 1.
    @concurrent
    private static func buildPartitions(
        _ builder: CRLBuilder, entries: [RevokedEntry], endpoints: RevocationEndpoints, thisUpdate: Date,
        nextUpdate: Date, number: UInt64
    ) async throws -> [CertificateRevocationList] {
        guard endpoints.partitionCount > 1 else { return [] }
        let partitioner = CRLPartitioner(partitionCount: endpoints.partitionCount)
        return try partitioner.split(entries).enumerated().map { index, partition in
            try builder.build(
                entries: partition, thisUpdate: thisUpdate, nextUpdate: nextUpdate, crlNumber: number,
                distributionPoint: endpoints.crlURL(name: endpoints.crlName(partition: index)))
        }
    }

    /// Records the partition count `authority` issues under now, and answers the earlier counts whose
    /// certificates may still be unexpired (``PartitionHistory``). The history is persisted. A file that cannot be
    /// read is moved aside to `partitions.json.unreadable` and a new history starts (logged at error, since the
    /// counts it held are no longer published); if it cannot be moved, nothing is written and the next rebuild
    /// tries again. Neither stops the current CRLs from being published.
    private func earlierPartitionCounts(of authority: Authority, now: Date) -> [Int] {
        guard !authority.issuesIDevIDs, !authority.issuesServiceCertificates else { return [] }
        let path = configuration.crlDirectory + "/partitions.json"
        var history: PartitionHistory
        if let partitionHistory {
            history = partitionHistory
        } else {
            do {
                history = try PartitionHistory.load(path)
            } catch {
                let aside = path + ".unreadable"
                guard rename(path, aside) == 0 else {
                    logger.error(
                        "cannot read the CRL partition history, nor move it aside; earlier partition counts are not published",
                        metadata: ["path": "\(path)", "error": "\(error)"])
                    return []
                }
                logger.error(
                    "cannot read the CRL partition history; moved aside, earlier partition counts it lists are no longer published",
                    metadata: ["path": "\(path)", "movedTo": "\(aside)", "error": "\(error)"])
                history = PartitionHistory()
            }
        }
        // Certificates issued from now until the next rebuild (at most one CRL validity away) live one lifetime.
        let retention = configuration.ldevidPolicy.lifetime.map { $0 + configuration.crlValidity }
        history.record(authority.partitions, at: now, retention: retention)
        let earlier = history.earlierCounts(current: authority.partitions, now: now)
        if history != partitionHistory {
            do {
                try SecureFile.createDirectory(configuration.crlDirectory)
                try history.save(path)
            } catch {
                logger.error(
                    "cannot write the CRL partition history", metadata: ["path": "\(path)", "error": "\(error)"])
            }
        }
        partitionHistory = history
        return earlier
    }

    /// Every revoked, unexpired credential of `authority`, a page at a time; for DevID's manufacturer CA, every
    /// revoked IDevID (kept until the device is deleted: the registry does not know when an IDevID expires).
    private func revokedEntries(of authority: Authority, now: Date) async throws -> [RevokedEntry] {
        var entries: [RevokedEntry] = []
        if authority.issuesIDevIDs {
            entries = try await revokedIDevIDEntries(
                now: now, issuerSHA256: authority.ca.certificate.sha256Fingerprint,
                orUnknown: authority.name == "manufacturer")
        }
        if authority.issuesServiceCertificates {
            return try await revokedServiceEntries(now: now)
        }
        var after: DevIDCore.SerialNumber?
        let page = 10_000
        while true {
            let credentials = try await store.revokedCredentials(
                issuer: authority.registryIssuer, notExpiredAt: now, afterSerial: after, limit: page)
            for credential in credentials {
                var reason = credential.revocationReason ?? .unspecified
                if reason == .removeFromCRL { reason = .unspecified }
                entries.append(
                    RevokedEntry(serial: credential.serial, revokedAt: credential.revokedAt ?? now, reason: reason))
            }
            guard credentials.count == page, let last = credentials.last else { break }
            after = last.serial
        }
        return entries
    }

    private func revokedServiceEntries(now: Date) async throws -> [RevokedEntry] {
        var entries: [RevokedEntry] = []
        var after: DevIDCore.SerialNumber?
        let page = 10_000
        while true {
            let certificates = try await store.revokedServiceCertificates(
                notExpiredAt: now, afterSerial: after, limit: page)
            for certificate in certificates {
                var reason = certificate.revocationReason ?? .unspecified
                if reason == .removeFromCRL { reason = .unspecified }
                entries.append(
                    RevokedEntry(serial: certificate.serial, revokedAt: certificate.revokedAt ?? now, reason: reason))
            }
            guard certificates.count == page, let last = certificates.last else { break }
            after = last.serial
        }
        return entries
    }

    /// The revoked IDevIDs of the manufacturer CA with fingerprint `issuerSHA256` (and, with `orUnknown`, those whose
    /// device records no issuer: registered before DevID had several manufacturer CAs, so of the first).
    private func revokedIDevIDEntries(now: Date, issuerSHA256: String, orUnknown: Bool) async throws -> [RevokedEntry] {
        var entries: [RevokedEntry] = []
        var after: DevIDCore.SerialNumber?
        let page = 10_000
        while true {
            let devices = try await store.revokedIDevIDs(afterSerial: after, limit: page)
            for device in devices {
                guard let serial = device.idevidSerial else { continue }
                if let issuer = device.idevidIssuerSHA256 {
                    guard issuer == issuerSHA256 else { continue }
                } else if !orUnknown {
                    continue
                }
                var reason = device.idevidRevocationReason ?? .unspecified
                if reason == .removeFromCRL { reason = .unspecified }
                entries.append(RevokedEntry(serial: serial, revokedAt: device.idevidRevokedAt ?? now, reason: reason))
            }
            guard devices.count == page, let last = devices.last?.idevidSerial else { break }
            after = last
        }
        return entries
    }

    /// The next CRL number: allocated by the registry, so that servers sharing one never give two CRLs the same
    /// number, and never below what this server used before (`DATA/crl/number`, also where a server of an earlier
    /// DevID kept it, and what keeps numbers rising over a registry restored from an older backup). Written to that
    /// file before any CRL carrying it is published.
    private func nextCRLNumber() async throws -> UInt64 {
        let path = configuration.crlDirectory + "/number"
        if lastCRLNumber == nil {
            if FileManager.default.fileExists(atPath: path) {
                let text = String(decoding: try SecureFile.read(path), as: UTF8.self)
                guard let stored = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
                    throw DevIDPKIError(.malformed, "\(path) does not hold a CRL number")
                }
                lastCRLNumber = stored
            } else {
                lastCRLNumber = 0
            }
        }
        let next = try await store.nextCRLNumber(atLeast: lastCRLNumber ?? 0)
        try SecureFile.createDirectory(configuration.crlDirectory)
        try SecureFile.write(Array("\(next)\n".utf8), to: path, mode: 0o644)
        lastCRLNumber = next
        return next
    }

    // MARK: - Reading

    /// The CRL published under `name` (without `.crl`).
    func crl(named name: String) -> CRLLookup {
        if let crl = published[name] { return .found(crl) }
        if let reason = withheld[name] { return .missing(status: 404, reason: reason) }
        if published.isEmpty, authorities.contains(where: { name.hasPrefix($0.name) }) {
            return .missing(status: 503, reason: "CRLs are not published yet; retry in a second")
        }
        return .missing(status: 404, reason: "unknown CRL \(name)")
    }

    /// Every published CRL, by name.
    func publishedCRLs() -> [PublishedCRL] {
        published.values.sorted { $0.name < $1.name }
    }

    /// The `notAfter` of each CA's current delegated OCSP signer, by CA name; a CA has one only once it has answered
    /// an OCSP request (signers are issued on first use).
    func ocspSignerExpiries() -> [(ca: String, notAfter: Date)] {
        signers.map { (ca: $0.key, notAfter: $0.value.notAfter) }.sorted { $0.ca < $1.ca }
    }

    /// When the CRLs are next re-signed at the latest, in seconds from now (for `Cache-Control`).
    func secondsUntilScheduledRebuild() -> Int {
        let remaining = scheduled - ContinuousClock.now
        return max(0, Int(remaining.components.seconds))
    }

    // MARK: - OCSP

    /// Answers a parsed OCSP request: cached if it has no nonce and nothing was revoked since, else from the
    /// registry, signed by the delegated responder of the CA the request asks about.
    func answer(_ request: OCSPRequest, der: [UInt8]) async -> Answer {
        let now = clock.now()
        let cacheable = request.nonce == nil
        if cacheable, let cached = cache[der] {
            if cached.expiresAt > now {
                return Answer(response: cached.response, nextUpdate: cached.nextUpdate, cacheUntil: cached.expiresAt)
            }
            cache[der] = nil
        }
        // A CertID of no CA of ours is answered `unknown` by the issuing CA's responder.
        guard let authority = authorities.first(where: { $0.isAskedAbout(request) }) ?? authorities.first else {
            return Answer(response: .unauthorized, nextUpdate: nil)
        }
        let signer: Signer
        do {
            signer = try await self.signer(for: authority, now: now)
        } catch {
            logger.error("OCSP signer could not be issued", metadata: ["ca": "\(authority.name)", "error": "\(error)"])
            return Answer(response: .tryLater, nextUpdate: nil)
        }
        let generation = self.generation
        let nextUpdate = min(now.addingTimeInterval(configuration.ocspValidity), signer.notAfter)
        let store = self.store
        let issuer = authority.registryIssuer
        let issuesIDevIDs = authority.issuesIDevIDs
        let issuesServiceCertificates = authority.issuesServiceCertificates
        // What this server publishes for the CA: the answer when the registry cannot be reached.
        let served = published.values.filter { $0.caName == authority.name }.map(\.crl)
        let answeredFromCRL = Mutex(false)
        let response = await signer.responder.respond(
            to: request, producedAt: now, thisUpdate: now, nextUpdate: nextUpdate
        ) { serial in
            do {
                if issuesServiceCertificates {
                    return try await Self.serviceStatus(of: serial, issuer: issuer, store: store)
                }
                return try await Self.status(of: serial, issuer: issuer, issuesIDevIDs: issuesIDevIDs, store: store)
            } catch let error as StoreError where error.code == .unavailable && !served.isEmpty {
                answeredFromCRL.withLock { $0 = true }
                return Self.status(of: serial, in: served)
            }
        }
        guard response.status == .successful else { return Answer(response: response, nextUpdate: nil) }
        // An answer from the CRL is not kept: the registry's own answer replaces it once it is back.
        guard cacheable, !answeredFromCRL.withLock({ $0 }) else { return Answer(response: response, nextUpdate: nil) }
        // Re-sign well before nextUpdate so relying parties always get a fresh window.
        let expiresAt = now.addingTimeInterval(nextUpdate.timeIntervalSince(now) / 2)
        guard generation == self.generation else { return Answer(response: response, nextUpdate: nextUpdate) }
        if cache.count >= Self.maximumCachedAnswers { cache.removeAll(keepingCapacity: true) }
        cache[der] = CachedAnswer(response: response, nextUpdate: nextUpdate, expiresAt: expiresAt)
        return Answer(response: response, nextUpdate: nextUpdate, cacheUntil: expiresAt)
    }

    /// The registry's word on one serial of `issuer`: revoked (time, reason), good, or unknown. For DevID's
    /// manufacturer CA, the IDevIDs the registry knows (from lot manifests and enrollments) come first.
    private static func status(
        of serial: Certificate.SerialNumber, issuer: String, issuesIDevIDs: Bool, store: any Store
    ) async throws -> OCSPCertificateStatus {
        let id = DevIDCore.SerialNumber(bytes: serial.bytes)
        if issuesIDevIDs, let device = try await store.device(idevidSerial: id) {
            guard let revokedAt = device.idevidRevokedAt else { return .good }
            return .revoked(at: revokedAt, reason: device.idevidRevocationReason ?? .unspecified)
        }
        guard let credential = try await store.credential(serial: id), credential.issuer == issuer else {
            return .unknown
        }
        guard credential.status == .revoked else { return .good }
        return .revoked(
            at: credential.revokedAt ?? credential.createdAt, reason: credential.revocationReason ?? .unspecified)
    }

    /// With the registry unreachable (a PostgreSQL registry down or failing over), the CRLs this server publishes
    /// answer: listed is `revoked`, anything else `good`, which RFC 6960 §2.2 defines as "not revoked" (the responder
    /// cannot tell an unknown serial then). A revocation made while the registry is down cannot exist: it is a
    /// registry write. The CRLs stay valid until their nextUpdate (crl.validity.hours, 24 by default).
    static func status(of serial: Certificate.SerialNumber, in crls: [CertificateRevocationList]) -> OCSPCertificateStatus {
        for crl in crls {
            if let entry = crl.entry(for: serial) { return .revoked(at: entry.revokedAt, reason: entry.reason) }
        }
        return .good
    }

    /// The registry's word on one serial of the services CA: a service certificate, revoked or good; else unknown.
    private static func serviceStatus(
        of serial: Certificate.SerialNumber, issuer: String, store: any Store
    ) async throws -> OCSPCertificateStatus {
        let id = DevIDCore.SerialNumber(bytes: serial.bytes)
        guard let certificate = try await store.serviceCertificate(serial: id), certificate.issuer == issuer else {
            return .unknown
        }
        guard certificate.status == .revoked else { return .good }
        return .revoked(
            at: certificate.revokedAt ?? certificate.createdAt, reason: certificate.revocationReason ?? .unspecified)
    }

    /// The delegated OCSP signer of `authority`, issued anew when less than half of its lifetime remains.
    private func signer(for authority: Authority, now: Date) async throws -> Signer {
        if let signer = signers[authority.name], now < signer.renewAt { return signer }
        let key = try KeyMaterial.generate(.p256)
        var policy = CertificateProfile.ocspSigning.policy
        policy.lifetime = configuration.ocspSignerLifetime
        let subject = try DistinguishedName {
            OrganizationName("DevID")
            CommonName("DevID OCSP Responder (\(authority.name))")
        }
        let certificate = try authority.ca.issue(
            subject: subject, publicKey: key.publicKey, profile: CertificateProfile(kind: .ocspSigning, policy: policy),
            now: now)
        let responder = try OCSPResponder(
            issuer: authority.ca.certificate, responderCertificate: certificate, responderKey: key)
        let lifetime = certificate.notValidAfter.timeIntervalSince(now)
        let signer = Signer(
            responder: responder, renewAt: now.addingTimeInterval(lifetime / 2), notAfter: certificate.notValidAfter)
        signers[authority.name] = signer
        await auditor.record(
            actor: "system", action: "ocsp.signer", outcome: .success,
            reason: "issued the \(authority.name) CA's OCSP signing certificate, valid until "
                + "\(certificate.notValidAfter.formatted(.iso8601))",
            serial: certificate.devidSerial)
        return signer
    }

    /// The current OCSP signing certificate of `caName` (issued on first use).
    func signingCertificate(caName: String) async throws -> Certificate? {
        guard let authority = authorities.first(where: { $0.name == caName }) else { return nil }
        return try await signer(for: authority, now: clock.now()).responder.responderCertificate
    }
}

extension RevocationPublisher: CustomStringConvertible {
    public nonisolated var description: String { "RevocationPublisher" }
}
