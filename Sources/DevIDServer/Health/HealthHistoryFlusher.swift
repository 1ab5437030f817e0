public import ServiceLifecycle

/// Writes the health history's counts to the registry every `interval` (10 s) and once more at graceful shutdown:
/// a `kill -9` loses at most the last interval's counts, never a request's answer.
public struct HealthHistoryFlusher<C: Clock>: Service where C.Duration == Duration {
    let history: HealthHistory?
    let clock: C
    let interval: Duration

    public init(history: HealthHistory?, clock: C, interval: Duration = .seconds(10)) {
        self.history = history
        self.clock = clock
        self.interval = interval
    }

    public func run() async throws {
        guard let history else { return }
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    try await clock.sleep(for: interval)
                    await history.flush()
                }
            }
        } catch is CancellationError {}
        await history.flush()
    }
}

extension HealthHistoryFlusher: CustomStringConvertible {
    public var description: String { "HealthHistoryFlusher(every \(interval))" }
}
