/// One libFuzzer target: a parser of outside bytes and the cheap invariants its result must keep.
///
/// `run` must return for every input. A parser that refuses the input is fine (that is its job); a trap, or a
/// ``FuzzFailure`` (an invariant broken, e.g. a round trip that changes the value), is a finding. `devid-fuzz`
/// turns a ``FuzzFailure`` into a crash so libFuzzer records the input; the corpus tests report it as a failure.
public struct FuzzTarget: Sendable {
    /// The name `scripts/fuzz` and `DEVID_FUZZ_TARGET` use, and the folder of its seeds under `Fuzz/Corpus/`.
    public let name: String
    /// libFuzzer's `-max_len` for this target: the largest input worth mutating.
    public let maximumLength: Int
    /// One line: what the target parses and checks.
    public let summary: String
    public let run: @Sendable ([UInt8]) throws(FuzzFailure) -> Void

    public init(
        name: String, maximumLength: Int, summary: String,
        run: @escaping @Sendable ([UInt8]) throws(FuzzFailure) -> Void
    ) {
        self.name = name
        self.maximumLength = maximumLength
        self.summary = summary
        self.run = run
    }
}

/// An invariant a parsed value broke.
public struct FuzzFailure: Error, Sendable, CustomStringConvertible {
    public let target: String
    public let message: String

    public init(_ target: String, _ message: String) {
        self.target = target
        self.message = message
    }

    public var description: String { "\(target): \(message)" }
}

/// Throws a ``FuzzFailure`` unless `condition` holds.
func require(_ condition: Bool, _ target: String, _ message: @autoclosure () -> String) throws(FuzzFailure) {
    if !condition { throw FuzzFailure(target, message()) }
}

/// Every target, in the order `scripts/fuzz all` runs them.
public enum FuzzTargets {
    public static let all: [FuzzTarget] = [
        PKITargets.csr,
        PKITargets.estBody,
        PKITargets.cms,
        PKITargets.csrAttributes,
        PKITargets.ocspRequest,
        PKITargets.ocspGet,
        PKITargets.privateKeyPEM,
        PKITargets.encryptedPKCS8,
        CoreTargets.lotManifest,
        CoreTargets.topicPolicy,
        CoreTargets.mqttTopic,
        ServerTargets.adminJSON,
        ServerTargets.decisionJSON,
        AgentTargets.httpDate,
    ]

    public static func named(_ name: String) -> FuzzTarget? {
        all.first { $0.name == name }
    }
}
