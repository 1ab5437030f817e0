public import DevIDCore
public import DevIDStore
public import Foundation
import Synchronization

/// Whether the server can do its work: `GET /readyz`. The registry is asked a trivial question (a primary-key lookup
/// of a tenant that need not exist); the answer is kept for at most ``maximumAge`` seconds of the injected clock, so a
/// load balancer polling every listener many times a second costs the registry at most one query per second per
/// listener, and concurrent requests share one probe.
///
/// Liveness (`GET /healthz`) is not this: it answers from memory and never touches the registry, so a slow or full
/// registry does not get a live process restarted.
public final class Readiness: Sendable {
    /// The outcome of a probe.
    public enum Verdict: Sendable, Hashable {
        case ready
        /// One line, secret-free, for the `503` body.
        case notReady(String)
    }

    /// How long a verdict is reused, in seconds of the injected clock.
    public let maximumAge: TimeInterval
    /// How long a probe may take before the verdict is "not ready".
    public let timeout: Duration
    private let clock: any WallClock
    private let probe: @Sendable () async throws -> Void
    private let state = Mutex(State())

    private struct State {
        var verdict: Verdict?
        var checkedAt: Date?
        var inFlight: Task<Verdict, Never>?
    }

    /// - Parameter probe: throws when the registry does not answer; see ``registryProbe(_:)``.
    public init(
        clock: any WallClock, maximumAge: TimeInterval = 1, timeout: Duration = .seconds(2),
        probe: @escaping @Sendable () async throws -> Void
    ) {
        self.clock = clock
        self.maximumAge = maximumAge
        self.timeout = timeout
        self.probe = probe
    }

    /// Readiness of `store`: one primary-key lookup.
    public convenience init(store: any Store, clock: any WallClock) {
        self.init(clock: clock, probe: Self.registryProbe(store))
    }

    /// The registry probe: looks up one tenant by primary key (it need not exist). Reads one index page.
    public static func registryProbe(_ store: any Store) -> @Sendable () async throws -> Void {
        let id = TenantID(rawValue: "devid-readiness-probe")!
        return { _ = try await store.tenant(id) }
    }

    /// The current verdict: the last one if at most ``maximumAge`` old, else a new probe (shared by concurrent
    /// callers).
    public func check() async -> Verdict {
        let now = clock.now()
        enum Next {
            case cached(Verdict)
            case wait(Task<Verdict, Never>)
        }
        let next: Next = state.withLock { state in
            if let verdict = state.verdict, let at = state.checkedAt, at <= now,
                now.timeIntervalSince(at) < maximumAge
            {
                return .cached(verdict)
            }
            if let running = state.inFlight { return .wait(running) }
            let (probe, timeout) = (self.probe, self.timeout)
            let running = Task { await Self.run(probe, timeout: timeout) }
            state.inFlight = running
            return .wait(running)
        }
        switch next {
        case .cached(let verdict):
            return verdict
        case .wait(let task):
            let verdict = await task.value
            state.withLock { state in
                if state.inFlight == task {
                    state.inFlight = nil
                    state.verdict = verdict
                    state.checkedAt = now
                }
            }
            return verdict
        }
    }

    /// Runs the probe, giving up after `timeout` (a store call that hangs may ignore cancellation, so the answer
    /// does not wait for it).
    static func run(_ probe: @escaping @Sendable () async throws -> Void, timeout: Duration) async -> Verdict {
        let first = FirstAnswer()
        return await withCheckedContinuation { continuation in
            first.set(continuation)
            let timer = Task {
                try await Task.sleep(for: timeout)
                first.resume(.notReady("registry did not answer within \(Self.describe(timeout))"))
            }
            Task {
                let verdict: Verdict
                do {
                    try await probe()
                    verdict = .ready
                } catch let error as StoreError where error.code != .unavailable {
                    verdict = .notReady("registry unavailable (\(error.code))")
                } catch {
                    verdict = .notReady("registry unavailable")
                }
                timer.cancel()
                first.resume(verdict)
            }
        }
    }

    /// `2 s`, `100 ms`.
    static func describe(_ duration: Duration) -> String {
        let (seconds, attoseconds) = duration.components
        return attoseconds == 0 ? "\(seconds) s" : "\(seconds * 1_000 + attoseconds / 1_000_000_000_000_000) ms"
    }

    /// Resumes a continuation once, with whichever answer comes first.
    private final class FirstAnswer: Sendable {
        private let continuation = Mutex<CheckedContinuation<Verdict, Never>?>(nil)

        func set(_ continuation: CheckedContinuation<Verdict, Never>) {
            self.continuation.withLock { $0 = continuation }
        }

        func resume(_ verdict: Verdict) {
            continuation.withLock { continuation in
                continuation?.resume(returning: verdict)
                continuation = nil
            }
        }
    }
}
