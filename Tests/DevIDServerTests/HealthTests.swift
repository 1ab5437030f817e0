import AsyncHTTPClient
import DevIDCore
import DevIDServer
import DevIDStore
import DevIDTesting
import Foundation
import ServiceLifecycle
import Synchronization
import Testing

/// `/healthz` (liveness, from memory) and `/readyz` (the registry answers), on both listeners.
@Suite("Health and readiness")
struct HealthTests {
    /// Counts probe calls, and fails them on demand.
    final class Probe: Sendable {
        let calls = Atomic<Int>(0)
        let failure = Mutex<(any Error)?>(nil)

        func run() async throws {
            calls.add(1, ordering: .relaxed)
            if let failure = failure.withLock({ $0 }) { throw failure }
        }

        var count: Int { calls.load(ordering: .relaxed) }
    }

    @Test("a verdict is reused for up to a second of the injected clock, then the registry is asked again")
    func cachedForASecond() async throws {
        let clock = ManualWallClock()
        let probe = Probe()
        let readiness = Readiness(clock: clock) { try await probe.run() }
        #expect(await readiness.check() == .ready)
        #expect(await readiness.check() == .ready)
        clock.advance(by: 0.9)
        #expect(await readiness.check() == .ready)
        #expect(probe.count == 1, "within a second: no new probe")

        probe.failure.withLock { $0 = StoreError(.unavailable, "read tenant: database is closed") }
        #expect(await readiness.check() == .ready, "the cached verdict still holds")
        clock.advance(by: 0.2)
        #expect(await readiness.check() == .notReady("registry unavailable"))
        #expect(probe.count == 2)

        probe.failure.withLock { $0 = nil }
        clock.advance(by: 1)
        #expect(await readiness.check() == .ready, "it recovers by itself")
        // A clock set back does not keep an old verdict forever.
        clock.advance(by: -3_600)
        #expect(await readiness.check() == .ready)
        #expect(probe.count == 4)
    }

    @Test(
        "a failing registry gives one secret-free line",
        arguments: [
            (StoreError(.unavailable, "read tenant: SQLite error 21 at /secret/path"), "registry unavailable"),
            (StoreError(.corrupt, "read tenant: unreadable row"), "registry unavailable (corrupt)"),
        ])
    func failureReasons(error: StoreError, reason: String) async throws {
        let probe = Probe()
        probe.failure.withLock { $0 = error }
        let readiness = Readiness(clock: ManualWallClock()) { try await probe.run() }
        #expect(await readiness.check() == .notReady(reason))
    }

    @Test("a registry that never answers is not ready once the timeout passes")
    func hangingProbe() async throws {
        let readiness = Readiness(clock: ManualWallClock(), timeout: .milliseconds(100)) {
            // Ignores cancellation, as a stuck database call would.
            while true { try? await Task.sleep(for: .seconds(3_600)) }
        }
        #expect(await readiness.check() == .notReady("registry did not answer within 100 ms"))
    }

    @Test("concurrent checks share one probe")
    func singleFlight() async throws {
        let probe = Probe()
        let gate = AsyncStream<Void>.makeStream()
        // A long timeout: on a loaded CI machine the probe may wait seconds for the gate, and this test is about
        // sharing, not about the timeout (hangingProbe covers that).
        let readiness = Readiness(clock: ManualWallClock(), timeout: .seconds(600)) {
            try await probe.run()
            for await _ in gate.stream { break }
        }
        let verdicts = await withTaskGroup(of: Readiness.Verdict.self) { group in
            for _ in 0..<20 { group.addTask { await readiness.check() } }
            // Let the checks pile up on the one probe, then let it answer.
            while probe.count == 0 { await Task.yield() }
            try? await Task.sleep(for: .milliseconds(50))
            gate.continuation.yield()
            var all: [Readiness.Verdict] = []
            for await verdict in group { all.append(verdict) }
            return all
        }
        #expect(verdicts.count == 20)
        #expect(verdicts.allSatisfy { $0 == .ready })
        #expect(probe.count == 1)
    }

    @Test("live: /healthz never reads the registry; /readyz answers 503 with a reason when the registry is closed")
    func live() async throws {
        let server = try await LiveServer()
        var stopped = false
        defer { if !stopped { server.directory.remove() } }
        let ops = try server.client()
        let est = try server.client()
        try await withClient(ops) { ops in
            try await withClient(est) { est in
                for base in [server.opsURL, server.estURL] {
                    let client = base == server.opsURL ? ops : est
                    let health = try await client.send("GET", base + "/healthz")
                    #expect(health.status == 200, "\(base)")
                    #expect(health.header("Content-Type") == "application/json; charset=utf-8")
                    let json = try #require(
                        try JSONSerialization.jsonObject(with: Data(health.body.utf8)) as? [String: String])
                    #expect(json["status"] == "ok")
                    #expect(json["time"] == ServerTimeFormat.rfc3339(server.clock.now()), "\(health.body)")
                    let ready = try await client.send("GET", base + "/readyz")
                    #expect(ready.status == 200, "\(base): \(ready.body)")
                    #expect(ready.body.contains(#""status":"ready""#), "\(ready.body)")
                }

                // The registry goes away.
                let store = try #require(server.state.store as? SQLiteStore)
                try store.close()
                await #expect(throws: StoreError.self) { _ = try await store.tenants() }
                server.clock.advance(by: 2)
                for (base, client) in [(server.opsURL, ops), (server.estURL, est)] {
                    let health = try await client.send("GET", base + "/healthz")
                    #expect(health.status == 200, "liveness does not depend on the registry: \(health.body)")
                    let ready = try await client.send("GET", base + "/readyz")
                    #expect(ready.status == 503, "\(base): \(ready.body)")
                    #expect(errorMessage(ready) == "registry unavailable", "\(ready.body)")
                    #expect(ready.header("Retry-After") == "1")
                }
            }
        }
        // The closed registry makes the services' last writes fail; the stop still completes.
        await server.group.triggerGracefulShutdown()
        _ = try? await server.runTask.value
        server.directory.remove()
        stopped = true
    }
}

/// RFC 3339 in UTC, whole seconds, as the health bodies write it.
enum ServerTimeFormat {
    static func rfc3339(_ date: Date) -> String {
        Date(timeIntervalSince1970: date.timeIntervalSince1970.rounded(.down)).formatted(Date.ISO8601FormatStyle())
    }
}
