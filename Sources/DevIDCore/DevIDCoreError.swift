/// Errors of the domain layer. Descriptions never carry secrets.
public struct DevIDCoreError: Error, Hashable, Sendable, CustomStringConvertible {
    public struct Code: Hashable, Sendable, CustomStringConvertible {
        private enum Backing: Hashable, Sendable {
            case invalidIdentifier
            case invalidTransition
            case invalidPolicy
        }
        private let backing: Backing
        private init(_ backing: Backing) { self.backing = backing }

        public static let invalidIdentifier = Code(.invalidIdentifier)
        public static let invalidTransition = Code(.invalidTransition)
        public static let invalidPolicy = Code(.invalidPolicy)

        public var description: String { String(describing: backing) }
    }

    public let code: Code
    public let reason: String
    public let file: String
    public let line: UInt

    public init(code: Code, reason: String, file: String = #fileID, line: UInt = #line) {
        self.code = code
        self.reason = reason
        self.file = file
        self.line = line
    }

    public static func invalidIdentifier(kind: String, file: String = #fileID, line: UInt = #line) -> Self {
        Self(
            code: .invalidIdentifier,
            reason: "\(kind) must be 1-64 characters of A-Z a-z 0-9 . _ - and not start with . or -",
            file: file, line: line)
    }

    public var description: String { "\(code): \(reason)" }

    public static func == (lhs: Self, rhs: Self) -> Bool { lhs.code == rhs.code }
    public func hash(into hasher: inout Hasher) { hasher.combine(code) }
}
