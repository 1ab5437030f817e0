import AsyncHTTPClient
import Foundation
import NIOCore
import NIOPosix

#if canImport(Glibc)
    import Glibc
#endif

/// Why a server could not be reached, in one line a reader knows: the system's words ("connection refused") rather
/// than NIO's description of its internals (`connection reset (error set): Connection refused) (errno: 111)`).
enum NetworkFailure {
    static func describe(_ error: any Error) -> String {
        switch error {
        case let io as IOError:
            return String(cString: strerror(io.errnoCode)).lowercased()
        case let connection as NIOConnectionError:
            if connection.dnsAError != nil || connection.dnsAAAAError != nil { return "host not found" }
            return connection.connectionErrors.first.map { describe($0.error) } ?? "connection failed"
        case let http as HTTPClientError where http == .connectTimeout:
            return "connection timed out"
        case let http as HTTPClientError where http == .deadlineExceeded:
            return "no answer within 30 s"
        case let http as HTTPClientError where http == .remoteConnectionClosed:
            return "the server closed the connection"
        default:
            return String(describing: error)
        }
    }
}
