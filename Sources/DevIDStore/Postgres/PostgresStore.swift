public import DevIDCore
public import Foundation
import GRDB
public import Logging
public import PostgresNIO
import Synchronization
public import NIOSSL

/// The registry on PostgreSQL, for several DevID servers sharing one database (postgres-nio, a connection pool).
///
/// **Writes are serialized.** Every write transaction first takes one transaction-scoped advisory lock
/// (``writeLockKey``), so writes from all servers follow each other as SQLite's single writer makes them: the
/// read-then-write steps of a transaction (the audit chain's last link, a claim token's remaining uses, the last
/// usable admin token) see no other writer between them, the audit trail stays one chain, and the change stream is
/// numbered in commit order. Reads take no lock and run concurrently, each on a connection of the pool.
///
/// Open it with ``open(_:auditKey:migrate:logger:)``, which checks the login on a connection of its own (a pool
/// retries a refused login for a minute), runs the migrations under a lock (several servers may start at once),
/// and starts the pool. ``close()`` stops the pool.
public final class PostgresStore: Store, @unchecked Sendable {
    /// The advisory lock every write transaction holds (an arbitrary constant: "DevI" in ASCII).
    public static let writeLockKey: Int64 = 0x4465_7649
    /// The advisory lock migrations run under.
    static let migrationLockKey: Int64 = 0x4465_764D

    public let changeFeed: ChangeFeed
    let auditKey: AuditKey?
    let client: PostgresClient
    let logger: Logger
    /// The task running the pool (`PostgresClient.run()`); cancelled by ``close()``.
    private let runner: Task<Void, Never>
    /// The task listening for other servers' commits (``listen(_:feed:reachable:logger:)``); cancelled by ``close()``.
    private let listener: Task<Void, Never>
    /// Whether this server runs the once-only jobs; see ``JobLease``. Never held by a store opened without `jobs`.
    public let jobLease: JobLease
    /// The task holding (or waiting for) the job lease; cancelled by ``close()``, which releases it.
    private let leaseTask: Task<Void, Never>?
    /// The advisory lock of the job lease ("DevJ"), taken with `pg_try_advisory_lock` on a connection of its own.
    public static let jobLockKey: Int64 = 0x4465_764A
    /// Whether the listener's connection is up: while it is not, calls give up after ``unreachableDeadline``
    /// instead of their usual deadline, so an outage costs a request one second, not five.
    private let reachable: Reachability

    private init(
        client: PostgresClient, runner: Task<Void, Never>, location: Location, latest: Int64, auditKey: AuditKey?,
        jobs: Bool, logger: Logger
    ) {
        let lease = JobLease(held: false)
        self.jobLease = lease
        self.leaseTask = jobs ? Task { await Self.holdLease(location, lease: lease, logger: logger) } : nil
        self.client = client
        self.runner = runner
        let feed = ChangeFeed(after: latest)
        self.changeFeed = feed
        let reachable = Reachability()
        self.reachable = reachable
        self.listener = Task { await Self.listen(location, feed: feed, reachable: reachable, logger: logger) }
        self.auditKey = auditKey
        self.logger = logger
    }

    /// Connects to the registry at `location`, migrates its schema unless `migrate` is false (then a
    /// registry with pending migrations is refused), and starts the connection pool.
    public static func open(
        _ location: Location, auditKey: AuditKey? = nil, migrate: Bool = true, jobs: Bool = false,
        logger: Logger = Logger(label: "devid.registry.postgres")
    ) async throws(StoreError) -> PostgresStore {
        let latest: Int64 = try await withConnection(location, logger: logger, "open registry") { session in
            try await Self.migrate(session, apply: migrate)
            return try await Self.latestChange(session)
        }
        // The pool logs each failed connection attempt at info, several a second while the database is down (with
        // the server's message): the listener's one warning per outage says it instead.
        var poolLogger = logger
        poolLogger.logLevel = max(logger.logLevel, .warning)
        let client = PostgresClient(configuration: location.client, backgroundLogger: poolLogger)
        let runner = Task { await client.run() }
        return PostgresStore(
            client: client, runner: runner, location: location, latest: latest, auditKey: auditKey, jobs: jobs,
            logger: logger)
    }

    /// Stops the connection pool. Later calls fail with `.unavailable`.
    public func close() {
        leaseTask?.cancel()
        listener.cancel()
        runner.cancel()
    }

    deinit {
        leaseTask?.cancel()
        listener.cancel()
        runner.cancel()
    }

    /// Asks for the job lease every second on a connection of its own; once held, checks every second that the
    /// connection (and so the lock) is still there. A server that dies, or closes the store, closes the connection
    /// and PostgreSQL releases the lock at once; another server takes it at its next try.
    private static func holdLease(_ location: Location, lease: JobLease, logger: Logger) async {
        while !Task.isCancelled {
            do {
                let connection = try await PostgresConnection.connect(
                    configuration: try location.connection(), id: 2, logger: logger)
                let session = PostgresSession(connection: connection, logger: logger)
                do {
                    while !Task.isCancelled {
                        if lease.isHeld {
                            try await session.execute("SELECT 1")
                        } else if try await session.scalar(
                            Bool.self, "SELECT pg_try_advisory_lock(?)", [.integer(jobLockKey)]) == true
                        {
                            lease.set(true)
                            logger.notice("this server holds the job lease: it builds the CRLs and runs the rotation sweeper")
                        }
                        try await Task.sleep(for: .seconds(1))
                    }
                } catch {
                    try? await connection.close()
                    throw error
                }
                try? await connection.close()
            } catch {
                if lease.set(false) {
                    logger.warning(
                        "this server lost the job lease; another server takes it",
                        metadata: ["error": "\(StoreError.postgres(error, "job lease"))"])
                }
                guard !Task.isCancelled else { return }
                try? await Task.sleep(for: .seconds(1))
            }
        }
        lease.set(false)
    }

    /// The channel every change's trigger notifies (``PostgresSchema``).
    static let changeChannel = "devid_registry_changes"

    /// Listens on ``changeChannel`` on a connection of its own and nudges `feed` at each notification, so a server
    /// reads another's changes within milliseconds of their commit. A lost connection is opened again after a
    /// second, with a nudge, since notifications sent meanwhile are gone; the feed's poll covers the gap.
    private static func listen(_ location: Location, feed: ChangeFeed, reachable: Reachability, logger: Logger) async {
        var failures = 0
        while !Task.isCancelled {
            do {
                let connection = try await PostgresConnection.connect(
                    configuration: try location.connection(), id: 1, logger: logger)
                do {
                    let notifications = try await connection.listen(changeChannel)
                    failures = 0
                    reachable.set(true)
                    feed.nudge()
                    for try await _ in notifications { feed.nudge() }
                } catch {
                    try? await connection.close()
                    throw error
                }
                try? await connection.close()
            } catch {
                guard !Task.isCancelled else { return }
                reachable.set(false)
                failures += 1
                if failures == 1 || failures % 60 == 0 {
                    logger.warning(
                        "listening for the registry's changes failed; polling until it works again",
                        metadata: ["error": "\(StoreError.postgres(error, "listen"))"])
                }
            }
            try? await Task.sleep(for: .seconds(1))
        }
    }

    /// Runs `body` on a single connection of its own (not the pool), closed afterwards.
    static func withConnection<T: Sendable>(
        _ location: Location, logger: Logger, _ operation: String,
        _ body: (PostgresSession) async throws -> T
    ) async throws(StoreError) -> T {
        let connection: PostgresConnection
        let configuration = try location.connection()
        do {
            connection = try await PostgresConnection.connect(configuration: configuration, id: 0, logger: logger)
        } catch {
            throw .postgres(error, operation)
        }
        do {
            let value = try await body(PostgresSession(connection: connection, logger: logger))
            try? await connection.close()
            return value
        } catch {
            try? await connection.close()
            throw .postgres(error, operation)
        }
    }

    // MARK: Migrations

    /// The schema's migrations of the registry at `location`, without changing it.
    public static func migrationStatus(
        _ location: Location, logger: Logger = Logger(label: "devid.registry.postgres")
    ) async throws(StoreError) -> SQLiteStore.MigrationStatus {
        try await withConnection(location, logger: logger, "read the schema's migrations") { session in
            try await status(session)
        }
    }

    private static func status(_ session: PostgresSession) async throws -> SQLiteStore.MigrationStatus {
        let exists = try await session.scalar(
            Bool.self, "SELECT to_regclass('devid_migrations') IS NOT NULL") ?? false
        let applied: [String] = exists
            ? try await session.rows("SELECT identifier FROM devid_migrations").map { try $0.decode(String.self) }
            : []
        let known = PostgresSchema.migrations.map(\.identifier)
        return SQLiteStore.MigrationStatus(
            applied: known.filter { applied.contains($0) }, pending: known.filter { !applied.contains($0) },
            unknown: applied.filter { !known.contains($0) }.sorted())
    }

    private static func migrate(_ session: PostgresSession, apply: Bool) async throws {
        try await session.execute("BEGIN")
        do {
            try await session.execute("SELECT pg_advisory_xact_lock(?)", [.integer(migrationLockKey)])
            try await session.execute(
                "CREATE TABLE IF NOT EXISTS devid_migrations (identifier TEXT NOT NULL PRIMARY KEY, applied_at BIGINT NOT NULL)")
            let status = try await status(session)
            // A registry a newer DevID migrated holds what this one cannot read or would break: never open it.
            guard status.unknown.isEmpty else {
                throw StoreError(
                    .corrupt,
                    "the registry was migrated by a newer DevID (\(status.unknown.joined(separator: ", "))); "
                        + "run that version or restore a backup")
            }
            if !apply, !status.pending.isEmpty {
                throw StoreError(
                    .unavailable,
                    "the registry needs \(status.pending.count) migration(s) (\(status.pending.joined(separator: ", "))): "
                        + "run devid registry migrate, or start without --no-registry-migrate")
            }
            for (identifier, sql) in PostgresSchema.migrations where status.pending.contains(identifier) {
                // One statement at a time: the extended query protocol takes one per message.
                for statement in PostgresSchema.statements(sql) {
                    try await session.execute(statement)
                }
                // When a migration ran is bookkeeping for operators, not identity lifecycle: the machine's time.
                try await session.execute(
                    "INSERT INTO devid_migrations (identifier, applied_at) VALUES (?, ?)",
                    [.text(identifier), .integer(StoreTime.milliseconds(Date()))])  // clock-ok
            }
            try await session.execute("COMMIT")
        } catch {
            try? await session.execute("ROLLBACK")
            throw error
        }
    }

    // MARK: Plumbing

    /// Runs `updates` in one transaction holding the write lock, and delivers the changes it recorded after the
    /// commit, before returning (as ``SQLiteStore`` does).
    func write<T: Sendable>(
        _ operation: String, _ updates: @Sendable (PostgresSession) async throws -> T
    ) async throws(StoreError) -> T {
        let feed = changeFeed
        let logger = logger
        let (value, changes, latest): (T, [RegistryChange], Int64)
        do {
            (value, changes, latest) = try await withConnection(operation) { connection in
                let session = PostgresSession(connection: connection, logger: logger)
                try await session.execute("BEGIN")
                do {
                    try await session.execute("SELECT pg_advisory_xact_lock(?)", [.integer(Self.writeLockKey)])
                    let value = try await updates(session)
                    let result: (T, [RegistryChange], Int64)
                    if feed.hasSubscribers {
                        result = (value, try await Self.changes(session, after: feed.cursor, limit: .max), 0)
                    } else {
                        result = (value, [], try await Self.latestChange(session))
                    }
                    try await session.execute("COMMIT")
                    return result
                } catch {
                    try? await session.execute("ROLLBACK")
                    throw error
                }
            }
        } catch {
            throw .postgres(error, operation)
        }
        if changes.isEmpty {
            feed.skip(through: latest)
        } else {
            await feed.deliver(changes)
        }
        return value
    }

    /// How long a call waits for a connection of the pool before it fails `.unavailable`: the pool keeps trying
    /// to connect for as long as the database refuses, and an enrollment must be told 503 instead of hanging. As
    /// long as the listener is connected the database is there, and a wait means every connection is busy (writes
    /// queued on the write lock under a burst): then as long as a statement may take.
    static let connectionDeadline: Duration = .seconds(30)
    /// The same while the listener cannot reach the database: an outage costs a request one second.
    static let unreachableDeadline: Duration = .seconds(1)
    /// PostgreSQL's `statement_timeout` on every connection of the pool: what bounds a call once it has a
    /// connection (a statement, or the wait for the write lock behind other servers' writes). A write cut off may
    /// still have committed (as when the network fails during COMMIT); its caller hands nothing out.
    static let statementTimeout = "30s"

    /// Runs `body` on a connection of the pool, or throws `.unavailable` if none is handed over within the deadline.
    /// The deadline ends when the connection is: a write waiting for the write lock behind a queue of others is not
    /// an unreachable database. Waiting for a connection ends when cancelled.
    func withConnection<T: Sendable>(
        _ operation: String, _ body: @Sendable (PostgresConnection) async throws -> T
    ) async throws -> T {
        let deadline = reachable.value ? Self.connectionDeadline : Self.unreachableDeadline
        let leased = Reachability(false)
        let client = client
        return try await withoutActuallyEscaping(body) { body in
            try await withThrowingTaskGroup(of: T?.self) { group in
                group.addTask {
                    try await client.withConnection { connection in
                        leased.set(true)
                        return try await body(connection)
                    }
                }
                group.addTask {
                    try await Task.sleep(for: deadline)
                    // Connected in time: the call runs to its end (statement_timeout bounds it).
                    while leased.value { try await Task.sleep(for: .seconds(3600)) }
                    return nil
                }
                defer { group.cancelAll() }
                guard let first = try await group.next(), let value = first else {
                    throw StoreError(
                        .unavailable,
                        "\(operation): no connection to the registry within \(deadline.components.seconds) s")
                }
                return value
            }
        }
    }

    /// Runs `body` on a connection of the pool, each statement on its own (no transaction).
    func read<T: Sendable>(
        _ operation: String, _ body: @Sendable (PostgresSession) async throws -> T
    ) async throws(StoreError) -> T {
        let logger = logger
        do {
            return try await withConnection(operation) { connection in
                try await body(PostgresSession(connection: connection, logger: logger))
            }
        } catch {
            throw .postgres(error, operation)
        }
    }

    /// Runs `body` in a read-only `REPEATABLE READ` transaction: its statements see one snapshot of the registry.
    func snapshot<T: Sendable>(
        _ operation: String, _ body: @Sendable (PostgresSession) async throws -> T
    ) async throws(StoreError) -> T {
        try await read(operation) { session in
            try await session.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            do {
                let value = try await body(session)
                try await session.execute("COMMIT")
                return value
            } catch {
                try? await session.execute("ROLLBACK")
                throw error
            }
        }
    }

    /// Appends `event` to the chain inside the caller's write transaction (which holds the write lock).
    func append(_ event: AuditEvent, _ session: PostgresSession) async throws -> AuditEvent {
        let last = try await session.fetchOne(
            AuditEventRecord.self, "SELECT * FROM audit_events ORDER BY sequence DESC LIMIT 1")
        let key = auditKey
        let chained = AuditChain.chained(
            event, afterSequence: last?.sequence, hash: last?.hash, mac: { input in key?.mac(input) })
        try await session.insert(AuditEventRecord(chained))
        return chained
    }

    func append(_ event: AuditEvent?, _ session: PostgresSession) async throws {
        if let event { _ = try await append(event, session) }
    }
}

/// Whether a store's database answered last time its listener tried.
final class Reachability: Sendable {
    private let state: Mutex<Bool>
    init(_ value: Bool = true) { state = Mutex(value) }
    var value: Bool { state.withLock { $0 } }
    func set(_ value: Bool) { state.withLock { $0 = value } }
}
