import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// Ports for servers a test starts itself (brokers, listeners a page names).
public enum LoopbackPort {
    /// A TCP port that was free a moment ago, drawn at random below Linux's ephemeral range (32768-60999), so that
    /// neither the kernel (for `bind(0)` and outgoing connections) nor another test hands it out before the server
    /// binds it.
    public static func free() throws -> Int {
        for _ in 0..<200 {
            let port = Int.random(in: 20_000..<32_000)
            if canBind(port) { return port }
        }
        throw LoopbackPortError()
    }

    struct LoopbackPortError: Error, CustomStringConvertible {
        var description: String { "no free port in 20000-31999" }
    }

    /// True if a TCP socket can bind 127.0.0.1:`port` now.
    public static func canBind(_ port: Int) -> Bool { withSocket(port, bind) }

    /// True if something accepts TCP connections on 127.0.0.1:`port` now.
    public static func accepts(_ port: Int) -> Bool { withSocket(port, connect) }

    /// `operation` (bind or connect) on a new TCP socket and the address 127.0.0.1:`port`; the socket is closed after.
    private static func withSocket(
        _ port: Int, _ operation: (Int32, UnsafePointer<sockaddr>, socklen_t) -> Int32
    ) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                operation(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }
}
