public import DevIDCore
public import Foundation
import Synchronization

/// The recent identity events the anomaly checks judge (``AnomalyChecks``), kept in memory and bounded: who
/// presented a revoked credential, which credential came from two addresses at once, which device id two
/// connections claimed, which bulk token kept being presented after it was used up, which IDevID had a weak key.
///
/// Each kind holds at most ``maximumEntries`` subjects (the least recently seen is dropped first), and the
/// addresses behind one credential are remembered for two ``sharedWindow``s at most (two generations that swap),
/// so no stranger can grow it without bound. Nothing here survives a restart: the audit trail keeps the events
/// themselves.
public final class IdentityWatch: Sendable {
    /// A revoked or superseded credential (or a revoked device) that still tries to authenticate.
    public struct SuspectUse: Sendable, Hashable, Codable {
        public var device: DeviceID
        public var tenant: TenantID?
        public var serial: SerialNumber?
        /// `tls`, `est`, `authz` or `device_status`.
        public var stage: String
        /// `revoked` or `superseded`.
        public var reason: String
        public var attempts: Int
        public var firstSeen: Date
        public var lastSeen: Date
        /// Up to four source addresses the attempts came from.
        public var sources: [String]
    }

    /// One credential seen from two or more source addresses within the window.
    public struct SharedUse: Sendable, Hashable, Codable {
        public var device: DeviceID
        public var tenant: TenantID
        public var serial: SerialNumber
        public var sources: [String]
        public var firstSeen: Date
        public var lastSeen: Date
    }

    /// Two connections (broker connect decisions) that claimed one device id with different credentials or from
    /// different addresses within the window.
    public struct ClientConflict: Sendable, Hashable, Codable {
        public var device: DeviceID
        public var tenant: TenantID?
        /// The distinct `serial@peer` of the conflicting connects.
        public var connections: [String]
        public var firstSeen: Date
        public var lastSeen: Date
    }

    /// A claim token presented after it was used up or revoked.
    public struct TokenOveruse: Sendable, Hashable, Codable {
        public var token: String
        public var tenant: TenantID?
        public var reason: String
        public var attempts: Int
        public var firstSeen: Date
        public var lastSeen: Date
    }

    /// An IDevID presented with a weak key or signature.
    public struct WeakKey: Sendable, Hashable, Codable {
        public var hardwareSerial: String
        public var serial: SerialNumber?
        public var weakness: String
        public var lastSeen: Date
    }

    public struct Snapshot: Sendable, Hashable {
        public var suspects: [SuspectUse] = []
        public var shared: [SharedUse] = []
        public var conflicts: [ClientConflict] = []
        public var tokens: [TokenOveruse] = []
        public var weakKeys: [WeakKey] = []

        public init() {}
    }

    public static let maximumEntries = 1_000
    /// At most this many credentials' addresses per generation.
    public static let maximumTracked = 200_000

    public let sharedWindow: TimeInterval
    public let conflictWindow: TimeInterval

    private struct Sighting {
        var sources: [String: Date]
    }

    private struct Connect {
        var connections: [String: Date]
    }

    private struct State {
        var suspects: [DeviceID: SuspectUse] = [:]
        var shared: [SerialNumber: SharedUse] = [:]
        var conflicts: [DeviceID: ClientConflict] = [:]
        var tokens: [String: TokenOveruse] = [:]
        var weakKeys: [String: WeakKey] = [:]
        var current: [SerialNumber: Sighting] = [:]
        var previous: [SerialNumber: Sighting] = [:]
        var generationStart: Date?
        var connects: [DeviceID: Connect] = [:]
    }

    private let state = Mutex(State())

    public init(sharedWindow: TimeInterval = 600, conflictWindow: TimeInterval = 300) {
        self.sharedWindow = sharedWindow
        self.conflictWindow = conflictWindow
    }

    /// A refusal because the credential (or the device) is revoked or superseded.
    public func suspect(
        device: DeviceID, tenant: TenantID?, serial: SerialNumber?, stage: String, reason: String, source: String?,
        at now: Date
    ) {
        state.withLock { state in
            var entry =
                state.suspects[device]
                ?? SuspectUse(
                    device: device, tenant: tenant, serial: serial, stage: stage, reason: reason, attempts: 0,
                    firstSeen: now, lastSeen: now, sources: [])
            entry.attempts += 1
            entry.lastSeen = now
            entry.stage = stage
            entry.reason = reason
            if let serial { entry.serial = serial }
            if let source, !entry.sources.contains(source), entry.sources.count < 4 { entry.sources.append(source) }
            state.suspects[device] = entry
            Self.bound(&state.suspects)
        }
    }

    /// A request authenticated with `serial` from `source`: two addresses within ``sharedWindow`` are a shared
    /// credential.
    public func seen(device: DeviceID, tenant: TenantID, serial: SerialNumber, source: String?, at now: Date) {
        guard let source else { return }
        state.withLock { state in
            if state.generationStart.map({ now < $0 || now.timeIntervalSince($0) >= sharedWindow }) ?? true {
                state.previous = state.current
                state.current = [:]
                state.generationStart = now
            }
            var sighting = state.current[serial] ?? state.previous[serial] ?? Sighting(sources: [:])
            sighting.sources = sighting.sources.filter { now.timeIntervalSince($0.value) <= sharedWindow }
            if sighting.sources[source] == nil, sighting.sources.count >= 8 { return }
            sighting.sources[source] = now
            if state.current.count < Self.maximumTracked || state.current[serial] != nil {
                state.current[serial] = sighting
            }
            guard sighting.sources.count >= 2 else { return }
            let first = sighting.sources.values.min() ?? now
            var entry =
                state.shared[serial]
                ?? SharedUse(device: device, tenant: tenant, serial: serial, sources: [], firstSeen: first, lastSeen: now)
            entry.sources = Array(Set(entry.sources).union(sighting.sources.keys)).sorted()
            entry.lastSeen = now
            state.shared[serial] = entry
            Self.bound(&state.shared)
        }
    }

    /// A broker asked whether `device` may connect with `serial` (from `peer`, when the broker says).
    public func connect(device: DeviceID, tenant: TenantID?, serial: SerialNumber?, peer: String?, at now: Date) {
        let connection = "\(serial?.rawValue ?? "?")@\(peer ?? "?")"
        state.withLock { state in
            var connect = state.connects[device] ?? Connect(connections: [:])
            connect.connections = connect.connections.filter { now.timeIntervalSince($0.value) <= conflictWindow }
            connect.connections[connection] = now
            if connect.connections.count > 8, let oldest = connect.connections.min(by: { $0.value < $1.value })?.key {
                connect.connections[oldest] = nil
            }
            state.connects[device] = connect
            if state.connects.count > Self.maximumTracked {
                state.connects = state.connects.filter { entry in
                    entry.value.connections.values.contains { now.timeIntervalSince($0) <= conflictWindow }
                }
            }
            guard connect.connections.count >= 2 else { return }
            var entry =
                state.conflicts[device]
                ?? ClientConflict(
                    device: device, tenant: tenant, connections: [], firstSeen: connect.connections.values.min() ?? now,
                    lastSeen: now)
            entry.connections = Array(Set(entry.connections).union(connect.connections.keys)).sorted().suffix(8)
            entry.lastSeen = now
            state.conflicts[device] = entry
            Self.bound(&state.conflicts)
        }
    }

    /// A claim token presented after it was used up or revoked (`reason`).
    public func tokenOverused(token: String, tenant: TenantID?, reason: String, at now: Date) {
        state.withLock { state in
            var entry =
                state.tokens[token]
                ?? TokenOveruse(token: token, tenant: tenant, reason: reason, attempts: 0, firstSeen: now, lastSeen: now)
            entry.attempts += 1
            entry.lastSeen = now
            entry.reason = reason
            state.tokens[token] = entry
            Self.bound(&state.tokens)
        }
    }

    /// An IDevID with a weak key or signature was presented.
    public func weakKey(hardwareSerial: String, serial: SerialNumber?, weakness: String, at now: Date) {
        state.withLock { state in
            state.weakKeys[hardwareSerial] = WeakKey(
                hardwareSerial: hardwareSerial, serial: serial, weakness: weakness, lastSeen: now)
            Self.bound(&state.weakKeys)
        }
    }

    /// Everything seen since `since`.
    public func snapshot(since: Date) -> Snapshot {
        state.withLock { state in
            var snapshot = Snapshot()
            snapshot.suspects = state.suspects.values.filter { $0.lastSeen >= since }.sorted { $0.device < $1.device }
            snapshot.shared = state.shared.values.filter { $0.lastSeen >= since }.sorted { $0.device < $1.device }
            snapshot.conflicts = state.conflicts.values.filter { $0.lastSeen >= since }.sorted { $0.device < $1.device }
            snapshot.tokens = state.tokens.values.filter { $0.lastSeen >= since }.sorted { $0.token < $1.token }
            snapshot.weakKeys = state.weakKeys.values.filter { $0.lastSeen >= since }.sorted {
                $0.hardwareSerial < $1.hardwareSerial
            }
            return snapshot
        }
    }

    /// Drops the least recently seen entries past ``maximumEntries``.
    private static func bound<Key: Hashable, Value: LastSeen>(_ entries: inout [Key: Value]) {
        guard entries.count > maximumEntries else { return }
        let excess = entries.count - maximumEntries
        for key in entries.sorted(by: { $0.value.lastSeen < $1.value.lastSeen }).prefix(excess).map(\.key) {
            entries[key] = nil
        }
    }
}

protocol LastSeen { var lastSeen: Date { get } }
extension IdentityWatch.SuspectUse: LastSeen {}
extension IdentityWatch.SharedUse: LastSeen {}
extension IdentityWatch.ClientConflict: LastSeen {}
extension IdentityWatch.TokenOveruse: LastSeen {}
extension IdentityWatch.WeakKey: LastSeen {}
