public import DevIDCore
import DevIDPKI
public import DevIDStore
import Foundation
import Logging

/// The brokers DevID keeps in step with identity state: a Mosquitto whose files it rewrites, a RabbitMQ whose
/// connections it closes. Both optional (configuration); every identity change goes through ``identityChanged``.
public final class BrokerHooks: Sendable {
    public let mosquitto: MosquittoSync?
    public let rabbitMQ: RabbitMQSessions?

    init(
        configuration: ServerConfiguration, hierarchy: CAHierarchy, issuers: IssuingAuthorities, store: any Store,
        revocation: RevocationPublisher, rootCRLs: @escaping @Sendable () -> [[UInt8]], clock: any WallClock,
        logger: Logger
    ) {
        mosquitto = configuration.mosquitto.map { sync in
            MosquittoSync(
                configuration: sync, hierarchy: hierarchy, clock: clock, logger: logger,
                trust: { issuers.snapshot.caCertificates() },
                recorder: ServiceCertificateRecorder(
                    store: store, auditor: Auditor(store: store, clock: clock, logger: logger), clock: clock),
                endpoints: { await revocation.endpoints(caName: "services") },
                snapshot: {
                    let grants = try await BrokerGrants.all(store: store)
                    return (ServerState.brokerCRLs(issuing: await revocation.brokerCRLs(), roots: rootCRLs()), grants)
                })
        }
        rabbitMQ = configuration.rabbitMQManagement.map {
            RabbitMQSessions(
                management: $0, logger: logger,
                stillEnded: { devices in
                    // Revoked, suspended or gone: may not connect at all. A registry error leaves the device alone.
                    var ended: Set<DeviceID> = []
                    for id in devices {
                        do {
                            if try await store.device(id)?.state != .active { ended.insert(id) }
                        } catch {
                            continue
                        }
                    }
                    return ended
                })
        }
    }

    /// Devices whose identity state changed. `endSessions`: they may no longer be connected (revoked, suspended),
    /// so their open broker sessions are closed now.
    public func identityChanged(devices: Set<DeviceID>, endSessions: Bool, reason: String) async {
        await mosquitto?.changed()
        if endSessions, let rabbitMQ, !devices.isEmpty {
            await rabbitMQ.endSessions(devices: devices, reason: reason)
        }
    }

    /// The CRLs were re-signed: brokers that hold a copy need the new one before the old one's nextUpdate.
    public func crlsPublished() async {
        await mosquitto?.changed()
    }
}

extension RevocationPublisher {
    /// The issuing CAs' current CRLs (every published one, of every issuing CA: a broker that checks CRLs refuses
    /// a certificate whose issuer has none), DER, for brokers that check CRLs themselves. None until every issuing
    /// CA has one (after a start, or after an issuing CA is added and before its first CRL).
    public func brokerCRLs() -> [[UInt8]] {
        let issuing = Set(authorities.filter { !$0.issuesIDevIDs && !$0.issuesServiceCertificates }.map(\.name))
        let crls = publishedCRLs().filter { issuing.contains($0.caName) }
        guard Set(crls.map(\.caName)) == issuing else { return [] }
        return crls.map(\.der)
    }
}

extension ServerState {
    /// The issuing CAs' CRLs and the current CRL of every trusted root (which lists revoked issuing CAs).
    func brokerCRLs() async -> [[UInt8]] {
        Self.brokerCRLs(issuing: await revocation.brokerCRLs(), roots: currentRootCRLs())
    }

    /// The CRLs a broker gets: none until the issuing CAs' first CRLs are published (just after start), never the
    /// roots' CRLs alone. Mosquitto refuses every device whose issuer has no CRL in its crlfile.
    static func brokerCRLs(issuing: [[UInt8]], roots: @autoclosure () -> [[UInt8]]) -> [[UInt8]] {
        issuing.isEmpty ? [] : issuing + roots()
    }

    func currentRootCRLs() -> [[UInt8]] {
        Self.currentRootCRLs(roots: issuers.snapshot.roots, first: rootCRLs, others: otherRootCRLs, now: clock.now())
    }

    /// The current pre-signed CRL of every root that is not retired (DER).
    static func currentRootCRLs(
        roots: Roots, first: RootCRLCache, others: RootCRLCache.Others, now: Date
    ) -> [[UInt8]] {
        roots.ids.filter { !roots.state.retired.contains($0) }.compactMap { id in
            let cache = id == 1 ? first : others.cache(id: id, roots: roots)
            return cache?.crls.current(at: now)?.derBytes
        }
    }
}

