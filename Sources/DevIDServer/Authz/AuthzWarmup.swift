import DevIDCore
import Logging
public import ServiceLifecycle

/// Fills the policy-decision index from the registry once at start (every active device, its credentials, its
/// tenant's rules), so the first decisions after a restart do not each read the store. Decisions are correct
/// without it: a miss reads the store.
public struct AuthzWarmup: Service {
    let state: ServerState

    public init(state: ServerState) {
        self.state = state
    }

    public func run() async throws {
        do {
            let devices = try await state.authz.warm(store: state.store, now: state.clock.now())
            state.logger.debug("policy-decision index warmed", metadata: ["devices": "\(devices)"])
        } catch {
            state.logger.error("warming the policy-decision index failed", metadata: ["error": "\(error)"])
        }
    }
}
