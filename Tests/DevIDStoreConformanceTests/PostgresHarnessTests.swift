import DevIDTesting
import Foundation
import PostgresNIO
import Testing

/// The PostgreSQL that the Postgres registry will be tested on: the server `scripts/test` starts (scripts/pg-sandbox),
/// a database of its own per test, and what the registry needs of the server: bound parameters, PostgreSQL 15, and
/// notifications from one connection to another (the change stream). Without the server these tests fail, naming
/// `scripts/test`; they never skip.
@Suite("PostgreSQL harness")
struct PostgresHarnessTests {
    @Test("the server is PostgreSQL 15")
    func serverIsPostgreSQL15() async throws {
        let sandbox = try PostgresSandbox()
        try await sandbox.withDatabase { database in
            try await PostgresSandbox.withClient(database.configuration) { client in
                let versions = try await all(
                    client.query("SELECT version(), current_setting('server_version_num')::int")
                        .decode((String, Int).self))
                #expect(versions.count == 1)
                let (version, number) = try #require(versions.first)
                #expect(version.hasPrefix("PostgreSQL 15."), "\(version)")
                #expect((150_000..<160_000).contains(number), "server_version_num \(number)")
            }
        }
    }

    @Test("rows go in and come out through bound parameters, in a database of the test's own")
    func rowsRoundTripThroughBoundParameters() async throws {
        let sandbox = try PostgresSandbox()
        let database = try await sandbox.createDatabase()
        #expect(database.name.hasPrefix(PostgresSandbox.databasePrefix))
        #expect(database.url == "postgres://\(sandbox.username)@\(sandbox.host):\(sandbox.port)/\(database.name)")

        try await PostgresSandbox.withClient(database.configuration) { client in
            let owner = try await all(
                client.query(
                    """
                    SELECT current_database(), pg_get_userbyid(datdba) FROM pg_database
                    WHERE datname = current_database()
                    """
                ).decode((String, String).self))
            #expect(owner.map(\.0) == [database.name])
            #expect(owner.map(\.1) == [sandbox.username])

            try await client.query(
                "CREATE TABLE devices (id integer PRIMARY KEY, serial text NOT NULL UNIQUE, note text)")
            // Values that would break SQL built by pasting strings: they must arrive exactly as given.
            let rows: [(Int, String, String?)] = [
                (1, "SN-0001", nil),
                (2, "O'Brien'); DROP TABLE devices; --", "quote, semicolon and comment"),
                (3, "Gerät-Ω-\u{1F510}", "$1 and \\ and \"quotes\""),
            ]
            for (id, serial, note) in rows {
                try await client.query("INSERT INTO devices (id, serial, note) VALUES (\(id), \(serial), \(note))")
            }

            let stored = try await all(
                client.query("SELECT id, serial, note FROM devices ORDER BY id").decode((Int, String, String?).self))
            #expect(stored.map(\.0) == rows.map(\.0))
            #expect(stored.map(\.1) == rows.map(\.1))
            #expect(stored.map(\.2) == rows.map(\.2))

            let wanted = rows[1].1
            let found = try await all(
                client.query("SELECT id FROM devices WHERE serial = \(wanted)").decode(Int.self))
            #expect(found == [2])

            // The unique constraint holds: a second SN-0001 is refused and changes nothing.
            await #expect(throws: PSQLError.self) {
                try await client.query("INSERT INTO devices (id, serial) VALUES (\(4), \("SN-0001"))")
            }
            let count = try await all(client.query("SELECT count(*)::int FROM devices").decode(Int.self))
            #expect(count == [rows.count])
        }

        try await sandbox.dropDatabase(database.name)
        let left = try await PostgresSandbox.withClient(sandbox.configuration()) { client in
            try await all(
                client.query("SELECT count(*)::int FROM pg_database WHERE datname = \(database.name)").decode(Int.self))
        }
        #expect(left == [0], "\(database.name) is still there after dropDatabase")
    }

    @Test("a NOTIFY reaches a LISTEN on another connection, payloads intact and in order", .timeLimit(.minutes(1)))
    func notificationReachesAListenerOnAnotherConnection() async throws {
        let sandbox = try PostgresSandbox()
        try await sandbox.withDatabase { database in
            try await PostgresSandbox.withClient(database.configuration) { client in
                let channel = "devid_changes"
                let payloads = ["device dev-1 revoked", "tenant t-ø updated; with 'quotes'"]
                let received = try await client.withConnection { listener in
                    let listenerPID = try await all(
                        listener.query("SELECT pg_backend_pid()", logger: Logger(label: "test")).decode(Int32.self))
                    return try await listener.listen(on: channel) { notifications in
                        // The pool lends another connection while `listener` is leased: check that it is one.
                        let senderPID = try await all(client.query("SELECT pg_backend_pid()").decode(Int32.self))
                        #expect(senderPID != listenerPID)
                        for payload in payloads {
                            try await client.query("SELECT pg_notify(\(channel), \(payload))")
                        }
                        var iterator = notifications.makeAsyncIterator()
                        var seen: [String] = []
                        // With the test's time limit: a notification that never comes ends the wait, and the test.
                        while seen.count < payloads.count, let notification = try await iterator.next() {
                            seen.append(notification.payload)
                        }
                        return seen
                    }
                }
                #expect(received == payloads)
            }
        }
    }

    @Test("a wrong password is refused with an error that says so, and shows neither password")
    func wrongPasswordIsRefused() async throws {
        let sandbox = try PostgresSandbox()
        let realPassword = try String(
            contentsOfFile: try #require(ProcessInfo.processInfo.environment[PostgresSandbox.passwordFileVariable]),
            encoding: .utf8
        ).trimmingCharacters(in: .whitespacesAndNewlines)
        let wrongPassword = "wrong-\(UUID().uuidString)"
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let wrongFile = directory.file("password")
        try (wrongPassword + "\n").write(toFile: wrongFile, atomically: true, encoding: .utf8)

        var environment = ProcessInfo.processInfo.environment
        environment[PostgresSandbox.passwordFileVariable] = wrongFile
        let wrong = try PostgresSandbox(environment: environment)
        #expect(wrong.description == sandbox.description)

        let error = try #require(
            await #expect(throws: PostgresSandboxError.self) { try await wrong.createDatabase() })
        #expect(error.code == .refused)
        #expect(error.description.contains("password authentication failed for user \"\(sandbox.username)\""))
        #expect(error.description.contains("28P01"))
        #expect(error.description.contains(PostgresSandbox.passwordFileVariable))
        for text in [error.description, String(reflecting: error)] {
            #expect(!text.contains(wrongPassword), "shows the wrong password: \(text)")
            #expect(!text.contains(realPassword), "shows the real password: \(text)")
        }
    }

    @Test("without the environment scripts/test sets, the error says to run the tests through scripts/test")
    func missingEnvironmentNamesTheTestCommand() throws {
        let error = try #require(#expect(throws: PostgresSandboxError.self) { try PostgresSandbox(environment: [:]) })
        #expect(error.code == .notConfigured)
        #expect(error.description.contains("scripts/test"))
        #expect(error.description.contains(PostgresSandbox.urlVariable))
    }
}

/// Every element of `sequence`, in order: the rows of a query, decoded.
private func all<Rows: AsyncSequence>(_ sequence: Rows) async throws -> [Rows.Element] {
    var elements: [Rows.Element] = []
    for try await element in sequence { elements.append(element) }
    return elements
}
