import Foundation
public import ServiceLifecycle

/// Writes ``AnonymousFailures``' and ``RepeatedDecisions``' summary rows every `interval` (sleeping on `clock`), and
/// once more on graceful shutdown. Put it before the listeners in the service group, so it stops after them and its last flush covers
/// everything they counted.
public struct AnonymousFailureFlusher<C: Clock>: Service where C.Duration == Duration {
    let failures: AnonymousFailures
    let decisions: [RepeatedDecisions]
    let clock: C
    let interval: Duration

    public init(
        failures: AnonymousFailures, decisions: [RepeatedDecisions] = [], clock: C, interval: Duration = .seconds(60)
    ) {
        self.failures = failures
        self.decisions = decisions
        self.clock = clock
        self.interval = interval
    }

    private func flush() async {
        await failures.flush()
        for repeated in decisions { await repeated.flush() }
    }

    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    try await clock.sleep(for: interval)
                    await flush()
                }
            }
        } catch is CancellationError {}
        await flush()
    }
}

extension AnonymousFailureFlusher: CustomStringConvertible {
    public var description: String { "AnonymousFailureFlusher(every \(interval))" }
}
