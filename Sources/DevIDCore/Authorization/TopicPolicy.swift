/// What a device may do with a topic.
public enum TopicAction: String, Sendable, Codable, Hashable, CaseIterable {
    case publish
    case subscribe
    /// Both publish and subscribe.
    case all

    public func permits(_ requested: TopicAction) -> Bool { self == .all || self == requested }
}

/// One rule of a tenant's topic policy: an action and a topic-filter template.
///
/// The template is an MQTT topic filter whose levels may be exactly one of the variables `{tenant}`, `{device}`
/// (the device id, the LDevID's CN) or `{lot}` (the device's manufacturing lot; a rule naming `{lot}` does not
/// apply to a device without one). Every template begins with the levels `tenants/{tenant}`, so no rule can reach
/// another tenant's topics. No control character (``ControlCharacters``) may appear anywhere in it.
public struct TopicRule: Sendable, Hashable, Codable {
    public var action: TopicAction
    public var topic: String

    public init(_ action: TopicAction, _ topic: String) {
        self.action = action
        self.topic = topic
    }
}

/// A tenant's topic policy and the API scopes its devices hold towards HTTP relying parties.
///
/// Stored with the tenant (``TenantPolicy/topics``); a tenant without one gets ``default``.
public struct TopicPolicy: Sendable, Hashable, Codable {
    public var rules: [TopicRule]
    /// Scopes every active device of the tenant holds (e.g. `telemetry:write`), for `POST /v1/authz/http`.
    public var scopes: [String]

    public static let maximumRules = 256
    public static let maximumScopes = 256
    public static let maximumScopeLength = 128

    public init(rules: [TopicRule], scopes: [String] = []) {
        self.rules = rules
        self.scopes = scopes
    }

    /// The policy of a tenant that has none of its own: each device publishes its telemetry, receives its
    /// commands, and hears the tenant's broadcasts.
    public static let `default` = TopicPolicy(rules: [
        TopicRule(.publish, "tenants/{tenant}/devices/{device}/telemetry/#"),
        TopicRule(.subscribe, "tenants/{tenant}/devices/{device}/commands/#"),
        TopicRule(.subscribe, "tenants/{tenant}/broadcast"),
    ])

    private enum CodingKeys: String, CodingKey { case rules, scopes }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        self.rules = try container.decode([TopicRule].self, forKey: .rules)
        self.scopes = try container.decodeIfPresent([String].self, forKey: .scopes) ?? []
    }

    /// Throws `.invalidPolicy` with a one-line reason naming the first bad rule or scope (by position, from 1).
    public func validate() throws(DevIDCoreError) {
        _ = try CompiledTopicPolicy(self)
    }

    /// Whether `scope` is well formed: 1–128 characters of `A-Z a-z 0-9 . _ - : /`.
    public static func isValidScope(_ scope: String) -> Bool {
        guard !scope.isEmpty, scope.utf8.count <= maximumScopeLength else { return false }
        return scope.utf8.allSatisfy { byte in
            switch byte {
            case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "."), UInt8(ascii: "_"), UInt8(ascii: "-"),
                UInt8(ascii: ":"), UInt8(ascii: "/"):
                return true
            default:
                return false
            }
        }
    }
}

/// The values a rule's variables take for one device.
public struct TopicBinding: Sendable, Hashable {
    public var tenant: TenantID
    public var device: DeviceID
    public var lot: LotID?

    public init(tenant: TenantID, device: DeviceID, lot: LotID?) {
        self.tenant = tenant
        self.device = device
        self.lot = lot
    }
}

/// The outcome of checking one topic against a policy.
public enum TopicVerdict: Sendable, Hashable {
    case allowed
    /// The topic names another tenant (`tenants/<other>/...`).
    case wrongTenant
    case notAllowed
    /// The topic is not a valid MQTT topic name (publish) or filter (subscribe); the reason is one line.
    case invalid(String)
    /// The device's tenant or device id has a `.` (stored before new ids were refused one): in a RabbitMQ routing
    /// key it cannot be told from a level separator, so no topic is decided for it there.
    case dottedIdentifier
}

/// The tenant and device ids that hold a `.`, stored before new ids were refused one
/// (``IdentifierRules/isValidNew(_:)``). On RabbitMQ, where `/` becomes `.`, their topics share routing keys with
/// other ids' topics (`tenants/acme.eu/x` and `tenants/acme/eu/x` are both `tenants.acme.eu.x`).
public struct DottedIdentifiers: Sendable, Hashable {
    public var tenants: Set<TenantID>
    public var devices: Set<DeviceID>

    public init(tenants: Set<TenantID> = [], devices: Set<DeviceID> = []) {
        self.tenants = tenants
        self.devices = devices
    }

    public var isEmpty: Bool { tenants.isEmpty && devices.isEmpty }
}

/// A validated topic policy, its templates parsed into levels once, so a decision is a walk over a few levels.
public struct CompiledTopicPolicy: Sendable, Hashable {
    enum TemplateLevel: Sendable, Hashable {
        case literal(Substring)
        case tenant, device, lot
        case single, multi
    }

    struct Rule: Sendable, Hashable {
        var action: TopicAction
        var levels: [TemplateLevel]
        var needsLot: Bool
    }

    public let source: TopicPolicy
    let rules: [Rule]
    public let scopes: Set<String>

    public init(_ policy: TopicPolicy) throws(DevIDCoreError) {
        guard policy.rules.count <= TopicPolicy.maximumRules else {
            throw Self.invalid("at most \(TopicPolicy.maximumRules) rules")
        }
        guard policy.scopes.count <= TopicPolicy.maximumScopes else {
            throw Self.invalid("at most \(TopicPolicy.maximumScopes) scopes")
        }
        var rules: [Rule] = []
        for (index, rule) in policy.rules.enumerated() {
            rules.append(try Self.compile(rule, position: index + 1))
        }
        for (index, scope) in policy.scopes.enumerated() where !TopicPolicy.isValidScope(scope) {
            throw Self.invalid(
                "scope \(index + 1): 1-\(TopicPolicy.maximumScopeLength) characters of A-Z a-z 0-9 . _ - : /")
        }
        self.source = policy
        self.rules = rules
        self.scopes = Set(policy.scopes)
    }

    private init(source: TopicPolicy, rules: [Rule], scopes: Set<String>) {
        self.source = source
        self.rules = rules
        self.scopes = scopes
    }

    /// A policy that grants nothing (what a stored policy that no longer validates falls back to).
    public static let nothing = CompiledTopicPolicy(source: TopicPolicy(rules: []), rules: [], scopes: [])

    static func invalid(_ reason: String) -> DevIDCoreError {
        DevIDCoreError(code: .invalidPolicy, reason: reason)
    }

    static func compile(_ rule: TopicRule, position: Int) throws(DevIDCoreError) -> Rule {
        let prefix = "rule \(position)"
        // First: a line break here would become a line of its own in Mosquitto's ACL file.
        if let problem = ControlCharacters.lineProblem(rule.topic) { throw invalid("\(prefix): \(problem)") }
        if let problem = MQTTTopic.filterProblem(rule.topic) { throw invalid("\(prefix): \(problem)") }
        var levels: [TemplateLevel] = []
        for level in MQTTTopic.split(rule.topic) {
            switch level {
            case "+": levels.append(.single)
            case "#": levels.append(.multi)
            case "{tenant}": levels.append(.tenant)
            case "{device}": levels.append(.device)
            case "{lot}": levels.append(.lot)
            default:
                if level.contains("{") || level.contains("}") {
                    if level.first == "{", level.last == "}" {
                        throw invalid("\(prefix): unknown variable (use {tenant}, {device} or {lot})")
                    }
                    throw invalid("\(prefix): a variable must fill a whole level")
                }
                levels.append(.literal(level))
            }
        }
        guard levels.count >= 2, levels[0] == .literal("tenants"), levels[1] == .tenant else {
            throw invalid("\(prefix): a rule must begin with the levels tenants/{tenant}, so it stays in the tenant")
        }
        if levels.dropFirst(2).contains(.tenant) {
            throw invalid("\(prefix): {tenant} may appear only as the second level")
        }
        return Rule(action: rule.action, levels: levels, needsLot: levels.contains(.lot))
    }

    /// Whether a device bound as `binding` may `action` (publish or subscribe) `topic`.
    ///
    /// For publish, `topic` must be a valid topic name; for subscribe, a valid filter (an MQTT 5 shared
    /// subscription `$share/<name>/<filter>` is checked by its filter), allowed only if every topic it matches is
    /// allowed by one rule.
    public func check(_ action: TopicAction, topic: String, binding: TopicBinding) -> TopicVerdict {
        var filter = Substring(topic)
        switch action {
        case .publish:
            if let problem = MQTTTopic.nameProblem(topic) { return .invalid(problem) }
        case .subscribe, .all:
            switch SharedSubscription.parse(topic) {
            case .failure(let error)?: return .invalid(error.reason)
            case .success(let shared)?: filter = shared.filter
            case nil: break
            }
            if let problem = MQTTTopic.filterProblem(String(filter)) { return .invalid(problem) }
        }
        let requested = MQTTTopic.filterLevels(String(filter))
        for rule in rules where rule.action.permits(action) {
            if rule.needsLot && binding.lot == nil { continue }
            if Self.covers(rule.levels, requested, binding) { return .allowed }
        }
        if requested.count >= 2, requested[0] == .literal("tenants"), case .literal(let other) = requested[1],
            other != Substring(binding.tenant.rawValue)
        {
            return .wrongTenant
        }
        return .notAllowed
    }

    /// Whether `scope` is granted.
    public func grants(scope: String) -> Bool { scopes.contains(scope) }

    /// Whether a device bound as `binding` may `action` a topic that came from a RabbitMQ routing key (translated
    /// back: `.` → `/`, `*` → `+`).
    ///
    /// In a routing key a `.` inside an id cannot be told from a level separator, so the tenant is the device's own
    /// (`binding`, from the registry; never read from the key) and:
    /// - a device whose tenant or device id has a `.` gets ``TopicVerdict/dottedIdentifier`` (fail closed);
    /// - a `{lot}` rule does not apply to a lot with a `.`; a `.` in a literal level of a rule is a level separator;
    /// - a rule does not grant a topic or filter that could also match routing keys of a dotted tenant in `dotted`
    ///   other than the device's own (``TopicVerdict/wrongTenant``: `tenants.acme.eu.x` for a device of `acme`), nor
    ///   of a dotted device id in the rule's `{device}` level (`devices.dev.telemetry.x` for device `dev`).
    public func checkRoutingKey(
        _ action: TopicAction, topic: String, binding: TopicBinding, dotted: DottedIdentifiers
    ) -> TopicVerdict {
        if binding.tenant.hasDot || binding.device.hasDot { return .dottedIdentifier }
        if action == .publish, let problem = MQTTTopic.nameProblem(topic) { return .invalid(problem) }
        if action != .publish, let problem = MQTTTopic.filterProblem(topic) { return .invalid(problem) }
        let requested = MQTTTopic.filterLevels(topic)
        let otherTenants = dotted.tenants.filter { $0 != binding.tenant }.map { tenant in
            [MQTTTopic.Level.literal("tenants")] + Self.routingLevels(tenant.rawValue) + [.multi]
        }
        let ownPrefix = binding.device.rawValue + "."
        let otherDevices = dotted.devices.filter { $0.rawValue.hasPrefix(ownPrefix) }
        var crossesTenant = false
        for rule in rules where rule.action.permits(action) {
            if rule.needsLot && (binding.lot == nil || binding.lot?.rawValue.contains(".") == true) { continue }
            let levels = Self.routingLevels(rule.levels[...], binding)
            guard MQTTTopic.covers(levels, requested) else { continue }
            if otherTenants.contains(where: { MQTTTopic.overlaps($0, requested) }) {
                crossesTenant = true
                continue
            }
            let reachesDevice = rule.levels.indices.contains { index in
                guard rule.levels[index] == .device else { return false }
                let before = Self.routingLevels(rule.levels[..<index], binding)
                return otherDevices.contains { other in
                    MQTTTopic.overlaps(before + Self.routingLevels(other.rawValue) + [.multi], requested)
                }
            }
            if reachesDevice { continue }
            return .allowed
        }
        if crossesTenant { return .wrongTenant }
        if requested.count >= 2, requested[0] == .literal("tenants"), case .literal(let other) = requested[1],
            other != Substring(binding.tenant.rawValue)
        {
            return .wrongTenant
        }
        return .notAllowed
    }

    /// Template levels as RabbitMQ sees them: variables resolved, each `.` a level separator.
    static func routingLevels(_ levels: ArraySlice<TemplateLevel>, _ binding: TopicBinding) -> [MQTTTopic.Level] {
        levels.flatMap { level -> [MQTTTopic.Level] in
            switch level {
            case .literal(let text): routingLevels(text)
            case .tenant: routingLevels(binding.tenant.rawValue)
            case .device: routingLevels(binding.device.rawValue)
            case .lot: routingLevels(binding.lot?.rawValue ?? "")
            case .single: [.single]
            case .multi: [.multi]
            }
        }
    }

    static func routingLevels(_ text: some StringProtocol) -> [MQTTTopic.Level] {
        text.split(separator: ".", omittingEmptySubsequences: false).map { .literal(Substring($0)) }
    }

    /// `MQTTTopic.covers` with the variables resolved in place (no string is built).
    static func covers(_ allowed: [TemplateLevel], _ requested: [MQTTTopic.Level], _ binding: TopicBinding) -> Bool {
        var index = 0
        while true {
            if index == allowed.count { return index == requested.count }
            let level: MQTTTopic.Level
            switch allowed[index] {
            case .multi:
                return true  // templates begin with a literal level, so `$` topics are never reached this way
            case .single: level = .single
            case .literal(let text): level = .literal(text)
            case .tenant: level = .literal(Substring(binding.tenant.rawValue))
            case .device: level = .literal(Substring(binding.device.rawValue))
            case .lot:
                guard let lot = binding.lot else { return false }
                level = .literal(Substring(lot.rawValue))
            }
            if index == requested.count { return false }
            switch (level, requested[index]) {
            case (_, .multi): return false
            case (.literal, .single): return false
            case (.single, _): break
            case (.literal(let a), .literal(let r)): if !MQTTTopic.sameBytes(a, r) { return false }
            case (.multi, _): return true
            }
            index += 1
        }
    }

    /// The rules expanded for one device, as plain MQTT filters (for `devid policy show --device`, exports, and
    /// brokers that translate topics).
    public func expanded(for binding: TopicBinding) -> [TopicRule] {
        rules.compactMap { rule in
            if rule.needsLot && binding.lot == nil { return nil }
            let text = rule.levels.map { level -> String in
                switch level {
                case .literal(let text): String(text)
                case .tenant: binding.tenant.rawValue
                case .device: binding.device.rawValue
                case .lot: binding.lot?.rawValue ?? ""
                case .single: "+"
                case .multi: "#"
                }
            }.joined(separator: "/")
            return TopicRule(rule.action, text)
        }
    }
}
