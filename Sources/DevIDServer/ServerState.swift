public import DevIDCore
public import DevIDPKI
public import DevIDStore
public import Logging

/// What every handler needs, built once at start.
public struct ServerState: Sendable {
    /// The configuration in effect now: the live settings follow the registry and SIGHUP (``LiveConfiguration``).
    public var configuration: ServerConfiguration { live.current }
    public let live: LiveConfiguration
    public let hierarchy: CAHierarchy
    /// The issuing CAs: which signs, which are trusted (the registry's word, ``IssuingAuthorities``).
    public let issuers: IssuingAuthorities
    /// Client chains verified earlier, by leaf; emptied when an issuing CA stops being trusted.
    let verifiedLeaves: VerifiedLeafCache
    public let store: any Store
    public let clock: any WallClock
    public let logger: Logger
    public let auditor: Auditor
    /// The CRLs and OCSP answers; the registry's change stream invalidates them (``RegistryChangeRouter``).
    public let revocation: RevocationPublisher
    /// The policy-decision index (`/v1/authz/*`); the change stream invalidates what changed in the registry.
    public let authz: DecisionEngine
    /// Grants ``AuthzFastPathHandler`` answered before the router.
    let authzFastPathAnswered = FastPathCount()
    /// Brokers kept in step with identity changes (Mosquitto files, RabbitMQ sessions); see ``BrokerHooks``.
    public let brokers: BrokerHooks
    /// The admin API tokens, cached in memory; the change stream invalidates them.
    public let adminTokens: AdminTokenCache<ContinuousClock>
    /// Failures with no authenticated identity, audited in aggregate (``AnonymousFailures``).
    public let anonymousFailures: AnonymousFailures
    /// Repeated denials of identified devices (the decision API), audited in aggregate.
    public let repeatedDenials: RepeatedDecisions
    /// Repeated `connect` grants of identified devices (a device reconnecting in a loop), audited in aggregate.
    public let repeatedConnects: RepeatedDecisions
    /// Devices whose connects are told apart in a minute (a few hundred bytes each); beyond, one count per minute.
    public static let connectGroupsPerMinute = 100_000
    /// Per-client token buckets (``RateLimits``).
    public let rateLimiter: RateLimiter
    /// The cap on enrollments in flight, with a share reserved for renewals.
    public let enrollmentGate: EnrollmentGate
    /// The event-fed Prometheus metrics (`GET /metrics`), this server's own.
    public let metrics: ServerMetrics
    /// The root's pre-signed CRLs, served at `/crl/root.crl`.
    let rootCRLs: RootCRLCache
    /// The pre-signed CRLs of the roots after the first (root rollover), served at `/crl/root<id>.crl`.
    let otherRootCRLs: RootCRLCache.Others
    /// Recent identity events the anomaly checks judge (revoked credentials presented, shared credentials, ...).
    public let watch = IdentityWatch()

    public init(
        configuration: ServerConfiguration, hierarchy: CAHierarchy, issuers: IssuingAuthorities, store: any Store,
        clock: any WallClock, logger: Logger
    ) {
        self.live = LiveConfiguration(configuration)
        self.hierarchy = hierarchy
        self.issuers = issuers
        self.verifiedLeaves = VerifiedLeafCache(clock: clock)
        self.store = store
        self.clock = clock
        self.logger = logger
        self.auditor = Auditor(store: store, clock: clock, logger: logger)
        self.metrics = ServerMetrics(history: HealthHistory(store: store, clock: clock, logger: logger))
        self.anonymousFailures = AnonymousFailures(auditor: auditor, clock: clock)
        self.repeatedDenials = RepeatedDecisions(auditor: auditor, clock: clock)
        // Every device of a fleet may reconnect in the same minute (a broker restart): each keeps its own first row.
        self.repeatedConnects = RepeatedDecisions(
            auditor: auditor, clock: clock, maximumKeys: Self.connectGroupsPerMinute, outcome: .success)
        self.rateLimiter = RateLimiter(clock: clock, maximumBuckets: configuration.rateLimits.maximumBuckets)
        self.enrollmentGate = EnrollmentGate(
            capacity: configuration.rateLimits.maxEnrollmentsInFlight, reserve: configuration.rateLimits.renewalReserve)
        self.revocation = RevocationPublisher(
            configuration: configuration, hierarchy: hierarchy,
            issuing: issuers.snapshot.entries.map(\.authority), store: store, clock: clock, logger: logger,
            auditor: auditor)
        self.authz = DecisionEngine()
        self.rootCRLs = RootCRLCache(
            directory: CALayout(dataDirectory: configuration.dataDirectory).rootCRLDirectory, root: hierarchy.root,
            logger: logger)
        self.otherRootCRLs = RootCRLCache.Others(
            layout: CALayout(dataDirectory: configuration.dataDirectory), logger: logger)
        self.adminTokens = AdminTokenCache(store: store, clock: ContinuousClock())
        let rootCRLs = self.rootCRLs
        let otherRootCRLs = self.otherRootCRLs
        self.brokers = BrokerHooks(
            configuration: configuration, hierarchy: hierarchy, issuers: issuers, store: store, revocation: revocation,
            rootCRLs: {
                ServerState.currentRootCRLs(
                    roots: issuers.snapshot.roots, first: rootCRLs, others: otherRootCRLs, now: clock.now())
            }, clock: clock, logger: logger)
    }
}
