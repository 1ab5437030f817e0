import AsyncHTTPClient
import DevIDServer
import Foundation
import NIOCore
import NIOFoundationCompat
import NIOHTTP1

/// Talks to a running server's admin API. URL and token come from flags, `DEVID_SERVER` / `DEVID_ADMIN_TOKEN`,
/// or the data directory (`server.json`, `secrets/admin-token`).
struct AdminClient {
    let baseURL: String
    let token: String

    init(options: GlobalOptions) throws {
        let environment = ProcessInfo.processInfo.environment
        let configuration = ServerConfiguration.development(dataDirectory: options.dataDir)
        if let server = options.server ?? environment["DEVID_SERVER"] {
            baseURL = server.hasSuffix("/") ? String(server.dropLast()) : server
        } else if let data = FileManager.default.contents(atPath: configuration.endpointsPath),
            let endpoints = try? JSONDecoder().decode(ServerEndpoints.self, from: data)
        {
            baseURL = endpoints.opsURL
        } else {
            throw CLIError(
                "no running server found: start `devid serve --data-dir \(options.dataDir)` or pass --server / DEVID_SERVER")
        }
        if let token = environment["DEVID_ADMIN_TOKEN"], !token.isEmpty {
            self.token = token
        } else if let data = FileManager.default.contents(atPath: configuration.devAdminTokenPath) {
            self.token = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        } else {
            throw CLIError("no admin token: set DEVID_ADMIN_TOKEN (or run on the server's machine with --data-dir)")
        }
    }

    /// One client for the process. A refused connection fails at once instead of being retried until the 30 s
    /// deadline (`devid health` in cron must say "could not check" quickly, and so should every admin command).
    static let http: HTTPClient = {
        var configuration = HTTPClient.Configuration()
        configuration.connectionPool.retryConnectionEstablishment = false
        configuration.timeout.connect = .seconds(10)
        return HTTPClient(eventLoopGroup: HTTPClient.defaultEventLoopGroup, configuration: configuration)
    }()

    func get<T: Decodable>(_ path: String, as type: T.Type) async throws -> T {
        try await send("GET", path, body: nil as Data?, as: type)
    }

    func post<T: Decodable>(_ path: String, json: some Encodable, as type: T.Type) async throws -> T {
        try await send("POST", path, body: try DevIDJSON.encoder.encode(json), as: type)
    }

    func send<T: Decodable>(_ method: String, _ path: String, json: some Encodable, as type: T.Type) async throws -> T {
        try await send(method, path, body: try DevIDJSON.encoder.encode(json), as: type)
    }

    private func send<T: Decodable>(_ method: String, _ path: String, body: Data?, as type: T.Type) async throws -> T {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = .init(rawValue: method)
        request.headers.add(name: "Authorization", value: "Bearer \(token)")
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(data: body))
        }
        let response: HTTPClientResponse
        do {
            response = try await Self.http.execute(request, timeout: .seconds(30))
        } catch {
            throw CLIError("cannot reach \(baseURL): \(NetworkFailure.describe(error))")
        }
        let bytes = try await response.body.collect(upTo: 64 * 1024 * 1024)
        let data = Data(buffer: bytes)
        guard (200..<300).contains(response.status.code) else {
            throw CLIError("server answered \(response.status.code): \(Self.errorMessage(data))")
        }
        do {
            return try DevIDJSON.decoder.decode(T.self, from: data)
        } catch {
            throw CLIError("unexpected response from \(path)")
        }
    }

    /// Hummingbird's error body is `{"error":{"message":"..."}}`.
    static func errorMessage(_ data: Data) -> String {
        struct Body: Decodable {
            struct Inner: Decodable { var message: String }
            var error: Inner
        }
        if let body = try? JSONDecoder().decode(Body.self, from: data) { return body.error.message }
        return String(decoding: data.prefix(200), as: UTF8.self)
    }
}

struct ItemList<Item: Decodable>: Decodable {
    var items: [Item]
    /// Set by a paged list (`GET /v1/admin/devices`) when more items follow: pass it as `after`.
    var next: String?
}
