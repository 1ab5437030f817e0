public import Foundation
public import PostgresNIO
public import DevIDStore

/// The PostgreSQL server that Postgres tests run against: the throw-away cluster `scripts/test` starts with
/// `scripts/pg-sandbox`, found through two environment variables:
///
/// - `DEVID_TEST_POSTGRES_URL`: `postgres://USER@HOST:PORT/DATABASE`, with no password in it;
/// - `DEVID_TEST_POSTGRES_PASSWORD_FILE`: the file holding the password (its first line).
///
/// The role may create databases, so that ``createDatabase()`` (or ``withDatabase(_:)``) gives each test one of its
/// own, and tests running in parallel never see each other's rows.
///
/// Without the variables ``init(environment:)`` throws, naming `scripts/test`: PostgreSQL is part of the test
/// command, so a Postgres test that cannot reach it fails instead of skipping, and no run passes without them.
public struct PostgresSandbox: Sendable, CustomStringConvertible {
    public static let urlVariable = "DEVID_TEST_POSTGRES_URL"
    public static let passwordFileVariable = "DEVID_TEST_POSTGRES_PASSWORD_FILE"
    /// Every database ``createDatabase()`` makes has this prefix; ``dropDatabase(_:)`` drops no other.
    public static let databasePrefix = "devid_test_"

    public let host: String
    public let port: Int
    public let username: String
    /// The database the role owns from the start: new databases are created and dropped from a connection to it.
    public let database: String
    /// Kept out of ``description`` and every error.
    private let password: String

    /// `postgres://USER@HOST:PORT/DATABASE`, without the password.
    public var description: String { Self.url(username: username, host: host, port: port, database: database) }

    /// Reads the two variables (see the type's documentation) from `environment`.
    public init(environment: [String: String] = ProcessInfo.processInfo.environment) throws(PostgresSandboxError) {
        guard let url = environment[Self.urlVariable], !url.isEmpty else {
            throw PostgresSandboxError(
                .notConfigured,
                "\(Self.urlVariable) is not set: run the tests through scripts/test, which starts PostgreSQL 15 "
                    + "(scripts/pg-sandbox) and sets it and \(Self.passwordFileVariable)")
        }
        guard let components = URLComponents(string: url), ["postgres", "postgresql"].contains(components.scheme),
            let host = components.host, !host.isEmpty, let username = components.user, !username.isEmpty
        else {
            throw PostgresSandboxError(
                // Not echoed: a malformed URL may still carry a password.
                .badConfiguration, "\(Self.urlVariable) is not postgres://USER@HOST:PORT/DATABASE")
        }
        // A password in the URL would end up wherever the URL is shown.
        guard components.password == nil else {
            throw PostgresSandboxError(
                .badConfiguration,
                "\(Self.urlVariable) carries a password: put it in the file named by \(Self.passwordFileVariable)")
        }
        guard let passwordFile = environment[Self.passwordFileVariable], !passwordFile.isEmpty else {
            throw PostgresSandboxError(
                .notConfigured,
                "\(Self.passwordFileVariable) is not set: run the tests through scripts/test, which starts "
                    + "PostgreSQL 15 (scripts/pg-sandbox) and sets it and \(Self.urlVariable)")
        }
        let contents: String
        do {
            contents = try String(contentsOfFile: passwordFile, encoding: .utf8)
        } catch {
            throw PostgresSandboxError(
                .badConfiguration, "cannot read the password file \(passwordFile) (\(Self.passwordFileVariable))")
        }
        guard let password = contents.split(separator: "\n", omittingEmptySubsequences: false).first,
            !password.isEmpty
        else {
            throw PostgresSandboxError(
                .badConfiguration, "the password file \(passwordFile) (\(Self.passwordFileVariable)) is empty")
        }
        self.host = host
        self.port = components.port ?? 5432
        self.username = username
        let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
        self.database = path.isEmpty ? username : path
        self.password = String(password)
    }

    /// How to reach `database` (by default the sandbox's own) as the sandbox's role. Plain TCP: the server is on
    /// the loopback address and has no certificate.
    public func configuration(database: String? = nil) -> PostgresClient.Configuration {
        PostgresClient.Configuration(
            host: host, port: port, username: username, password: password, database: database ?? self.database,
            tls: .disable)
    }

    /// Where a ``PostgresStore`` finds `database` (by default the sandbox's own), as the sandbox's role.
    public func location(database: String? = nil) -> PostgresStore.Location {
        PostgresStore.Location(
            host: host, port: port, username: username, password: password, database: database ?? self.database)
    }

    /// A new, empty database owned by the sandbox's role, named `devid_test_` and 16 random hex digits.
    public func createDatabase() async throws(PostgresSandboxError) -> Database {
        let name = Self.databasePrefix + (0..<8).map { _ in String(format: "%02x", UInt8.random(in: 0...255)) }.joined()
        try await execute("CREATE DATABASE \(name)", doing: "creating database \(name)")
        return Database(
            name: name, configuration: configuration(database: name), location: location(database: name),
            url: Self.url(username: username, host: host, port: port, database: name))
    }

    /// Drops a database that ``createDatabase()`` made, closing whatever connections to it are left (a client
    /// whose `run()` ended may not have closed its idle ones yet). A name without ``databasePrefix`` is refused:
    /// the name goes into the statement as it is, since SQL cannot bind an identifier.
    public func dropDatabase(_ name: String) async throws(PostgresSandboxError) {
        let suffix = name.dropFirst(Self.databasePrefix.count)
        guard name.hasPrefix(Self.databasePrefix), !suffix.isEmpty,
            suffix.allSatisfy({ $0.isASCII && $0.isHexDigit && !$0.isUppercase })
        else {
            throw PostgresSandboxError(.badConfiguration, "\(name) is not a database that createDatabase() made")
        }
        try await execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)", doing: "dropping database \(name)")
    }

    /// Runs `body` with a new database, and drops the database afterwards, also when `body` throws.
    public func withDatabase<Result>(_ body: (Database) async throws -> Result) async throws -> Result {
        let database = try await createDatabase()
        let result: Result
        do {
            result = try await body(database)
        } catch {
            try? await dropDatabase(database.name)
            throw error
        }
        try await dropDatabase(database.name)
        return result
    }

    /// Runs `body` with a `PostgresClient` for `configuration`, the client's `run()` in a task of a task group
    /// around it (as postgres-nio documents), and cancels that task when `body` returns, which closes the client.
    ///
    /// A client retries a refused login for a minute before failing with an error that no longer says why;
    /// ``createDatabase()`` has already logged in with the same role and password, so a test that calls it first
    /// learns of a wrong password at once.
    public static func withClient<Result>(
        _ configuration: PostgresClient.Configuration, _ body: (PostgresClient) async throws -> Result
    ) async throws -> Result {
        let client = PostgresClient(configuration: configuration)
        return try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { await client.run() }
            defer { group.cancelAll() }
            return try await body(client)
        }
    }

    /// Runs `sql` (one statement, nothing bound) as the sandbox's role on its own database: what a test does to the
    /// server around the registry (`ALTER DATABASE ... ALLOW_CONNECTIONS false`, `pg_terminate_backend`).
    public func run(_ sql: String) async throws(PostgresSandboxError) {
        try await execute(sql, doing: "running a statement")
    }

    /// Runs one statement on a connection of its own to the sandbox's database. A single connection rather than a
    /// client: it fails at once with the server's reason (a wrong password, say), where a client's pool keeps
    /// retrying.
    private func execute(_ sql: String, doing what: String) async throws(PostgresSandboxError) {
        let configuration = PostgresConnection.Configuration(
            host: host, port: port, username: username, password: password, database: database, tls: .disable)
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(
                configuration: configuration, id: 1, logger: Logger(label: "devid.test.postgres"))
        } catch {
            throw refusal(error, doing: what)
        }
        do {
            // Read to the end: the statement has run once its (empty) result is complete.
            _ = try await connection.query(PostgresQuery(unsafeSQL: sql), logger: Logger(label: "devid.test.postgres"))
                .collect()
        } catch {
            try? await connection.close()
            throw PostgresSandboxError(.failed, "\(what) on \(self) failed: \(Self.reason(error))")
        }
        try? await connection.close()
    }

    private func refusal(_ error: any Error, doing what: String) -> PostgresSandboxError {
        if let error = error as? PSQLError, error.code == .server {
            return PostgresSandboxError(
                .refused,
                "\(what): PostgreSQL at \(host):\(port) refused user \(username): \(Self.reason(error)); the "
                    + "password is read from \(Self.passwordFileVariable), which scripts/test sets with "
                    + "\(Self.urlVariable)")
        }
        return PostgresSandboxError(
            .unreachable,
            "\(what): cannot reach PostgreSQL at \(host):\(port) (\(Self.reason(error))); scripts/test starts it "
                + "and sets \(Self.urlVariable)")
    }

    /// The server's message and SQLSTATE, or the cause of a connection failure. Never `String(reflecting:)` of a
    /// `PSQLError`: that shows the query with its arguments.
    private static func reason(_ error: any Error) -> String {
        guard let error = error as? PSQLError else { return String(describing: error) }
        if let info = error.serverInfo, let message = info[.message] {
            return "\(message) (SQLSTATE \(info[.sqlState] ?? "?"))"
        }
        if let underlying = error.underlying { return "\(error.code): \(underlying)" }
        return "\(error.code)"
    }

    private static func url(username: String, host: String, port: Int, database: String) -> String {
        "postgres://\(username)@\(host):\(port)/\(database)"
    }

    /// A database that ``createDatabase()`` made.
    public struct Database: Sendable, CustomStringConvertible {
        public let name: String
        /// How to reach it as the sandbox's role.
        public let configuration: PostgresClient.Configuration
        /// Where a ``PostgresStore`` finds it.
        public let location: PostgresStore.Location
        /// `postgres://USER@HOST:PORT/NAME`, without the password.
        public let url: String
        public var description: String { url }
    }
}

/// Why ``PostgresSandbox`` could not give a test its database. Descriptions name the variables, files, host and
/// port involved, never the password.
public struct PostgresSandboxError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Backing: Hashable, Sendable {
            case notConfigured, badConfiguration, unreachable, refused, failed
        }
        private let backing: Backing
        private init(_ backing: Backing) { self.backing = backing }

        /// A variable is missing: the tests were not started through `scripts/test`.
        public static let notConfigured = Code(.notConfigured)
        /// A variable or the password file holds something unusable.
        public static let badConfiguration = Code(.badConfiguration)
        /// Nothing answered at the URL's host and port.
        public static let unreachable = Code(.unreachable)
        /// The server refused the login (a wrong password, an unknown role or database).
        public static let refused = Code(.refused)
        /// Creating or dropping a database failed.
        public static let failed = Code(.failed)

        public var description: String { String(describing: backing) }
    }

    public let code: Code
    public let reason: String
    public let file: String
    public let line: UInt

    public init(_ code: Code, _ reason: String, file: String = #fileID, line: UInt = #line) {
        self.code = code
        self.reason = reason
        self.file = file
        self.line = line
    }

    public var description: String { "PostgreSQL test sandbox \(code): \(reason)" }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}

/// At most `limit` bodies at once; the others wait their turn in order. The Postgres tests hold a database and a
/// pool each, and a test run starts hundreds of them together: without a cap they exhaust the server's
/// connections (SQLSTATE 53300) long before they exhaust anything else.
public actor ConcurrencyLimit {
    private let limit: Int
    private var running = 0
    private var waiting: [CheckedContinuation<Void, Never>] = []

    public init(_ limit: Int) { self.limit = max(1, limit) }

    /// Waits for a turn; every `acquire()` must be followed by one ``release()``.
    public func acquire() async {
        if running >= limit {
            await withCheckedContinuation { waiting.append($0) }
        } else {
            running += 1
        }
    }

    public func release() {
        if waiting.isEmpty {
            running -= 1
        } else {
            waiting.removeFirst().resume()
        }
    }
}

extension PostgresSandbox {
    /// Shared by every Postgres test of a process: 6 databases at a time, each with a small pool.
    public static let limit = ConcurrencyLimit(6)
}
