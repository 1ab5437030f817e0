import Foundation
public import ServiceLifecycle

/// Writes ``AnonymousFailures``' summary rows every `interval` (sleeping on `clock`), and once more on graceful
/// shutdown. Put it before the listeners in the service group, so it stops after them and its last flush covers
/// everything they counted.
public struct AnonymousFailureFlusher<C: Clock>: Service where C.Duration == Duration {
    let failures: AnonymousFailures
    let clock: C
    let interval: Duration

    public init(failures: AnonymousFailures, clock: C, interval: Duration = .seconds(60)) {
        self.failures = failures
        self.clock = clock
        self.interval = interval
    }

    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    try await clock.sleep(for: interval)
                    await failures.flush()
                }
            }
        } catch is CancellationError {}
        await failures.flush()
    }
}

extension AnonymousFailureFlusher: CustomStringConvertible {
    public var description: String { "AnonymousFailureFlusher(every \(interval))" }
}
