public import Configuration
import DevIDCore
import Foundation
import Synchronization

/// The server's configuration as it is now: what it started with, where the **live settings** (the rotation policy,
/// the rate limits, the anomaly thresholds) are replaced by the newest of
/// - the configuration file and `DEVID_*` environment, read again on SIGHUP (``reload(base:)``), and
/// - the settings kept in the registry (`devid settings set`, ``Store/settings()``), which every server applies at
///   its next decision after they change: the change stream carries them (``RegistryChangeRouter``).
///
/// A registry setting wins over the file and the environment. Everything else (ports, directories, the CA, the
/// listeners' limits, the enrollment cap) keeps its value from the start: changing it needs a restart.
public final class LiveConfiguration: Sendable {
    /// The keys the registry may hold, each a key of the configuration file (docs/configuration.md).
    public static let settingKeys: [String] = [
        "ldevid.lifetime.days", "ldevid.backdate.seconds", "ldevid.require.new.key", "ldevid.renewal.fraction",
        "ldevid.jitter.fraction", "ldevid.overlap.hours", "ldevid.confidence.minutes", "ldevid.grace.days",
        "ldevid.max.skew.seconds", "rotation.unreachable.hours", "est.approval.retry.after.seconds",
        "limits.source.per.second", "limits.source.burst", "limits.device.per.second", "limits.device.burst",
        "limits.claim.token.per.second", "limits.claim.token.burst", "limits.tenant.per.second",
        "limits.tenant.burst", "limits.global.per.second", "limits.global.burst",
        "limits.overload.retry.after.seconds",
    ] + HealthThresholds.names.map { "health." + $0.name.replacingOccurrences(of: "_", with: ".") }

    private struct State {
        /// The configuration from the file, the environment and the flags (at start or after SIGHUP).
        var base: ServerConfiguration
        var registry: [String: String]
        var current: ServerConfiguration
    }
    private let state: Mutex<State>
    /// The configuration the server started with.
    public let started: ServerConfiguration

    public init(_ configuration: ServerConfiguration) {
        started = configuration
        state = Mutex(State(base: configuration, registry: [:], current: configuration))
    }

    /// The configuration in effect.
    public var current: ServerConfiguration { state.withLock { $0.current } }

    /// The file, environment and flags of the last start or SIGHUP.
    public var base: ServerConfiguration { state.withLock { $0.base } }

    /// The registry settings in effect.
    public var registrySettings: [String: String] { state.withLock { $0.registry } }

    /// Applies the registry's settings; throws (and keeps what was in effect) when they make the configuration
    /// invalid.
    public func apply(registry settings: [String: String]) throws {
        // Computed under the lock: a SIGHUP reload racing with a registry change cannot install a mix of stale parts.
        try state.withLock { (state: inout State) throws -> Void in
            state.current = try Self.effective(started: started, base: state.base, registry: settings)
            state.registry = settings
        }
    }

    /// Applies a configuration read again from the file and the environment (SIGHUP); throws (and keeps what was in
    /// effect) when it is invalid. Only the live settings of `base` take effect.
    public func reload(base: ServerConfiguration) throws {
        try state.withLock { (state: inout State) throws -> Void in
            state.current = try Self.effective(started: started, base: base, registry: state.registry)
            state.base = base
        }
    }

    /// `started` with its live settings taken from `base`, then from `registry`; validated.
    static func effective(
        started: ServerConfiguration, base: ServerConfiguration, registry: [String: String]
    ) throws -> ServerConfiguration {
        var source = base
        if !registry.isEmpty {
            // The registry's keys read as environment variables over the base: the same parsing as at start.
            let unknown = registry.keys.filter { !settingKeys.contains($0) }.sorted()
            guard unknown.isEmpty else {
                throw ConfigurationError("not a setting DevID keeps in the registry: \(unknown.joined(separator: ", "))")
            }
            var overlay = ServerConfiguration(
                reader: ConfigReader(providers: [
                    EnvironmentVariablesProvider(
                        environmentVariables: Dictionary(
                            uniqueKeysWithValues: registry.map { key, value in
                                ("DEVID_" + key.uppercased().replacingOccurrences(of: ".", with: "_"), value)
                            })
                    ).prefixKeys(with: "devid")
                ]))
            try Self.checkParsed(registry, into: overlay)
            // Only what the registry names replaces the base's values.
            overlay = Self.merge(base: base, overlay: overlay, keys: Set(registry.keys))
            source = overlay
        }
        var next = started
        next.ldevidPolicy = source.ldevidPolicy
        next.approvalRetryAfterSeconds = source.approvalRetryAfterSeconds
        next.unreachableAfter = source.unreachableAfter
        next.healthThresholds = source.healthThresholds
        // The enrollment cap and the bucket table's size are sized at start.
        var limits = source.rateLimits
        limits.maxEnrollmentsInFlight = started.rateLimits.maxEnrollmentsInFlight
        limits.renewalReserve = started.rateLimits.renewalReserve
        limits.maximumBuckets = started.rateLimits.maximumBuckets
        next.rateLimits = limits
        try next.ldevidPolicy.rotation.validate()
        try next.rateLimits.validateLive()
        if let lifetime = next.ldevidPolicy.lifetime, !(lifetime > 0) {
            throw ConfigurationError("ldevid.lifetime.days must be more than 0")
        }
        return next
    }

    /// A value the reader could not parse is ignored by `ServerConfiguration(reader:)` (the default stays): refuse it.
    private static func checkParsed(_ registry: [String: String], into overlay: ServerConfiguration) throws {
        for (key, value) in registry {
            let trimmed = value.trimmingCharacters(in: .whitespaces)
            let parses = key == "ldevid.require.new.key" ? ["true", "false"].contains(trimmed) : Double(trimmed)?.isFinite == true
            guard parses else {
                throw ConfigurationError("\(key): \(key == "ldevid.require.new.key" ? "true or false" : "a number") expected")
            }
        }
    }

    /// `base` with the values of `keys` taken from `overlay` (which holds defaults for every other key).
    private static func merge(base: ServerConfiguration, overlay: ServerConfiguration, keys: Set<String>)
        -> ServerConfiguration
    {
        var merged = base
        func take<T>(_ key: String, _ path: WritableKeyPath<ServerConfiguration, T>) {
            if keys.contains(key) { merged[keyPath: path] = overlay[keyPath: path] }
        }
        take("ldevid.lifetime.days", \.ldevidPolicy.lifetime)
        take("ldevid.backdate.seconds", \.ldevidPolicy.backdate)
        take("ldevid.require.new.key", \.ldevidPolicy.requireNewKeyOnReenroll)
        take("ldevid.renewal.fraction", \.ldevidPolicy.rotation.renewalFraction)
        take("ldevid.jitter.fraction", \.ldevidPolicy.rotation.jitterFraction)
        take("ldevid.overlap.hours", \.ldevidPolicy.rotation.overlap)
        take("ldevid.confidence.minutes", \.ldevidPolicy.rotation.confidence)
        take("ldevid.grace.days", \.ldevidPolicy.rotation.grace)
        take("ldevid.max.skew.seconds", \.ldevidPolicy.rotation.maxClockSkew)
        take("rotation.unreachable.hours", \.unreachableAfter)
        take("est.approval.retry.after.seconds", \.approvalRetryAfterSeconds)
        take("limits.source.per.second", \.rateLimits.perSource.perSecond)
        take("limits.source.burst", \.rateLimits.perSource.burst)
        take("limits.device.per.second", \.rateLimits.perDevice.perSecond)
        take("limits.device.burst", \.rateLimits.perDevice.burst)
        take("limits.claim.token.per.second", \.rateLimits.perClaimToken.perSecond)
        take("limits.claim.token.burst", \.rateLimits.perClaimToken.burst)
        take("limits.tenant.per.second", \.rateLimits.perTenant.perSecond)
        take("limits.tenant.burst", \.rateLimits.perTenant.burst)
        take("limits.global.per.second", \.rateLimits.global.perSecond)
        take("limits.global.burst", \.rateLimits.global.burst)
        take("limits.overload.retry.after.seconds", \.rateLimits.overloadRetryAfterSeconds)
        for (name, path) in HealthThresholds.names {
            if keys.contains("health." + name.replacingOccurrences(of: "_", with: ".")) {
                merged.healthThresholds[keyPath: path] = overlay.healthThresholds[keyPath: path]
            }
        }
        return merged
    }
}

extension LiveConfiguration {
    /// `key`'s value in `configuration`, in the key's unit (days, hours, per second, ...), as a file would hold it.
    public static func value(of key: String, in configuration: ServerConfiguration) -> String {
        let policy = configuration.ldevidPolicy
        let limits = configuration.rateLimits
        let number: Double
        switch key {
        case "ldevid.lifetime.days": number = (policy.lifetime ?? 0) / 86_400
        case "ldevid.backdate.seconds": number = policy.backdate
        case "ldevid.require.new.key": return policy.requireNewKeyOnReenroll ? "true" : "false"
        case "ldevid.renewal.fraction": number = policy.rotation.renewalFraction
        case "ldevid.jitter.fraction": number = policy.rotation.jitterFraction
        case "ldevid.overlap.hours": number = policy.rotation.overlap / 3_600
        case "ldevid.confidence.minutes": number = policy.rotation.confidence / 60
        case "ldevid.grace.days": number = policy.rotation.grace / 86_400
        case "ldevid.max.skew.seconds": number = policy.rotation.maxClockSkew
        case "rotation.unreachable.hours": number = configuration.unreachableAfter / 3_600
        case "est.approval.retry.after.seconds": number = Double(configuration.approvalRetryAfterSeconds)
        case "limits.source.per.second": number = limits.perSource.perSecond
        case "limits.source.burst": number = limits.perSource.burst
        case "limits.device.per.second": number = limits.perDevice.perSecond
        case "limits.device.burst": number = limits.perDevice.burst
        case "limits.claim.token.per.second": number = limits.perClaimToken.perSecond
        case "limits.claim.token.burst": number = limits.perClaimToken.burst
        case "limits.tenant.per.second": number = limits.perTenant.perSecond
        case "limits.tenant.burst": number = limits.perTenant.burst
        case "limits.global.per.second": number = limits.global.perSecond
        case "limits.global.burst": number = limits.global.burst
        case "limits.overload.retry.after.seconds": number = Double(limits.overloadRetryAfterSeconds)
        default:
            guard
                let path = HealthThresholds.names.first(where: {
                    "health." + $0.name.replacingOccurrences(of: "_", with: ".") == key
                })?.keyPath
            else { return "" }
            number = configuration.healthThresholds[keyPath: path]
        }
        if number == number.rounded(), abs(number) < 1e15 { return String(Int64(number)) }
        return String(format: "%.4g", number)
    }
}

/// A configuration value DevID refuses, with the one-line reason.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable {
    public let description: String
    public init(_ description: String) { self.description = description }
}

extension RateLimits {
    /// What a live change of the limits must keep: rates and bursts not negative, a `Retry-After` of a second or more.
    func validateLive() throws {
        for (name, rate) in [
            ("source", perSource), ("device", perDevice), ("claim.token", perClaimToken), ("tenant", perTenant),
            ("global", global),
        ] {
            guard rate.perSecond >= 0, rate.burst >= 0, rate.perSecond.isFinite, rate.burst.isFinite else {
                throw ConfigurationError("limits.\(name): per.second and burst must be 0 or more")
            }
        }
        guard overloadRetryAfterSeconds >= 1 else {
            throw ConfigurationError("limits.overload.retry.after.seconds must be 1 or more")
        }
    }
}
