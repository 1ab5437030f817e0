import DevIDCore
import Logging
public import ServiceLifecycle

/// Fills the policy-decision index from the registry once at start (every active device, its credentials, its
/// tenant's rules), so the first decisions after a restart do not each read the store. Decisions are correct
/// without it: a miss reads the store.
///
/// It also scans the registry for tenant and device ids with a `.` (created before new ids were refused one) and
/// logs a warning for each: RabbitMQ topic decisions deny them (`dotted_id`) until they are re-provisioned under an
/// id without a dot (docs/integrations/rabbitmq.md).
public struct AuthzWarmup: Service {
    let state: ServerState

    public init(state: ServerState) {
        self.state = state
    }

    public func run() async throws {
        do {
            let devices = try await state.authz.warm(store: state.store, now: state.clock.now())
            state.logger.debug("policy-decision index warmed", metadata: ["devices": "\(devices)"])
            Self.warnAboutDottedIdentifiers(state.authz.dottedIdentifiers ?? DottedIdentifiers(), logger: state.logger)
        } catch {
            state.logger.error("warming the policy-decision index failed", metadata: ["error": "\(error)"])
        }
        // A service that returns while the group shuts another one down makes the whole group fail
        // (ServiceGroupError.serviceFinishedUnexpectedly), which a quick restart after start hit: stay until asked.
        try? await gracefulShutdown()
    }

    static func warnAboutDottedIdentifiers(_ ids: DottedIdentifiers, logger: Logger) {
        for tenant in ids.tenants.sorted() {
            logger.warning(
                "tenant id has a dot: RabbitMQ topic decisions deny its devices (dotted_id); re-provision them under a tenant without one",
                metadata: ["tenant": "\(tenant)"])
        }
        for device in ids.devices.sorted() {
            logger.warning(
                "device id has a dot: RabbitMQ topic decisions deny it (dotted_id); re-provision it under an id without one",
                metadata: ["device": "\(device)"])
        }
    }
}
