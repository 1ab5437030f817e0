import Crypto
public import DevIDCore
public import Foundation

/// The audit trail's hash chain, shared by every backend so that they all chain and verify alike.
///
/// Each entry's `hash` covers `previousHash + "|" + canonicalContent` (see ``AuditEvent/canonicalContent``), where
/// the content is computed from the strings the store holds, after it has assigned the sequence. The first entry's
/// `previousHash` is ``genesis``.
///
/// - A store opened with an ``AuditKey`` writes **keyed** entries: `hash = hex HMAC-SHA256(key, input)`. The key is
///   not in the database, so someone who can write the database cannot recompute the chain after editing it.
/// - A store without a key (and installations before keyed chains) wrote **plain** entries:
///   `hash = hex SHA-256(input)`. Plain entries verify as a legacy prefix; once a keyed entry appears, every later
///   entry must be keyed.
///
/// Values are bounded and made single-line before they are chained (``normalized(_:)``), so whatever an attacker
/// puts in a certificate or a request, the row written can always be read back and verified.
public enum AuditChain {
    /// The `previousHash` of the first entry: 64 zeros.
    public static let genesis = String(repeating: "0", count: 64)

    /// The longest `actor`, `action` and `reason` kept, in Unicode scalars; longer values are cut and marked.
    public static let maximumActorLength = 200
    public static let maximumActionLength = 100
    public static let maximumReasonLength = 1000
    /// What a cut value ends with.
    public static let truncationMarker = "…[truncated]"

    /// The plain (unkeyed, legacy) chain hash of an entry whose predecessor's hash is `previous`.
    public static func hash(previous: String, content: String) -> String {
        Hex.encode(SHA256.hash(data: Data((previous + "|" + content).utf8)))
    }

    /// The keyed chain hash of an entry whose predecessor's hash is `previous`.
    public static func hash(previous: String, content: String, key: AuditKey) -> String {
        key.mac(previous + "|" + content)
    }

    /// `event` as it will be stored: time rounded to milliseconds (the precision stores keep), and `actor`, `action`
    /// and `reason` bounded and stripped of control, format and line-separator characters (each replaced by U+FFFD).
    public static func normalized(_ event: AuditEvent) -> AuditEvent {
        var event = event
        event.time = StoreTime.normalized(event.time)
        event.actor = bounded(event.actor, maximumActorLength)
        event.action = bounded(event.action, maximumActionLength)
        event.reason = bounded(event.reason, maximumReasonLength)
        return event
    }

    /// One line of at most `limit` scalars (plus ``truncationMarker`` when cut).
    public static func bounded(_ value: String, _ limit: Int) -> String {
        // Nearly every value is short printable ASCII, which needs no Unicode property lookup: kept as it is.
        if value.utf8.count <= limit, value.utf8.allSatisfy({ $0 >= 0x20 && $0 < 0x7F }) { return value }
        var scalars = String.UnicodeScalarView()
        var count = 0
        for scalar in value.unicodeScalars {
            if count == limit { return String(scalars) + truncationMarker }
            switch scalar.properties.generalCategory {
            case .control, .format, .lineSeparator, .paragraphSeparator, .surrogate, .privateUse, .unassigned:
                scalars.append("\u{FFFD}")
            default:
                scalars.append(scalar)
            }
            count += 1
        }
        return String(scalars)
    }

    /// Fills in `event`'s sequence and hashes so that it follows an entry with `previousSequence` and
    /// `previousHash` (nil for the first entry), after normalizing it. `mac` gives the keyed hash of a chain input,
    /// or nil when the store has no key (the entry is then chained with plain SHA-256).
    static func chained(
        _ event: AuditEvent, afterSequence previousSequence: Int64?, hash previousHash: String?,
        mac: (String) throws -> String?
    ) rethrows -> AuditEvent {
        var event = normalized(event)
        event.sequence = (previousSequence ?? 0) + 1
        event.previousHash = previousHash ?? genesis
        let input = event.previousHash + "|" + AuditEntry(event).canonicalContent
        event.hash = try mac(input) ?? Hex.encode(SHA256.hash(data: Data(input.utf8)))
        return event
    }
}

/// The secret that keys the audit chain. Held outside the database (see `DataDirectory`); never logged.
public struct AuditKey: Sendable {
    private let key: SymmetricKey

    /// Derives the chain key from `secret` (at least 32 random bytes) with HKDF-SHA256.
    public init(secret: some DataProtocol) {
        key = HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: Array(secret)), salt: Array("devid-audit".utf8),
            info: Array("audit-chain-hmac-sha256-v1".utf8), outputByteCount: 32)
    }

    /// Lowercase hex HMAC-SHA256 of `input`'s UTF-8.
    public func mac(_ input: String) -> String {
        Hex.encode(HMAC<SHA256>.authenticationCode(for: Array(input.utf8), using: key))
    }
}

extension AuditKey: CustomStringConvertible {
    public var description: String { "AuditKey(<redacted>)" }
}

/// One audit row exactly as stored: the strings the chain hashes, with no re-parsing. Listing and export use it, so
/// an odd row (edited by hand, or written by an older version) is shown as it is rather than failing the request.
///
/// Its JSON has the keys of ``AuditEvent`` (`time` is the date) plus `timeMillis`, the integer the hash covers.
public struct AuditEntry: Sendable, Hashable, Codable {
    public var sequence: Int64
    /// Milliseconds since 1970, as stored and hashed.
    public var timeMillis: Int64
    public var actor: String
    public var action: String
    public var outcome: String
    public var reason: String
    public var tenant: String?
    public var device: String?
    public var serial: String?
    public var previousHash: String
    public var hash: String

    public var time: Date { StoreTime.date(milliseconds: timeMillis) }

    public init(
        sequence: Int64, timeMillis: Int64, actor: String, action: String, outcome: String, reason: String,
        tenant: String?, device: String?, serial: String?, previousHash: String, hash: String
    ) {
        self.sequence = sequence
        self.timeMillis = timeMillis
        self.actor = actor
        self.action = action
        self.outcome = outcome
        self.reason = reason
        self.tenant = tenant
        self.device = device
        self.serial = serial
        self.previousHash = previousHash
        self.hash = hash
    }

    /// The stored form of a (normalized, chained) event.
    public init(_ event: AuditEvent) {
        self.init(
            sequence: event.sequence, timeMillis: StoreTime.milliseconds(event.time), actor: event.actor,
            action: event.action, outcome: event.outcome.rawValue, reason: event.reason,
            tenant: event.tenant?.rawValue, device: event.device?.rawValue, serial: event.serial?.rawValue,
            previousHash: event.previousHash, hash: event.hash)
    }

    /// The bytes the chain hash covers: every field but the hashes, in a fixed order, each prefixed with its UTF-8
    /// length. Equal to ``AuditEvent/canonicalContent`` of the event this row was written from.
    public var canonicalContent: String {
        [
            String(sequence), String(timeMillis), actor, action, outcome, reason, tenant ?? "", device ?? "",
            serial ?? "",
        ].map { "\($0.utf8.count):\($0)" }.joined(separator: "|")
    }

    /// The typed event, or nil if a field no longer parses (the row was edited, or predates a stricter type).
    public var event: AuditEvent? {
        guard let outcome = AuditEvent.Outcome(rawValue: outcome) else { return nil }
        var event = AuditEvent(time: time, actor: actor, action: action, outcome: outcome, reason: reason)
        if let tenant {
            guard let id = TenantID(rawValue: tenant) else { return nil }
            event.tenant = id
        }
        if let device {
            guard let id = DeviceID(rawValue: device) else { return nil }
            event.device = id
        }
        if let serial {
            guard let value = SerialNumber(rawValue: serial) else { return nil }
            event.serial = value
        }
        event.sequence = sequence
        event.previousHash = previousHash
        event.hash = hash
        return event
    }

    private enum CodingKeys: String, CodingKey {
        case sequence, time, timeMillis, actor, action, outcome, reason, tenant, device, serial, previousHash, hash
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        sequence = try container.decode(Int64.self, forKey: .sequence)
        if let millis = try container.decodeIfPresent(Int64.self, forKey: .timeMillis) {
            timeMillis = millis
        } else {
            timeMillis = StoreTime.milliseconds(try container.decode(Date.self, forKey: .time))
        }
        actor = try container.decode(String.self, forKey: .actor)
        action = try container.decode(String.self, forKey: .action)
        outcome = try container.decode(String.self, forKey: .outcome)
        reason = try container.decodeIfPresent(String.self, forKey: .reason) ?? ""
        tenant = try container.decodeIfPresent(String.self, forKey: .tenant)
        device = try container.decodeIfPresent(String.self, forKey: .device)
        serial = try container.decodeIfPresent(String.self, forKey: .serial)
        previousHash = try container.decode(String.self, forKey: .previousHash)
        hash = try container.decode(String.self, forKey: .hash)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(sequence, forKey: .sequence)
        try container.encode(time, forKey: .time)
        try container.encode(timeMillis, forKey: .timeMillis)
        try container.encode(actor, forKey: .actor)
        try container.encode(action, forKey: .action)
        try container.encode(outcome, forKey: .outcome)
        try container.encode(reason, forKey: .reason)
        try container.encodeIfPresent(tenant, forKey: .tenant)
        try container.encodeIfPresent(device, forKey: .device)
        try container.encodeIfPresent(serial, forKey: .serial)
        try container.encode(previousHash, forKey: .previousHash)
        try container.encode(hash, forKey: .hash)
    }
}

/// A signed statement of where the chain's head was (a checkpoint kept outside the registry), to verify against.
public struct AuditAnchor: Sendable, Hashable {
    /// The head's sequence when the checkpoint was taken.
    public var sequence: Int64
    /// The head's hash then.
    public var hash: String
    /// The first keyed entry then (nil if none was keyed): entries from it on must be keyed.
    public var keyedFrom: Int64?
    /// When the checkpoint was taken (milliseconds since 1970, the trail's clock), if known: an entry at or before
    /// `sequence` that is newer was appended after entries the checkpoint covered had been deleted.
    public var timeMillis: Int64?

    public init(sequence: Int64, hash: String, keyedFrom: Int64?, timeMillis: Int64? = nil) {
        self.sequence = sequence
        self.hash = hash
        self.keyedFrom = keyedFrom
        self.timeMillis = timeMillis
    }
}

/// The result of walking the whole chain: intact, or the first thing wrong with it.
public struct AuditChainReport: Sendable, Hashable {
    /// What is wrong, at the first entry where it shows.
    public enum Finding: Sendable, Hashable {
        /// The entry's hash does not match its stored content (keyed or plain): a field was changed.
        case edited(sequence: Int64)
        /// Entries `from...through` are absent while later ones exist: deleted from the middle (or the start).
        case missing(from: Int64, through: Int64)
        /// Entries after `last` are absent, but a signed checkpoint covers up to `checkpoint`: deleted at the tail
        /// (entries appended since then may have taken their sequence numbers).
        case truncated(last: Int64, checkpoint: Int64)
        /// The entry hashes consistently but is not keyed although keyed entries precede it (or the checkpoint says
        /// they began): the chain was recomputed without the key from here on.
        case recomputed(sequence: Int64)
        /// The entry at a signed checkpoint has a different hash than the checkpoint: the chain was recomputed.
        case checkpointMismatch(sequence: Int64)
        /// The entry hashes consistently but names a different predecessor hash.
        case relinked(sequence: Int64)
    }

    public var finding: Finding?
    /// Entries checked and found in order before the finding (all of them when intact).
    public var checked: Int64
    /// The last entry's sequence and hash (nil for an empty trail); set only when intact.
    public var headSequence: Int64?
    public var headHash: String?
    /// The first keyed entry (nil if none).
    public var keyedFrom: Int64?
    /// The anchor verified against, if any.
    public var anchor: AuditAnchor?

    public var isIntact: Bool { finding == nil }

    /// The sequence where the chain first goes wrong: the first entry that does not fit (after a gap, the entry
    /// found where an earlier one was expected); for a tail deletion, the first missing one.
    public var brokenSequence: Int64? {
        switch finding {
        case nil: nil
        case .edited(let sequence), .recomputed(let sequence), .checkpointMismatch(let sequence),
            .relinked(let sequence):
            sequence
        case .missing(_, let through): through + 1
        case .truncated(let last, _): last + 1
        }
    }

    /// A stable code: `intact`, `edited`, `missing`, `truncated`, `recomputed`, `relinked`.
    public var code: String {
        switch finding {
        case nil: "intact"
        case .edited: "edited"
        case .missing: "missing"
        case .truncated: "truncated"
        case .recomputed, .checkpointMismatch: "recomputed"
        case .relinked: "relinked"
        }
    }

    /// One line for people, distinct per finding.
    public var summary: String {
        guard let finding, let broken = brokenSequence else {
            var parts = ["audit chain intact: \(checked) \(checked == 1 ? "entry" : "entries")"]
            if let keyedFrom { parts.append("keyed from sequence \(keyedFrom)") } else if checked > 0 {
                parts.append("not keyed")
            }
            if let anchor { parts.append("signed checkpoint at sequence \(anchor.sequence) matches") }
            return parts.joined(separator: ", ")
        }
        let prefix = "audit chain broken at sequence \(broken): "
        switch finding {
        case .edited(let sequence):
            return prefix + "entry \(sequence) was edited (its hash does not match its content)"
        case .missing(let from, let through):
            let which = from == through ? "entry \(from) is" : "entries \(from)-\(through) are"
            return prefix + "\(which) missing (deleted from the middle of the trail)"
        case .truncated(let last, let checkpoint):
            return prefix
                + "entries after \(last) are missing (deleted from the end: the signed checkpoint covers \(checkpoint))"
        case .recomputed(let sequence):
            return prefix
                + "the chain was recomputed from entry \(sequence) on (consistent hashes, but not keyed with the audit key)"
        case .checkpointMismatch(let sequence):
            return prefix + "the chain was recomputed (entry \(sequence) does not match the signed checkpoint)"
        case .relinked(let sequence):
            return prefix + "entry \(sequence) does not link to the entry before it (previousHash differs)"
        }
    }
}

extension AuditChain {
    /// Walks the trail in ascending sequence order and reports the first entry that does not fit.
    struct Verifier {
        let key: AuditKey?
        let anchor: AuditAnchor?
        private var expectedSequence: Int64 = 1
        private var previousHash = AuditChain.genesis
        private var keyedFrom: Int64?
        private var checked: Int64 = 0
        /// The first entry newer than the anchor's time.
        private var firstAfterAnchor: Int64?
        private(set) var finding: AuditChainReport.Finding?

        init(key: AuditKey?, anchor: AuditAnchor?) {
            self.key = key
            self.anchor = anchor
        }

        /// Checks the next entry; returns false (and keeps the finding) at the first one that does not fit.
        mutating func accept(_ entry: AuditEntry) -> Bool {
            guard finding == nil else { return false }
            if let problem = check(entry) {
                finding = problem
                return false
            }
            expectedSequence += 1
            previousHash = entry.hash
            checked += 1
            return true
        }

        private mutating func check(_ entry: AuditEntry) -> AuditChainReport.Finding? {
            if entry.sequence != expectedSequence {
                return entry.sequence > expectedSequence
                    ? .missing(from: expectedSequence, through: entry.sequence - 1) : .edited(sequence: entry.sequence)
            }
            let input = entry.previousHash + "|" + entry.canonicalContent
            if let key, key.mac(input) == entry.hash {
                if keyedFrom == nil { keyedFrom = entry.sequence }
            } else {
                guard Hex.encode(SHA256.hash(data: Data(input.utf8))) == entry.hash else {
                    return .edited(sequence: entry.sequence)
                }
                let mustBeKeyed = keyedFrom != nil || (anchor?.keyedFrom.map { entry.sequence >= $0 } ?? false)
                if mustBeKeyed { return .recomputed(sequence: entry.sequence) }
            }
            guard entry.previousHash == previousHash else { return .relinked(sequence: entry.sequence) }
            if let anchor, firstAfterAnchor == nil, let time = anchor.timeMillis, entry.timeMillis > time {
                firstAfterAnchor = entry.sequence
            }
            if let anchor, anchor.sequence == entry.sequence, anchor.hash != entry.hash {
                // Newer than the checkpoint yet within it: the covered entries from there on were deleted, and the
                // server has appended since.
                if let first = firstAfterAnchor { return .truncated(last: first - 1, checkpoint: anchor.sequence) }
                return .checkpointMismatch(sequence: entry.sequence)
            }
            return nil
        }

        /// The report once every entry has been offered.
        mutating func finish() -> AuditChainReport {
            if finding == nil, let anchor, anchor.sequence >= expectedSequence {
                finding = .truncated(last: expectedSequence - 1, checkpoint: anchor.sequence)
            }
            let intact = finding == nil
            return AuditChainReport(
                finding: finding, checked: checked, headSequence: intact && checked > 0 ? expectedSequence - 1 : nil,
                headHash: intact && checked > 0 ? previousHash : nil, keyedFrom: keyedFrom, anchor: anchor)
        }
    }
}
