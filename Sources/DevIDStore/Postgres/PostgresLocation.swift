import Foundation
public import NIOSSL
import PostgresNIO

extension PostgresStore {
    /// Where the registry is and how to log in: `postgres://USER@HOST:PORT/DATABASE`, the password kept apart (a
    /// file or the environment, never the URL) and out of every description.
    public struct Location: Sendable, CustomStringConvertible {
        public enum TLSMode: Sendable {
            /// Plain TCP (a server on the loopback address or a Unix socket).
            case disable
            /// TLS required, with this configuration (its trust roots and hostname check).
            case require(TLSConfiguration)
        }

        public var host: String
        public var port: Int
        public var username: String
        public var database: String
        public var tls: TLSMode
        public var maximumConnections: Int
        let password: String?

        public init(
            host: String, port: Int = 5432, username: String, password: String?, database: String,
            tls: TLSMode = .disable, maximumConnections: Int = 20
        ) {
            self.host = host
            self.port = port
            self.username = username
            self.password = password
            self.database = database
            self.tls = tls
            self.maximumConnections = maximumConnections
        }

        /// Reads `postgres://USER@HOST[:PORT]/DATABASE[?sslmode=MODE&sslrootcert=PATH]` (also `postgresql://`).
        ///
        /// The password is never taken from the URL (it would end up wherever the URL is shown): pass it apart. TLS
        /// follows libpq's `sslmode`: `disable`; `require` (encrypted, the server's certificate not checked);
        /// `verify-full` (checked against `sslrootcert`, else the system's roots, and the host name). Without
        /// `sslmode`, a loopback host gets `disable` and any other `verify-full`: a registry across a network is
        /// never reached in clear or unauthenticated by default. Every refusal is one line without the URL's text.
        public init(url: String, password: String?) throws(StoreError) {
            guard let components = URLComponents(string: url), let scheme = components.scheme,
                ["postgres", "postgresql"].contains(scheme)
            else {
                throw StoreError(.unavailable, "the registry URL is not postgres://USER@HOST:PORT/DATABASE")
            }
            guard components.password == nil else {
                throw StoreError(
                    .unavailable,
                    "the registry URL carries a password: give it in a file (--registry-password-file, "
                        + "DEVID_REGISTRY_PASSWORD_FILE) or DEVID_REGISTRY_PASSWORD")
            }
            guard let host = components.host, !host.isEmpty else {
                throw StoreError(.unavailable, "the registry URL names no host")
            }
            guard let username = components.user, !username.isEmpty else {
                throw StoreError(.unavailable, "the registry URL names no user (postgres://USER@HOST/DATABASE)")
            }
            let path = components.path.hasPrefix("/") ? String(components.path.dropFirst()) : components.path
            guard !path.isEmpty, !path.contains("/") else {
                throw StoreError(.unavailable, "the registry URL names no database (postgres://USER@HOST/DATABASE)")
            }
            var mode: String?
            var rootCertificate: String?
            for item in components.queryItems ?? [] {
                switch item.name {
                case "sslmode": mode = item.value
                case "sslrootcert": rootCertificate = item.value
                default:
                    throw StoreError(
                        .unavailable, "the registry URL has an unknown parameter (only sslmode and sslrootcert)")
                }
            }
            let loopback = ["localhost", "127.0.0.1", "::1", "[::1]"].contains(host.lowercased())
            let tls: TLSMode
            switch mode ?? (loopback ? "disable" : "verify-full") {
            case "disable":
                tls = .disable
            case "require":
                var configuration = TLSConfiguration.makeClientConfiguration()
                configuration.certificateVerification = .none
                tls = .require(configuration)
            case "verify-full":
                var configuration = TLSConfiguration.makeClientConfiguration()
                configuration.certificateVerification = .fullVerification
                if let rootCertificate {
                    guard FileManager.default.isReadableFile(atPath: rootCertificate) else {
                        throw StoreError(.unavailable, "the registry's sslrootcert \(rootCertificate) cannot be read")
                    }
                    configuration.trustRoots = .file(rootCertificate)
                }
                tls = .require(configuration)
            default:
                throw StoreError(.unavailable, "the registry URL's sslmode must be disable, require or verify-full")
            }
            self.init(
                host: host, port: components.port ?? 5432, username: username, password: password, database: path,
                tls: tls)
        }

        /// `postgres://USER@HOST:PORT/DATABASE`, never with the password.
        public var description: String { "postgres://\(username)@\(host):\(port)/\(database)" }

        var client: PostgresClient.Configuration {
            let tls: PostgresClient.Configuration.TLS =
                switch self.tls {
                case .disable: .disable
                case .require(let configuration): .require(configuration)
                }
            var client = PostgresClient.Configuration(
                host: host, port: port, username: username, password: password, database: database, tls: tls)
            client.options.maximumConnections = max(2, maximumConnections)
            client.options.connectTimeout = .seconds(5)
            client.options.additionalStartupParameters = [("statement_timeout", PostgresStore.statementTimeout)]
            return client
        }

        func connection() throws(StoreError) -> PostgresConnection.Configuration {
            let tls: PostgresConnection.Configuration.TLS
            switch self.tls {
            case .disable:
                tls = .disable
            case .require(let configuration):
                do {
                    tls = .require(try NIOSSLContext(configuration: configuration))
                } catch {
                    throw StoreError(.unavailable, "registry \(self): cannot set up TLS (\(error))")
                }
            }
            var connection = PostgresConnection.Configuration(
                host: host, port: port, username: username, password: password, database: database, tls: tls)
            connection.options.connectTimeout = .seconds(5)
            return connection
        }
    }
}
