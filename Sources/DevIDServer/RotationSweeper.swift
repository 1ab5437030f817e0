import DevIDCore
import DevIDStore
import Foundation
import Logging
public import ServiceLifecycle

/// Step 5 of staged rotation: revokes superseded credentials (reason `superseded`) once their successor has been
/// seen for the confidence period, or at their overlap deadline at the latest.
///
/// `sweep()` does one pass at the injected time (tests and the simulator call it directly); `run()` repeats it
/// every `rotationSweepInterval` until graceful shutdown.
public struct RotationSweeper: Service {
    let state: ServerState

    public init(state: ServerState) {
        self.state = state
    }

    public func run() async throws {
        let interval = state.configuration.rotationSweepInterval
        do {
            // Graceful shutdown cancels the loop, including its sleep, so `devid serve` stops at once on SIGINT.
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    do {
                        // Servers sharing a PostgreSQL registry: only the holder of the job lease sweeps.
                        if state.store.jobLease.isHeld { _ = try await sweep() }
                    } catch {
                        state.logger.error("rotation sweep failed", metadata: ["error": "\(error)"])
                    }
                    try await Task.sleep(for: .seconds(interval))
                }
            }
        } catch is CancellationError {
            return
        }
    }

    /// Revokes every superseded credential that is due; returns how many.
    @discardableResult
    public func sweep() async throws -> Int {
        let now = state.clock.now()
        let policy = state.configuration.ldevidPolicy.rotation
        var total = 0
        while true {
            let due = try await state.store.supersededDue(now: now, confidence: policy.confidence, limit: 500)
            if due.isEmpty { break }
            for credential in due {
                let confirmed = credential.overlapDeadline.map { $0 > now } ?? false
                let reason = confirmed
                    ? "successor \(credential.replacedBy?.rawValue ?? "?") confirmed; revoked after the confidence period"
                    : "overlap deadline reached"
                let changed = try await state.store.revokeCredentials(
                    [credential.serial], reason: .superseded, at: now,
                    audit: state.auditor.event(
                        actor: "system", action: "rotation.revoke_superseded", outcome: .success,
                        reason: "revoked superseded credential \(credential.serial): \(reason)",
                        device: credential.deviceID, serial: credential.serial))
                total += changed
                state.metrics.revoked(scope: .rotation, reason: .superseded, credentials: changed)
            }
            if due.count < 500 { break }
        }
        return total
    }
}
