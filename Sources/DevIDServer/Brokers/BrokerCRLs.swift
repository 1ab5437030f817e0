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
                    let crls = await revocation.brokerCRLs() + rootCRLs()
                    return (crls, grants)
                })
        }
        rabbitMQ = configuration.rabbitMQManagement.map { RabbitMQSessions(management: $0, logger: logger) }
    }

    /// Devices whose identity state changed. `endSessions`: they may no longer be connected (revoked, suspended),
    /// so their open broker sessions are closed now.
    public func identityChanged(devices: Set<DeviceID>, endSessions: Bool, reason: String) async {
        await mosquitto?.changed()
        if endSessions, let rabbitMQ, !devices.isEmpty {
            await rabbitMQ.close(devices: devices, reason: reason)
        }
    }

    /// The CRLs were re-signed: brokers that hold a copy need the new one before the old one's nextUpdate.
    public func crlsPublished() async {
        await mosquitto?.changed()
    }
}

extension RevocationPublisher {
    /// The issuing CAs' current CRLs (every published one, of every issuing CA: a broker that checks CRLs refuses
    /// a certificate whose issuer has none), DER, for brokers that check CRLs themselves.
    public func brokerCRLs() -> [[UInt8]] {
        let issuing = Set(authorities.filter { !$0.issuesIDevIDs && !$0.issuesServiceCertificates }.map(\.name))
        return publishedCRLs().filter { issuing.contains($0.caName) }.map(\.der)
    }
}

extension ServerState {
    /// The issuing CAs' CRLs and the current CRL of every trusted root (which lists revoked issuing CAs).
    func brokerCRLs() async -> [[UInt8]] {
        await revocation.brokerCRLs() + currentRootCRLs()
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

extension BrokerHooks {
    /// A revocation of `scope` happened: rewrite the broker files and, when a RabbitMQ is wired, close the open
    /// sessions of every device in scope (for a single serial, its device's: it reconnects with a good
    /// credential if it has one).
    public func revoked(_ scope: CredentialScope, store: any Store) async {
        var devices: Set<DeviceID> = []
        if rabbitMQ != nil {
            devices = await Self.devices(in: scope, store: store)
        }
        await identityChanged(devices: devices, endSessions: true, reason: "identity revoked by DevID")
    }

    static func devices(in scope: CredentialScope, store: any Store) async -> Set<DeviceID> {
        switch scope {
        case .device(let id):
            return [id]
        case .serial(let serial):
            guard let credential = try? await store.credential(serial: serial) else { return [] }
            return [credential.deviceID]
        case .lot(let lot):
            return await all(DeviceFilter(lot: lot), store: store)
        case .tenant(let tenant):
            return await all(DeviceFilter(tenant: tenant), store: store)
        case .token(let token):
            return await all(DeviceFilter(enrolledWithToken: token), store: store)
        case .expiringBefore:
            return []
        case .issuer(let subject):
            // Every device that holds a revoked LDevID of that CA (the scope was just revoked).
            var devices: Set<DeviceID> = []
            var after: SerialNumber?
            while let page = try? await store.revokedCredentials(
                issuer: subject, notExpiredAt: Date(timeIntervalSince1970: 0), afterSerial: after, limit: 5_000),
                !page.isEmpty
            {
                devices.formUnion(page.map(\.deviceID))
                guard page.count == 5_000 else { break }
                after = page.last?.serial
            }
            return devices
        }
    }

    private static func all(_ filter: DeviceFilter, store: any Store) async -> Set<DeviceID> {
        var filter = filter
        filter.limit = 2_000
        var ids: Set<DeviceID> = []
        while let page = try? await store.devices(filter), !page.isEmpty {
            ids.formUnion(page.map(\.id))
            guard page.count == filter.limit else { break }
            filter.after = page.last?.id
        }
        return ids
    }
}
