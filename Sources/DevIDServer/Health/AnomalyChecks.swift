public import DevIDCore
public import DevIDStore
public import Foundation

/// An open finding of an anomaly check: what, how bad, about whom, why it matters and what to do.
public struct Anomaly: Sendable, Hashable, Codable {
    public enum Severity: String, Sendable, Hashable, Codable, Comparable {
        case warning, critical

        public static func < (lhs: Self, rhs: Self) -> Bool { lhs == .warning && rhs == .critical }
    }

    public var check: String
    public var severity: Severity
    /// One line naming the subject: `device dev-7: revoked credential 7e57 presented 12 times (est)`.
    public var summary: String
    public var explanation: String
    public var action: String
    public var tenant: String?
    public var device: String?
    public var serial: String?
    public var firstSeen: Date?
    public var lastSeen: Date?
}

/// Everything the checks judge, read at one moment: registry aggregates, CA and CRL dates, recent events.
public struct HealthInputs: Sendable {
    public var now: Date
    public var thresholds: HealthThresholds
    /// Every CA certificate by name, with its notAfter.
    public var cas: [(name: String, notAfter: Date)] = []
    public var crls: [(name: String, thisUpdate: Date, nextUpdate: Date)] = []
    /// When the root's last pre-signed CRL ends (nil: none were signed).
    public var rootCRLsSignedUntil: Date?
    public var ocspSigners: [(ca: String, notAfter: Date)] = []
    /// Current LDevIDs by whole days left, per tenant (``Store/expiryByDay(now:days:)``).
    public var expiryByDay: [TenantID: [Int]] = [:]
    /// Every current LDevID per tenant (beyond the day horizon too).
    public var currentCredentials: [TenantID: Int] = [:]
    public var stale = StaleDevices(count: 0, oldest: [])
    /// The stale threshold the stale devices were read with, in seconds.
    public var staleAfter: TimeInterval = 0
    /// The LDevID lifetime, which scales `expiry_wave`'s threshold (``HealthThresholds/expiryWavePercent(lifetime:)``);
    /// nil: the configured percentage alone.
    public var ldevidLifetime: TimeInterval?
    public var events = IdentityWatch.Snapshot()
    /// Refused enrollments in the last hour, and in the 24 hours before it.
    public var refusalsLastHour = 0
    public var refusalsDayBefore = 0
    /// Trusted external manufacturer CAs with a weak key or signature: name and weakness.
    public var weakManufacturers: [(name: String, weakness: String)] = []

    public init(now: Date, thresholds: HealthThresholds) {
        self.now = now
        self.thresholds = thresholds
    }
}

/// The anomaly checks, as pure functions of ``HealthInputs``, in the manner of AWS IoT Device Defender's audit
/// checks: each yields findings with a severity, an explanation and a suggested action.
public enum AnomalyChecks {
    /// Every check's name, in the order they are reported.
    public static let names = [
        "revoked_credential_in_use", "shared_credential", "conflicting_client_id", "expiry_wave", "stale_device",
        "ca_expiring", "crl_stale", "ocsp_signer_expiring", "bulk_token_overused", "enrollment_refusal_spike",
        "weak_key",
    ]

    /// At most this many findings per check (the count in the summary covers the rest).
    public static let maximumFindings = 100

    public static func run(_ check: String, _ inputs: HealthInputs) -> [Anomaly] {
        let findings: [Anomaly]
        switch check {
        case "revoked_credential_in_use": findings = revokedCredentialInUse(inputs)
        case "shared_credential": findings = sharedCredential(inputs)
        case "conflicting_client_id": findings = conflictingClientID(inputs)
        case "expiry_wave": findings = expiryWave(inputs)
        case "stale_device": findings = staleDevice(inputs)
        case "ca_expiring": findings = caExpiring(inputs)
        case "crl_stale": findings = crlStale(inputs)
        case "ocsp_signer_expiring": findings = ocspSignerExpiring(inputs)
        case "bulk_token_overused": findings = bulkTokenOverused(inputs)
        case "enrollment_refusal_spike": findings = refusalSpike(inputs)
        case "weak_key": findings = weakKey(inputs)
        default: findings = []
        }
        return Array(findings.prefix(maximumFindings))
    }

    static func revokedCredentialInUse(_ inputs: HealthInputs) -> [Anomaly] {
        inputs.events.suspects.map { use in
            let credential = use.serial.map { "credential \($0)" } ?? "credential"
            let from = use.sources.isEmpty ? "" : " from \(use.sources.joined(separator: ", "))"
            return Anomaly(
                check: "revoked_credential_in_use", severity: .critical,
                summary:
                    "device \(use.device): \(use.reason) \(credential) presented \(use.attempts) time\(use.attempts == 1 ? "" : "s") (\(use.stage))\(from)",
                explanation:
                    "A certificate that DevID revoked or replaced is still trying to authenticate: the device was not reset, or the key is in someone else's hands.",
                action:
                    "Find the sender by its address; if the device was not expected to use this credential, keep it revoked and reprovision the device (devid device reprovision).",
                tenant: use.tenant?.rawValue, device: use.device.rawValue, serial: use.serial?.rawValue,
                firstSeen: use.firstSeen, lastSeen: use.lastSeen)
        }
    }

    static func sharedCredential(_ inputs: HealthInputs) -> [Anomaly] {
        inputs.events.shared.map { use in
            Anomaly(
                check: "shared_credential", severity: .critical,
                summary:
                    "device \(use.device): credential \(use.serial) used from \(use.sources.count) addresses at once (\(use.sources.joined(separator: ", ")))",
                explanation:
                    "One LDevID authenticated from two or more source addresses within the same window: its private key was copied, or devices share an identity.",
                action: "Revoke the credential (devid revoke --serial) and reprovision the device; look for cloned images.",
                tenant: use.tenant.rawValue, device: use.device.rawValue, serial: use.serial.rawValue,
                firstSeen: use.firstSeen, lastSeen: use.lastSeen)
        }
    }

    static func conflictingClientID(_ inputs: HealthInputs) -> [Anomaly] {
        inputs.events.conflicts.map { conflict in
            Anomaly(
                check: "conflicting_client_id", severity: .warning,
                summary:
                    "device \(conflict.device): \(conflict.connections.count) connections claimed it (\(conflict.connections.joined(separator: ", ")))",
                explanation:
                    "The broker asked about two connections for one device id with different credentials or from different addresses: one of them may be an impostor, or a device reconnects in a loop.",
                action:
                    "Compare the connections' addresses with the device's location; if one is foreign, revoke the device's credentials and reprovision it.",
                tenant: conflict.tenant?.rawValue, device: conflict.device.rawValue, serial: nil,
                firstSeen: conflict.firstSeen, lastSeen: conflict.lastSeen)
        }
    }

    static func expiryWave(_ inputs: HealthInputs) -> [Anomaly] {
        var findings: [Anomaly] = []
        let percent = inputs.thresholds.expiryWavePercent(lifetime: inputs.ldevidLifetime)
        for (tenant, days) in inputs.expiryByDay.sorted(by: { $0.key < $1.key }) {
            let total = inputs.currentCredentials[tenant] ?? days.reduce(0, +)
            guard total > 0, Double(total) >= inputs.thresholds.expiryWaveMinCredentials else { continue }
            // The busiest 7 consecutive days.
            var best = (start: 0, count: 0)
            var window = 0
            for day in days.indices {
                window += days[day]
                if day >= 7 { window -= days[day - 7] }
                if window > best.count {
                    // The wave starts at its first day with an expiry, not at the window's edge.
                    let start = (max(0, day - 6)...day).first { days[$0] > 0 } ?? day
                    best = (start, window)
                }
            }
            let share = Double(best.count) * 100 / Double(total)
            guard share > percent else { continue }
            let from = inputs.now.addingTimeInterval(Double(best.start) * 86_400)
            findings.append(
                Anomaly(
                    check: "expiry_wave", severity: best.start < 7 ? .critical : .warning,
                    summary:
                        "tenant \(tenant): \(best.count) of \(total) credentials (\(Int(share.rounded())) %) expire in the 7 days from \(Self.day(from))",
                    explanation:
                        "A large share of a tenant's identities expire together: one missed renewal window (an outage, a broker change) becomes a fleet-wide outage.",
                    action:
                        "Spread the renewals: start a rotation campaign for part of the tenant now (devid rotate mark --tenant), and check that those devices renew.",
                    tenant: tenant.rawValue, device: nil, serial: nil, firstSeen: from, lastSeen: nil))
        }
        return findings
    }

    static func staleDevice(_ inputs: HealthInputs) -> [Anomaly] {
        let days = Int((inputs.staleAfter / 86_400).rounded())
        return inputs.stale.oldest.map { entry in
            let last = entry.lastSeen.map { "last seen \(Self.day($0))" } ?? "never seen since it enrolled"
            return Anomaly(
                check: "stale_device", severity: .warning,
                summary: "device \(entry.device): \(last), over \(days) days ago",
                explanation:
                    "The device has not checked in for longer than its renewal window: its LDevID will expire before it can renew, and it will fall off the network.",
                action:
                    "Bring the device online (power, network, agent running); if it is gone, decommission it (devid device decommission).",
                tenant: entry.tenant.rawValue, device: entry.device.rawValue, serial: nil, firstSeen: nil,
                lastSeen: entry.lastSeen)
        }
    }

    static func caExpiring(_ inputs: HealthInputs) -> [Anomaly] {
        inputs.cas.compactMap { ca in
            let days = ca.notAfter.timeIntervalSince(inputs.now) / 86_400
            let severity: Anomaly.Severity
            if days < inputs.thresholds.caCriticalDays {
                severity = .critical
            } else if days < inputs.thresholds.caWarningDays {
                severity = .warning
            } else {
                return nil
            }
            return Anomaly(
                check: "ca_expiring", severity: severity,
                summary:
                    days <= 0
                    ? "CA \(ca.name) expired on \(Self.day(ca.notAfter))"
                    : "CA \(ca.name) expires on \(Self.day(ca.notAfter)), in \(Int(days.rounded(.down))) days",
                explanation:
                    "When a CA certificate expires, every certificate under it stops validating at once, whatever its own dates.",
                action: "Plan the CA rollover now (docs/runbooks), and publish the new CA to every relying party.",
                tenant: nil, device: nil, serial: nil, firstSeen: nil, lastSeen: ca.notAfter)
        }
    }

    /// A root ceremony must sign more root CRLs before the last one ends: a warning 60 days ahead.
    static let rootCRLWarning: TimeInterval = 60 * 86_400

    static func crlStale(_ inputs: HealthInputs) -> [Anomaly] {
        var findings: [Anomaly] = []
        if let until = inputs.rootCRLsSignedUntil, until.timeIntervalSince(inputs.now) < rootCRLWarning {
            findings.append(
                Anomaly(
                    check: "crl_stale", severity: until <= inputs.now ? .critical : .warning,
                    summary: "the root's pre-signed CRLs run out at \(Self.time(until))",
                    explanation:
                        "The root key is offline, so the root's CRLs are signed ahead at root ceremonies. When the last one ends, strict relying parties refuse every LDevID's chain.",
                    action: "Hold a root ceremony: devid ca root-crl --root-key FILE signs the next 13 months.",
                    tenant: nil, device: nil, serial: nil, firstSeen: nil, lastSeen: until))
        }
        return findings + inputs.crls.compactMap { crl in
            let validity = max(1, crl.nextUpdate.timeIntervalSince(crl.thisUpdate))
            let left = crl.nextUpdate.timeIntervalSince(inputs.now)
            let severity: Anomaly.Severity
            if left <= 0 {
                severity = .critical
            } else if left / validity < inputs.thresholds.crlWarningFraction {
                severity = .warning
            } else {
                return nil
            }
            return Anomaly(
                check: "crl_stale", severity: severity,
                summary:
                    left <= 0
                    ? "CRL \(crl.name) is past its nextUpdate (\(Self.time(crl.nextUpdate)))"
                    : "CRL \(crl.name) reaches its nextUpdate at \(Self.time(crl.nextUpdate)) and was not re-signed",
                explanation:
                    "Relying parties that check revocation refuse every certificate once the CRL is past its nextUpdate.",
                action: "Check the server's log for signing errors, then re-sign it (devid crl publish).",
                tenant: nil, device: nil, serial: nil, firstSeen: crl.thisUpdate, lastSeen: crl.nextUpdate)
        }
    }

    static func ocspSignerExpiring(_ inputs: HealthInputs) -> [Anomaly] {
        inputs.ocspSigners.compactMap { signer in
            let hours = signer.notAfter.timeIntervalSince(inputs.now) / 3_600
            guard hours < inputs.thresholds.ocspSignerWarningHours else { return nil }
            return Anomaly(
                check: "ocsp_signer_expiring", severity: hours <= 0 ? .critical : .warning,
                summary: "OCSP signer of CA \(signer.ca) expires at \(Self.time(signer.notAfter))",
                explanation:
                    "OCSP responses signed by an expired delegated signer are rejected by every client that checks revocation.",
                action: "The signer is renewed on the next OCSP request after it nears expiry; check the server's log.",
                tenant: nil, device: nil, serial: nil, firstSeen: nil, lastSeen: signer.notAfter)
        }
    }

    static func bulkTokenOverused(_ inputs: HealthInputs) -> [Anomaly] {
        inputs.events.tokens.map { use in
            Anomaly(
                check: "bulk_token_overused", severity: use.attempts >= 3 ? .critical : .warning,
                summary:
                    "claim token \(use.token): presented \(use.attempts) time\(use.attempts == 1 ? "" : "s") after it was \(use.reason)",
                explanation:
                    "Enrollments keep arriving with a token that has no uses left or was revoked: more devices hold it than it was issued for, or it leaked.",
                action:
                    "Revoke the token and what it enrolled if in doubt (devid revoke --token), and issue one token per device or batch.",
                tenant: use.tenant?.rawValue, device: nil, serial: nil, firstSeen: use.firstSeen,
                lastSeen: use.lastSeen)
        }
    }

    static func refusalSpike(_ inputs: HealthInputs) -> [Anomaly] {
        let average = Double(inputs.refusalsDayBefore) / 24
        let last = Double(inputs.refusalsLastHour)
        guard last >= inputs.thresholds.refusalSpikeMin, last >= inputs.thresholds.refusalSpikeFactor * average
        else { return [] }
        return [
            Anomaly(
                check: "enrollment_refusal_spike", severity: .warning,
                summary:
                    "\(inputs.refusalsLastHour) enrollments refused in the last hour (hourly average of the day before: \(String(format: "%.1f", average)))",
                explanation:
                    "A burst of refused enrollments is a misconfigured batch, an expired token campaign, or someone probing the enrollment endpoint.",
                action:
                    "Look at devid_auth_failures_total by reason and the audit trail (devid audit list --outcome denied).",
                tenant: nil, device: nil, serial: nil, firstSeen: nil, lastSeen: inputs.now)
        ]
    }

    static func weakKey(_ inputs: HealthInputs) -> [Anomaly] {
        inputs.events.weakKeys.map { key in
            Anomaly(
                check: "weak_key", severity: .warning,
                summary: "IDevID of hardware serial \(key.hardwareSerial): \(key.weakness)",
                explanation:
                    "An imported IDevID is protected by a key or signature that can be broken or forged: the factory identity proves little.",
                action:
                    "Ask the manufacturer for devices with P-256 or RSA-2048+ keys and SHA-256 signatures; bind such devices with claim tokens instead.",
                tenant: nil, device: nil, serial: key.serial?.rawValue, firstSeen: nil, lastSeen: key.lastSeen)
        }
            + inputs.weakManufacturers.map { ca in
                Anomaly(
                    check: "weak_key", severity: .warning, summary: "manufacturer CA \(ca.name): \(ca.weakness)",
                    explanation: "A trusted manufacturer CA with a weak key or signature lets anyone mint IDevIDs.",
                    action: "Remove the CA from the trusted manufacturers, or bind its devices to pinned IDevIDs.",
                    tenant: nil, device: nil, serial: nil, firstSeen: nil, lastSeen: nil)
            }
    }

    static func day(_ date: Date) -> String {
        String(Self.time(date).prefix(10))
    }

    static func time(_ date: Date) -> String {
        date.formatted(.iso8601)
    }
}
