/// What ``Store/importDevices(_:audit:)`` did.
public struct DeviceImportResult: Sendable, Hashable, Codable {
    /// Devices inserted.
    public var created: Int
    /// Devices that were already registered with the same tenant, hardware serial and lot.
    public var unchanged: Int
    /// Lots the import created because a device referred to them.
    public var lotsCreated: Int
    /// Unchanged devices that were registered without an IDevID serial (imported before schema version 6) and
    /// now have the manifest's. They are also counted in ``unchanged``.
    public var idevidsRegistered: Int

    public init(created: Int, unchanged: Int, lotsCreated: Int, idevidsRegistered: Int = 0) {
        self.created = created
        self.unchanged = unchanged
        self.lotsCreated = lotsCreated
        self.idevidsRegistered = idevidsRegistered
    }
}
