/// How many current LDevIDs one issuing CA has out (``Store/ldevidCountsByIssuer(now:seenSince:)``).
public struct IssuerLDevIDCounts: Sendable, Hashable, Codable {
    /// `active` or `superseded`, unexpired.
    public var current: Int
    /// Of those, `active` ones held by devices seen recently: what revoking the CA would cut off now.
    public var online: Int

    public init(current: Int = 0, online: Int = 0) {
        self.current = current
        self.online = online
    }
}
