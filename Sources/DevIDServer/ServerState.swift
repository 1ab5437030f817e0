public import DevIDCore
public import DevIDPKI
public import DevIDStore
public import Logging

/// What every handler needs, built once at start.
public struct ServerState: Sendable {
    public let configuration: ServerConfiguration
    public let hierarchy: CAHierarchy
    public let store: any Store
    public let clock: any WallClock
    public let logger: Logger
    public let auditor: Auditor

    public init(
        configuration: ServerConfiguration, hierarchy: CAHierarchy, store: any Store, clock: any WallClock,
        logger: Logger
    ) {
        self.configuration = configuration
        self.hierarchy = hierarchy
        self.store = store
        self.clock = clock
        self.logger = logger
        self.auditor = Auditor(store: store, clock: clock, logger: logger)
    }
}
