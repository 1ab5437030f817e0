/// Connection hygiene for both listeners: how long a peer may take to finish TLS, how long a connection may idle,
/// and how many connections one listener (and one source address) may hold open.
///
/// A connection over a cap is closed as soon as it is accepted, before any TLS or HTTP byte is read; a connection
/// that runs out of time is closed without a response. Nothing is audited for these: no identity was presented.
public struct ConnectionLimits: Sendable, Hashable {
    /// Seconds a client on the mTLS listener has from accept to a finished TLS handshake.
    public var handshakeTimeoutSeconds: Double = 10
    /// Seconds a connection may sit without reading a request (before headers arrive, or between keep-alive requests).
    public var idleTimeoutSeconds: Double = 60
    /// Open connections per listener; 0 means no cap.
    public var maxConnections: Int = 4096
    /// Open connections per listener from one source IP address; 0 means no cap.
    public var maxConnectionsPerAddress: Int = 256
    /// Largest JSON request body on the operations listener, in bytes.
    public var opsMaxBodyBytes: Int = 2 * 1024 * 1024

    public init() {}
}

public import DevIDCore

extension ConnectionLimits {
    /// Refuses limits that would cut every client off or never cut anyone off.
    public func validate() throws(DevIDCoreError) {
        guard handshakeTimeoutSeconds > 0, idleTimeoutSeconds > 0, maxConnections >= 0, maxConnectionsPerAddress >= 0,
            opsMaxBodyBytes >= 1024
        else {
            throw DevIDCoreError(
                code: .invalidPolicy,
                reason: "listener timeouts must be positive, connection caps 0 (none) or more, ops.max.body.bytes at least 1024")
        }
    }
}
