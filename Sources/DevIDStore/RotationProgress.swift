/// How far a rotation campaign has got: ``Store/rotationProgress(_:now:unreachableAfter:)`` counts the
/// credentials flagged `rotationDue` in a scope.
///
/// `rotated + pending + unreachable` can be less than `due`: a flagged credential that was revoked without a
/// successor, or that expired, is counted in `due` only.
public struct RotationProgress: Sendable, Hashable, Codable {
    /// Every flagged credential.
    public var due: Int
    /// Flagged and replaced: `superseded` or `revoked`, with a successor (`replacedBy`).
    public var rotated: Int
    /// Flagged, still `active`, and its device was seen recently.
    public var pending: Int
    /// Flagged, still `active`, and its device was not seen recently (or never).
    public var unreachable: Int

    public init(due: Int = 0, rotated: Int = 0, pending: Int = 0, unreachable: Int = 0) {
        self.due = due
        self.rotated = rotated
        self.pending = pending
        self.unreachable = unreachable
    }
}
