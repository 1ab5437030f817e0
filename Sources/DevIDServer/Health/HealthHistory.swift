public import DevIDCore
public import DevIDStore
public import Foundation
public import Logging
import Synchronization

/// The hourly history of the event-fed health counters, kept in the registry so that the dashboard and
/// `GET /v1/health/series` work with no Prometheus server and survive restarts.
///
/// Events add to counts in memory (a lock and a dictionary: no write per request); ``flush()`` (every 10 s by
/// ``HealthHistoryFlusher``, and at graceful shutdown) adds them to the registry's hourly rows in one transaction
/// and deletes rows older than ``retention``. Reads merge what is not flushed yet, so a series is current at once.
/// A failed flush keeps its counts for the next one.
///
/// A read and a flush must not overlap: while a flush moves counts from memory to the registry, a read would see them
/// in both places, or in neither. Flushes are numbered when they start and when they end (``Counts``); a read takes
/// what is in memory only while no flush is under way, reads the registry, and starts again if a flush began meanwhile.
public final class HealthHistory: Sendable {
    /// The series kept: each names its two labels.
    public enum Metric: String, Sendable, CaseIterable {
        /// `devid_auth_failures_total`: stage, reason.
        case authFailures = "auth_failures"
        /// `devid_enrollments_total`: kind, result.
        case enrollments
        /// `devid_revocations_total`: scope, reason.
        case revocations

        /// The names of the two labels, as the series API takes them.
        public var labels: (String, String) {
            switch self {
            case .authFailures: ("stage", "reason")
            case .enrollments: ("kind", "result")
            case .revocations: ("scope", "reason")
            }
        }
    }

    /// 400 days: a year and its same month a year before.
    public static let retention: TimeInterval = 400 * 86_400

    private struct Key: Hashable {
        var hour: Date
        var metric: Metric
        var tenant: String
        var first: String
        var second: String
    }

    /// What is not flushed yet, and how many flushes started and ended: equal numbers mean none is under way.
    private struct Counts {
        var pending: [Key: Int] = [:]
        var flushesStarted = 0
        var flushesEnded = 0
    }

    private let state = Mutex(Counts())
    private let clock: any WallClock
    private let store: any Store
    private let logger: Logger

    public init(store: any Store, clock: any WallClock, logger: Logger) {
        self.store = store
        self.clock = clock
        self.logger = logger
    }

    /// Counts one event (or `count`) in the current hour of the injected clock.
    public func record(_ metric: Metric, tenant: TenantID?, _ first: String, _ second: String, count: Int = 1) {
        let key = Key(
            hour: HealthCount.hour(of: clock.now()), metric: metric,
            tenant: tenant?.rawValue ?? ServerMetrics.unknownTenant, first: first, second: second)
        state.withLock { $0.pending[key, default: 0] += count }
    }

    /// Writes the counts gathered since the last flush; on failure they stay for the next one.
    public func flush() async {
        let taken = state.withLock { state -> [Key: Int] in
            guard !state.pending.isEmpty else { return [:] }
            defer { state.pending = [:] }
            state.flushesStarted += 1
            return state.pending
        }
        guard !taken.isEmpty else { return }
        let rows = taken.map { Self.row($0.key, $0.value) }
        do {
            try await store.addHealthCounts(rows, pruneBefore: clock.now().addingTimeInterval(-Self.retention))
            state.withLock { $0.flushesEnded += 1 }
        } catch {
            state.withLock { state in
                for (key, count) in taken { state.pending[key, default: 0] += count }
                state.flushesEnded += 1
            }
            logger.warning("health history not written; retrying", metadata: ["error": "\(error)"])
        }
    }

    /// The hourly counts of `metric` in `from ..< to`: the registry's rows plus what is not flushed yet.
    public func counts(_ metric: Metric, from: Date, to: Date) async throws -> [HealthCount] {
        let start = HealthCount.hour(of: from)
        func inMemory(waitingForFlushes: Bool) -> (counts: [Key: Int], flush: Int)? {
            state.withLock { state in
                guard !waitingForFlushes || state.flushesStarted == state.flushesEnded else { return nil }
                return (
                    state.pending.filter { $0.key.metric == metric && $0.key.hour >= start && $0.key.hour < to },
                    state.flushesStarted
                )
            }
        }
        // A flush takes milliseconds every 10 s: a read rarely starts again. After about a second of flushes it reads
        // anyway (and may then count a flush's events twice, or miss them, as every read did before).
        var consistent: (counts: [Key: Int], stored: [HealthCount])?
        for _ in 0..<200 {
            guard let taken = inMemory(waitingForFlushes: true) else {
                try await Task.sleep(for: .milliseconds(5))
                continue
            }
            let stored = try await store.healthCounts(metric: metric.rawValue, from: from, to: to)
            if state.withLock({ $0.flushesStarted }) == taken.flush {
                consistent = (taken.counts, stored)
                break
            }
        }
        let (unflushed, stored) = try await {
            if let consistent { return consistent }
            let counts = inMemory(waitingForFlushes: false)?.counts ?? [:]
            return (counts, try await store.healthCounts(metric: metric.rawValue, from: from, to: to))
        }()
        var merged: [HealthCount: Int] = [:]
        for row in stored {
            var key = row
            key.count = 0
            merged[key, default: 0] += row.count
        }
        for (key, count) in unflushed {
            var row = Self.row(key, 0)
            row.count = 0
            merged[row, default: 0] += count
        }
        return merged.map { key, count in
            var row = key
            row.count = count
            return row
        }.sorted { ($0.hour, $0.tenant, $0.first, $0.second) < ($1.hour, $1.tenant, $1.first, $1.second) }
    }

    private static func row(_ key: Key, _ count: Int) -> HealthCount {
        HealthCount(
            hour: key.hour, metric: key.metric.rawValue, tenant: key.tenant, first: key.first, second: key.second,
            count: count)
    }
}
