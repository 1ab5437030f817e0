public import DevIDCore
public import DevIDStore
public import Foundation
import Synchronization

/// The policy-decision engine: an in-memory index of devices, their credentials (by certificate fingerprint) and
/// their tenants' compiled topic policies, and a `decide` that reads only that index.
///
/// `decide(_:now:)` does no I/O and takes one short lock: it either answers, or says which entry it is missing.
/// ``AuthzService`` fills a miss from the store and answers from what it loaded. Entries are kept in step with the
/// registry two ways:
/// - every change this server makes (revoke, suspend, resume, reprovision, issue, rotate, topic policy) calls
///   ``invalidate(device:)``, ``invalidate(tenant:)`` or ``invalidateAll()``, so the next decision reloads;
/// - every entry is trusted for at most ``maximumAge`` seconds, so a change made by another DevID server that
///   shares the database is seen within that time.
public final class DecisionEngine: Sendable {
    /// Who a decision is about.
    public enum Subject: Sendable, Hashable {
        /// SHA-256 of the certificate DER, lowercase hex.
        case fingerprint(String)
        /// A device identity that the broker authenticated itself (the certificate's CN).
        case device(DeviceID)
    }

    /// How the topic in a query is written.
    public enum TopicEncoding: Sendable, Hashable {
        /// An MQTT topic name or filter.
        case mqtt
        /// A RabbitMQ routing key translated back to MQTT (`.` → `/`, `*` → `+`): decided by
        /// ``CompiledTopicPolicy/checkRoutingKey(_:topic:binding:dotted:)``, which needs the registry's dotted ids.
        case amqp
    }

    public struct Query: Sendable, Hashable {
        public var subject: Subject
        public var action: AuthzAction
        /// The tenant the caller believes the device belongs to (e.g. the broker's vhost or the relying party's
        /// tenant); a different one is denied `wrong_tenant`.
        public var claimedTenant: TenantID?
        public var encoding: TopicEncoding

        public init(
            subject: Subject, action: AuthzAction, claimedTenant: TenantID? = nil, encoding: TopicEncoding = .mqtt
        ) {
            self.subject = subject
            self.action = action
            self.claimedTenant = claimedTenant
            self.encoding = encoding
        }
    }

    /// The outcome of a lookup in the index.
    public enum Lookup: Sendable, Hashable {
        /// Decided. `confirm` names a credential seen authenticating for the first time (rotation step 3).
        case decided(AuthzDecision, confirm: SerialNumber?)
        /// The index holds nothing (fresh) for this fingerprint, device or tenant.
        case missingFingerprint(String)
        case missingDevice(DeviceID)
        case missingTenant(TenantID)
        /// A RabbitMQ topic decision, and the registry's dotted ids (``DottedIdentifiers``) are not loaded yet.
        case missingDottedIdentifiers
    }

    /// One device and its credentials, as loaded from the store.
    public struct DeviceEntry: Sendable, Hashable {
        public var device: DeviceSnapshot
        /// By certificate fingerprint.
        public var credentials: [String: CredentialSnapshot]
        public var loadedAt: Date

        public init(device: DeviceSnapshot, credentials: [String: CredentialSnapshot], loadedAt: Date) {
            self.device = device
            self.credentials = credentials
            self.loadedAt = loadedAt
        }
    }

    public struct TenantEntry: Sendable, Hashable {
        public var policy: CompiledTopicPolicy
        public var isDefault: Bool
        public var loadedAt: Date

        public init(policy: CompiledTopicPolicy, isDefault: Bool, loadedAt: Date) {
            self.policy = policy
            self.isDefault = isDefault
            self.loadedAt = loadedAt
        }
    }

    struct Index {
        var devices: [DeviceID: DeviceEntry] = [:]
        var fingerprints: [String: DeviceID] = [:]
        var tenants: [TenantID: TenantEntry] = [:]
        /// Bumped by every invalidation: a load that started before one must not install what it read.
        var generation: UInt64 = 0
    }

    /// How long an entry is trusted without reloading (seconds, measured on the injected clock).
    public let maximumAge: TimeInterval
    /// Every decision made through ``AuthzService``, by action, result and reason.
    public let counters: DecisionCounters
    private let index = Mutex(Index())
    /// The registry's tenant and device ids with a `.`; nil until scanned (``scanDottedIdentifiers(store:)``).
    private let dotted = Mutex<DottedIdentifiers?>(nil)
    /// When the dotted tenant ids were last read from the store: they are re-read after ``maximumAge`` (cheap:
    /// one list of tenants), so a tenant written by another server is seen; dotted device ids come from the full
    /// scan at start and from every device loaded since.
    private let dottedTenantsReadAt = Mutex<Date?>(nil)

    public init(maximumAge: TimeInterval = 5, observer: (any DecisionObserver)? = nil) {
        self.maximumAge = maximumAge
        self.counters = DecisionCounters(observer: observer)
    }

    // MARK: - Deciding (no I/O)

    /// How old an entry may be when the registry cannot be reached to reload it (a PostgreSQL registry down or failing
    /// over): decisions keep being answered from memory for this long after each entry was last read, then they are
    /// refused with 503 (docs/deployment.md).
    public static let outageMaximumAge: TimeInterval = 300

    /// Answers from the index alone, or names the entry it is missing. `maximumAge` overrides ``maximumAge`` (see
    /// ``outageMaximumAge``).
    public func decide(_ query: Query, now: Date, maximumAge: TimeInterval? = nil) -> Lookup {
        let maximumAge = maximumAge ?? self.maximumAge
        func fresh(_ loadedAt: Date, _ now: Date) -> Bool {
            now.timeIntervalSince(loadedAt) < maximumAge && loadedAt <= now.addingTimeInterval(maximumAge)
        }
        var dotted = DottedIdentifiers()
        if query.encoding == .amqp, query.action.isTopic {
            guard let known = dottedIdentifiers, let readAt = dottedTenantsReadAt.withLock({ $0 }), fresh(readAt, now)
            else { return .missingDottedIdentifiers }
            dotted = known
        }
        let found: Result<(DeviceEntry, String?, TenantEntry), Miss> = index.withLock { index in
            let entry: DeviceEntry
            var fingerprint: String?
            switch query.subject {
            case .fingerprint(let value):
                guard let id = index.fingerprints[value], let cached = index.devices[id], fresh(cached.loadedAt, now)
                else { return .failure(.fingerprint(value)) }
                entry = cached
                fingerprint = value
            case .device(let id):
                guard let cached = index.devices[id], fresh(cached.loadedAt, now) else { return .failure(.device(id)) }
                entry = cached
            }
            guard let tenant = index.tenants[entry.device.tenant], fresh(tenant.loadedAt, now) else {
                return .failure(.tenant(entry.device.tenant))
            }
            return .success((entry, fingerprint, tenant))
        }
        switch found {
        case .failure(.fingerprint(let value)): return .missingFingerprint(value)
        case .failure(.device(let id)): return .missingDevice(id)
        case .failure(.tenant(let id)): return .missingTenant(id)
        case .success(let (entry, fingerprint, tenant)):
            return Self.evaluate(query, entry: entry, fingerprint: fingerprint, tenant: tenant, dotted: dotted, now: now)
        }
    }

    enum Miss: Error {
        case fingerprint(String)
        case device(DeviceID)
        case tenant(TenantID)
    }

    private func fresh(_ loadedAt: Date, _ now: Date) -> Bool {
        now.timeIntervalSince(loadedAt) < maximumAge && loadedAt <= now.addingTimeInterval(maximumAge)
    }

    /// The decision for `query` on a device entry and its tenant's policy. Pure. `dotted` are the registry's dotted
    /// ids, which a RabbitMQ (`.amqp`) topic decision needs.
    public static func evaluate(
        _ query: Query, entry: DeviceEntry, fingerprint: String?, tenant: TenantEntry, dotted: DottedIdentifiers,
        now: Date
    ) -> Lookup {
        let device = entry.device
        var credential: CredentialSnapshot?
        let reason: AuthzReason
        if let fingerprint {
            guard let known = entry.credentials[fingerprint] else {
                return .decided(.deny(.unknownCertificate, device: device.id, tenant: device.tenant), confirm: nil)
            }
            credential = known
            reason = IdentityCheck.check(known, of: device, at: now)
        } else {
            let checked = IdentityCheck.check(device: device, credentials: Array(entry.credentials.values), at: now)
            credential = checked.credential
            reason = checked.reason
        }
        let serial = credential?.serial
        func deny(_ reason: AuthzReason) -> Lookup {
            .decided(.deny(reason, device: device.id, tenant: device.tenant, serial: serial), confirm: nil)
        }
        guard reason == .ok else { return deny(reason) }
        if let claimed = query.claimedTenant, claimed != device.tenant { return deny(.wrongTenant) }
        let binding = TopicBinding(tenant: device.tenant, device: device.id, lot: device.lot)
        switch query.action {
        case .connect:
            break
        case .publish(let topic), .subscribe(let topic):
            let action: TopicAction = if case .publish = query.action { .publish } else { .subscribe }
            // The tenant is always the device's own, from the registry; never the topic's or the broker's vhost.
            let verdict =
                query.encoding == .mqtt
                ? tenant.policy.check(action, topic: topic, binding: binding)
                : tenant.policy.checkRoutingKey(action, topic: topic, binding: binding, dotted: dotted)
            switch verdict {
            case .allowed: break
            case .wrongTenant: return deny(.wrongTenant)
            case .notAllowed: return deny(.topicNotAllowed)
            case .invalid: return deny(.invalidTopic)
            case .dottedIdentifier: return deny(.dottedID)
            }
        case .scope(let scope):
            guard tenant.policy.grants(scope: scope) else { return deny(.scopeNotAllowed) }
        }
        var confirm: SerialNumber?
        if fingerprint != nil, let credential, credential.status == .active, !credential.confirmed {
            confirm = credential.serial
        }
        return .decided(
            AuthzDecision(allowed: true, reason: .ok, device: device.id, tenant: device.tenant, serial: serial),
            confirm: confirm)
    }

    // MARK: - Keeping in step

    /// Forgets a device and its credentials; the next decision about it reads the store.
    public func invalidate(device: DeviceID) {
        index.withLock { index in
            index.generation &+= 1
            if let entry = index.devices.removeValue(forKey: device) {
                for fingerprint in entry.credentials.keys { index.fingerprints.removeValue(forKey: fingerprint) }
            }
        }
    }

    /// Forgets what a revocation scope touched: one device, or everything (lot, tenant, serial, expiry scopes).
    public func invalidate(_ scope: CredentialScope) {
        if case .device(let id) = scope { invalidate(device: id) } else { invalidateAll() }
    }

    /// Forgets a tenant's compiled policy.
    public func invalidate(tenant: TenantID) {
        index.withLock { index in
            index.generation &+= 1
            index.tenants.removeValue(forKey: tenant)
        }
    }

    /// Forgets everything (after a revocation by lot, tenant or serial).
    public func invalidateAll() {
        index.withLock { index in
            index.generation &+= 1
            index.devices.removeAll()
            index.fingerprints.removeAll()
            index.tenants.removeAll()
        }
    }

    /// Marks a credential confirmed, so the store is not asked again.
    public func markConfirmed(fingerprint: String) {
        index.withLock { index in
            guard let id = index.fingerprints[fingerprint] else { return }
            index.devices[id]?.credentials[fingerprint]?.confirmed = true
        }
    }

    /// The generation to pass to ``install(_:generation:)`` (read it before reading the store).
    public var generation: UInt64 { index.withLock { $0.generation } }

    /// Installs a loaded device entry unless something was invalidated since `generation`.
    @discardableResult
    public func install(_ entry: DeviceEntry, generation: UInt64) -> Bool {
        index.withLock { index in
            guard index.generation == generation else { return false }
            if let old = index.devices[entry.device.id] {
                for fingerprint in old.credentials.keys { index.fingerprints.removeValue(forKey: fingerprint) }
            }
            index.devices[entry.device.id] = entry
            for fingerprint in entry.credentials.keys { index.fingerprints[fingerprint] = entry.device.id }
            note(tenant: entry.device.tenant, device: entry.device.id)
            return true
        }
    }

    @discardableResult
    public func install(_ entry: TenantEntry, tenant: TenantID, generation: UInt64) -> Bool {
        index.withLock { index in
            guard index.generation == generation else { return false }
            index.tenants[tenant] = entry
            note(tenant: tenant, device: nil)
            return true
        }
    }

    /// The registry's tenant and device ids with a `.`, once scanned.
    public var dottedIdentifiers: DottedIdentifiers? { dotted.withLock { $0 } }

    /// Installs the result of ``scanDottedIdentifiers(store:)``, kept across invalidations: new ids cannot have a
    /// dot, and every device or tenant loaded later with one is added (so another server's writes are seen too).
    public func install(dotted ids: DottedIdentifiers, now: Date) {
        dottedTenantsReadAt.withLock { $0 = now }
        dotted.withLock { current in
            var merged = ids
            if let current {
                merged.tenants.formUnion(current.tenants)
                merged.devices.formUnion(current.devices)
            }
            current = merged
        }
    }

    private func note(tenant: TenantID, device: DeviceID?) {
        guard tenant.hasDot || device?.hasDot == true else { return }
        dotted.withLock { current in
            guard current != nil else { return }
            if tenant.hasDot { current?.tenants.insert(tenant) }
            if let device, device.hasDot { current?.devices.insert(device) }
        }
    }

    /// How many devices, credentials and tenants the index holds.
    public var size: (devices: Int, credentials: Int, tenants: Int) {
        index.withLock { ($0.devices.count, $0.fingerprints.count, $0.tenants.count) }
    }

    // MARK: - Loading from the store

    /// Reads a device and every credential of it.
    public static func loadDevice(_ id: DeviceID, store: any Store, now: Date) async throws -> DeviceEntry? {
        guard let device = try await store.device(id) else { return nil }
        var credentials: [String: CredentialSnapshot] = [:]
        for credential in try await store.credentials(device: id) {
            credentials[credential.certificateSHA256] = CredentialSnapshot(credential)
        }
        return DeviceEntry(device: DeviceSnapshot(device), credentials: credentials, loadedAt: now)
    }

    /// Reads a tenant's topic policy and compiles it. A stored policy that no longer compiles grants nothing.
    public static func loadTenant(_ id: TenantID, store: any Store, now: Date) async throws -> TenantEntry {
        let tenant = try await store.tenant(id)
        let policy = tenant?.policy.effectiveTopics ?? .default
        let compiled = (try? CompiledTopicPolicy(policy)) ?? .nothing
        return TenantEntry(policy: compiled, isDefault: tenant?.policy.topics == nil, loadedAt: now)
    }

    /// Every tenant and device id in the registry with a `.` (any state): what RabbitMQ topic decisions must know
    /// (``CompiledTopicPolicy/checkRoutingKey(_:topic:binding:dotted:)``).
    public static func scanDottedIdentifiers(store: any Store, tenantsOnly: Bool = false) async throws
        -> DottedIdentifiers
    {
        var ids = DottedIdentifiers()
        for tenant in try await store.tenants() where tenant.id.hasDot { ids.tenants.insert(tenant.id) }
        if tenantsOnly { return ids }
        var after: DeviceID?
        while true {
            let page = try await store.devices(DeviceFilter(limit: 1000, after: after))
            for device in page where device.id.hasDot { ids.devices.insert(device.id) }
            guard page.count == 1000, let last = page.last else { break }
            after = last.id
        }
        return ids
    }

    /// Fills the index from the store: every `active` device, with its credentials and its tenant's policy, and
    /// the registry's dotted ids. Run once at start so the first decisions do not each read the store.
    public func warm(store: any Store, now: Date) async throws -> Int {
        install(dotted: try await Self.scanDottedIdentifiers(store: store), now: now)
        let generation = self.generation
        var after: DeviceID?
        var count = 0
        var tenants: Set<TenantID> = []
        while true {
            let page = try await store.devices(DeviceFilter(state: .active, limit: 1000, after: after))
            for device in page {
                guard let entry = try await Self.loadDevice(device.id, store: store, now: now) else { continue }
                guard install(entry, generation: generation) else { return count }
                tenants.insert(device.tenant)
                count += 1
            }
            guard page.count == 1000, let last = page.last else { break }
            after = last.id
        }
        for tenant in tenants {
            install(try await Self.loadTenant(tenant, store: store, now: now), tenant: tenant, generation: generation)
        }
        return count
    }
}

extension AuthzAction {
    /// Publish or subscribe: the actions decided by a topic policy.
    var isTopic: Bool {
        switch self {
        case .publish, .subscribe: true
        case .connect, .scope: false
        }
    }
}
