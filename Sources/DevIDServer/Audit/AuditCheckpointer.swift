public import DevIDCore
public import DevIDStore
import Foundation
public import Logging
public import ServiceLifecycle

/// Writes a signed checkpoint of the audit chain's head (see ``AuditCheckpoint``) every `interval` when the head has
/// moved, and once more on graceful shutdown; each is appended to the checkpoint file and logged at notice level
/// (`audit checkpoint`, with the signed fields as metadata) for shipping off the machine.
///
/// `checkpoint(reason:)` does one pass at the injected wall-clock time (tests call it directly); `run()` repeats it,
/// sleeping on `clock`. Put it first in the service group, so it stops last, after the listeners have drained.
public struct AuditCheckpointer<C: Clock>: Service where C.Duration == Duration {
    let store: any Store
    let secret: AuditSecret
    let file: AuditCheckpointFile
    let wallClock: any WallClock
    let clock: C
    let interval: Duration
    let logger: Logger
    private let last = LastCheckpoint()

    public init(
        store: any Store, secret: AuditSecret, file: AuditCheckpointFile, wallClock: any WallClock, clock: C,
        interval: Duration = .seconds(60), logger: Logger
    ) {
        self.store = store
        self.secret = secret
        self.file = file
        self.wallClock = wallClock
        self.clock = clock
        self.interval = interval
        self.logger = logger
    }

    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    try await clock.sleep(for: interval)
                    await checkpointLogging(reason: "interval")
                }
            }
        } catch is CancellationError {}
        await checkpointLogging(reason: "shutdown")
    }

    private func checkpointLogging(reason: String) async {
        do {
            try await checkpoint(reason: reason)
        } catch {
            logger.error("audit checkpoint failed", metadata: ["error": "\(error)"])
        }
    }

    /// Signs, appends and logs a checkpoint of the current head, unless the trail is empty or the head is the one
    /// last checkpointed. Returns what it wrote.
    @discardableResult
    public func checkpoint(reason: String) async throws -> AuditCheckpoint? {
        guard let head = try await store.auditEntries(AuditFilter(limit: 1)).first else { return nil }
        let previous: AuditCheckpoint?
        if let cached = await last.cached {
            previous = cached
        } else {
            previous = try file.read(publicKey: secret.publicKey).newest
            await last.set(previous)
        }
        if let previous, previous.sequence == head.sequence, previous.hash == head.hash { return nil }
        // Never sign a head that does not extend the last checkpoint: the trail was cut or rewritten under it.
        if let previous {
            let pinned = try await store.auditEntries(
                AuditFilter(limit: 1, afterSequence: previous.sequence - 1, oldestFirst: true)
            ).first
            guard head.sequence > previous.sequence, pinned?.sequence == previous.sequence,
                pinned?.hash == previous.hash
            else {
                throw AuditCheckpointError(
                    "audit trail no longer extends the checkpoint at sequence \(previous.sequence); not signing its head (run devid audit verify)"
                )
            }
        }
        // Where keyed entries begin, once known, never moves; until then a walk finds it (nil while none is keyed).
        let keyedFrom: Int64?
        if let known = previous?.keyedFrom {
            keyedFrom = known
        } else {
            keyedFrom = try await store.auditChainReport(anchor: nil).keyedFrom
        }
        let checkpoint = try AuditCheckpoint(
            anchor: AuditAnchor(sequence: head.sequence, hash: head.hash, keyedFrom: keyedFrom),
            time: wallClock.now(), reason: reason, secret: secret)
        try file.append(checkpoint, publicKey: secret.publicKey)
        await last.set(checkpoint)
        var metadata: Logger.Metadata = [
            "sequence": "\(checkpoint.sequence)", "hash": "\(checkpoint.hash)", "time": "\(checkpoint.time)",
            "signature": "\(checkpoint.signature)", "reason": "\(reason)",
        ]
        if let keyedFrom { metadata["keyed_from"] = "\(keyedFrom)" }
        logger.notice("audit checkpoint", metadata: metadata)
        return checkpoint
    }
}

/// The newest checkpoint written (`.some(nil)` once the file was read and held none).
private actor LastCheckpoint {
    private(set) var cached: AuditCheckpoint??

    func set(_ checkpoint: AuditCheckpoint?) {
        cached = .some(checkpoint)
    }
}

extension AuditCheckpointer: CustomStringConvertible {
    public var description: String { "AuditCheckpointer(\(file.path))" }
}
