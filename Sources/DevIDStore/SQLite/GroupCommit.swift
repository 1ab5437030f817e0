import DevIDCore
import GRDB
import Synchronization

/// Group commit for the SQLite writer: writes that arrive while a transaction commits share the next one, and with
/// it one WAL sync (`synchronous = FULL`) instead of one each.
///
/// Each write still runs alone on the one writer connection, in arrival order, and is atomic on its own: in a
/// batch of several, each runs inside a savepoint, so a write that throws (a refusal, a constraint) is rolled back
/// alone and the others commit. A write returns only after the batch committed, with the changes the triggers
/// recorded, read in the same transaction. If the batch cannot commit (disk full, I/O error), or SQLite rolls the
/// whole transaction back under a write, every write of the batch fails with that error and nothing of it is
/// stored. A write alone in its batch runs with no savepoint: the single-client path is the transaction it always
/// was.
///
/// Nothing waits to fill a batch: the first write starts a transaction at once, and whatever arrived meanwhile
/// goes into the next. Under one client, every batch holds one write; with N clients enrolling at once, up to N
/// (BENCHMARKS.md, "Enrollment CPU and TLS resumption").
final class GroupCommit: Sendable {
    /// What a batch hands back to each of its writes.
    struct Committed: Sendable {
        /// The changes of the whole batch (a write delivers them all; the feed drops what it delivered already),
        /// or empty with `latest` when nobody listens.
        var changes: [RegistryChange]
        var latest: Int64
    }

    /// One write waiting for, or inside, a batch.
    private final class Job: @unchecked Sendable {
        // Touched only on the writer's queue until the continuation resumes. Released before that:
        // `withoutActuallyEscaping` traps if the caller's closure is still referenced when its body returns.
        var updates: ((Database) throws -> Void)?
        var failure: (any Error)?
        let continuation: CheckedContinuation<Result<Committed, any Error>, Never>

        init(
            updates: @escaping (Database) throws -> Void,
            continuation: CheckedContinuation<Result<Committed, any Error>, Never>
        ) {
            self.updates = updates
            self.continuation = continuation
        }
    }

    private struct Queue {
        var jobs: [Job] = []
        var draining = false
    }

    /// Transactions run and the writes they held, since the store opened (for tests and the benchmark notes).
    struct Totals: Sendable, Equatable {
        var transactions = 0
        var writes = 0
    }

    private let writer: any DatabaseWriter
    private let feed: ChangeFeed
    private let queue = Mutex(Queue())
    private let counted = Mutex(Totals())
    var totals: Totals { counted.withLock { $0 } }

    init(writer: any DatabaseWriter, feed: ChangeFeed) {
        self.writer = writer
        self.feed = feed
    }

    /// Runs `updates` in the next batch's transaction; returns once that transaction committed.
    func write<T: Sendable>(_ updates: @Sendable (Database) throws -> T) async throws -> (T, Committed) {
        try await withoutActuallyEscaping(updates) { updates in
            // `updates` outlives this call only in name: the job finishes before the continuation resumes.
            nonisolated(unsafe) var value: T?
            let outcome = await withCheckedContinuation { continuation in
                enqueue(Job(updates: { db in value = try updates(db) }, continuation: continuation))
            }
            let committed = try outcome.get()
            guard let value else { throw StoreError(.unavailable, "the write did not run") }
            return (value, committed)
        }
    }

    private func enqueue(_ job: Job) {
        let start = queue.withLock { queue -> Bool in
            queue.jobs.append(job)
            if queue.draining { return false }
            queue.draining = true
            return true
        }
        guard start else { return }
        writer.asyncWriteWithoutTransaction { db in self.drain(db) }
    }

    /// On the writer's queue: batches until nothing waits.
    private func drain(_ db: Database) {
        while true {
            let jobs = queue.withLock { queue -> [Job] in
                let jobs = queue.jobs
                queue.jobs = []
                if jobs.isEmpty { queue.draining = false }
                return jobs
            }
            if jobs.isEmpty { return }
            commit(jobs, db)
        }
    }

    private func commit(_ jobs: [Job], _ db: Database) {
        counted.withLock {
            $0.transactions += 1
            $0.writes += jobs.count
        }
        var committed = Committed(changes: [], latest: 0)
        var batchFailure: (any Error)?
        do {
            try db.inTransaction(.immediate) {
                if jobs.count == 1 {
                    try jobs[0].updates?(db)
                } else {
                    for job in jobs {
                        do {
                            try db.inSavepoint {
                                try job.updates?(db)
                                return .commit
                            }
                        } catch {
                            job.failure = error
                            // SQLite ends the whole transaction on some errors (disk full, I/O): then nothing of
                            // this batch may be reported as stored.
                            guard db.isInsideTransaction else { throw error }
                        }
                    }
                }
                if feed.hasSubscribers {
                    committed.changes = try SQLiteStore.changes(db, after: feed.cursor, limit: .max)
                } else {
                    committed.latest = try SQLiteStore.latestChange(db)
                }
                return .commit
            }
        } catch {
            batchFailure = error
        }
        if batchFailure == nil, committed.changes.isEmpty { feed.skip(through: committed.latest) }
        for job in jobs {
            job.updates = nil
            if let failure = job.failure ?? batchFailure {
                job.continuation.resume(returning: .failure(failure))
            } else {
                job.continuation.resume(returning: .success(committed))
            }
        }
    }
}
