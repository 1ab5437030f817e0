import AsyncHTTPClient
public import DevIDCore
import Foundation
public import Logging
import NIOCore
import NIOFoundationCompat
import NIOHTTP1
public import ServiceLifecycle

/// How DevID reaches a RabbitMQ node's management API to end a device's open sessions.
public struct RabbitMQManagement: Sendable, Hashable, CustomStringConvertible {
    /// e.g. `http://127.0.0.1:15672` (no trailing slash).
    public var url: String
    public var user: String
    public var password: String

    public init(url: String, user: String, password: String) {
        self.url = url.hasSuffix("/") ? String(url.dropLast()) : url
        self.user = user
        self.password = password
    }

    /// Never shows the password.
    public var description: String { "RabbitMQManagement(\(url) as \(user), password <redacted>)" }
}

/// The management API's user and password without its URL (``ServerConfiguration/rabbitMQManagementLogin``).
public struct RabbitMQLogin: Sendable, Hashable, CustomStringConvertible {
    public var user: String
    public var password: String

    public init(user: String = "guest", password: String = "") {
        self.user = user
        self.password = password
    }

    /// Never shows the password.
    public var description: String { "RabbitMQLogin(\(user), password <redacted>)" }
}

/// Ends a device's live RabbitMQ connections when it is revoked or suspended.
///
/// A broker checks identity when a connection opens; RabbitMQ's HTTP auth backend asks DevID then and on each
/// topic access, so a revoked device's next publish is already refused. Its open connection (and its subscriptions,
/// which keep delivering) is closed here through the management API: `GET /api/connections` (the `user` column is the
/// certificate's CN, i.e. the device id, with `ssl_cert_login_from = common_name`) and
/// `DELETE /api/connections/<name>` with an `X-Reason` header that RabbitMQ passes to the client.
public actor RabbitMQSessions {
    public let management: RabbitMQManagement
    /// The process-wide client: nothing to shut down, and revocations are rare enough to share it.
    private var client: HTTPClient { HTTPClient.shared }
    private let logger: Logger

    /// The management API lists a connection only once the node has emitted its statistics (every 5 s by default,
    /// `collect_statistics_interval`), so a connection opened in the seconds before a revocation is not listed yet.
    /// ``endSessions(devices:reason:)`` looks again this long after the revocation (each delay from the revocation,
    /// driven by ``RabbitMQRechecks``).
    public let rechecks: [Duration]
    /// Of the given devices, those that may still not connect at all (revoked, suspended, gone): only their
    /// connections are closed at a second look. A device resumed since, or still active with another credential,
    /// keeps the connections it opened after the change.
    private let stillEnded: @Sendable (Set<DeviceID>) async -> Set<DeviceID>
    /// Second looks to come: the devices, the reason, and the time left until each.
    private var due: [(devices: Set<DeviceID>, reason: String, after: Duration)] = []

    public init(
        management: RabbitMQManagement, logger: Logger, rechecks: [Duration] = [.seconds(6), .seconds(12)],
        stillEnded: @escaping @Sendable (Set<DeviceID>) async -> Set<DeviceID> = { $0 }
    ) {
        self.management = management
        self.logger = logger
        self.rechecks = rechecks
        self.stillEnded = stillEnded
    }

    /// Closes the devices' connections now (``close(devices:reason:)``) and schedules the second looks of
    /// ``rechecks``; returns how many were closed now.
    @discardableResult
    public func endSessions(devices: Set<DeviceID>, reason: String) async -> Int {
        let closed = await close(devices: devices, reason: reason)
        due += rechecks.map { (devices, reason, $0) }
        return closed
    }

    /// How many second looks are still to come, for tests.
    public var rechecksDue: Int { due.count }

    /// Moves the second looks `elapsed` closer and runs those that are due: the devices listed with a connection
    /// now that still may not connect have it closed.
    public func advance(by elapsed: Duration) async {
        var now: [(devices: Set<DeviceID>, reason: String)] = []
        due = due.compactMap { item in
            let left = item.after - elapsed
            if left > .zero { return (item.devices, item.reason, left) }
            now.append((item.devices, item.reason))
            return nil
        }
        for item in now {
            guard let listed = try? await connections() else { continue }  // close() logs it at the first look
            let connected = item.devices.intersection(listed.compactMap { DeviceID(rawValue: $0.user) })
            let ended = connected.isEmpty ? [] : await stillEnded(connected)
            guard !ended.isEmpty else { continue }
            let late = await close(devices: ended, reason: item.reason)
            if late > 0 {
                logger.notice(
                    "closed RabbitMQ connections listed after the revocation",
                    metadata: ["connections": "\(late)", "devices": "\(ended.count)"])
            }
        }
    }

    /// Closes every connection whose user is one of `devices`; returns how many were closed.
    @discardableResult
    public func close(devices: Set<DeviceID>, reason: String) async -> Int {
        guard !devices.isEmpty else { return 0 }
        let names: [String]
        do {
            names = try await connections().filter { connection in
                DeviceID(rawValue: connection.user).map(devices.contains) ?? false
            }.map(\.name)
        } catch {
            logger.warning(
                "RabbitMQ management API failed; open sessions were not closed",
                metadata: ["error": "\(error)", "url": "\(management.url)"])
            return 0
        }
        var closed = 0
        for name in names {
            let path = name.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? name
            var request = HTTPClientRequest(url: "\(management.url)/api/connections/\(path)")
            request.method = .DELETE
            request.headers.add(name: "Authorization", value: authorization)
            request.headers.add(name: "X-Reason", value: reason)
            do {
                let response = try await client.execute(request, timeout: .seconds(10))
                _ = try? await response.body.collect(upTo: 64 * 1024)
                if response.status == .noContent || response.status == .ok || response.status == .notFound {
                    closed += response.status == .notFound ? 0 : 1
                } else {
                    logger.warning(
                        "RabbitMQ refused to close a connection",
                        metadata: ["status": "\(response.status.code)", "connection": "\(name)"])
                }
            } catch {
                logger.warning("closing a RabbitMQ connection failed", metadata: ["error": "\(error)"])
            }
        }
        return closed
    }

    struct Connection: Decodable {
        var name: String
        var user: String
    }

    func connections() async throws -> [Connection] {
        var request = HTTPClientRequest(url: "\(management.url)/api/connections?columns=name,user")
        request.headers.add(name: "Authorization", value: authorization)
        let response = try await client.execute(request, timeout: .seconds(10))
        let body = try await response.body.collect(upTo: 32 * 1024 * 1024)
        guard response.status == .ok else {
            throw RabbitMQManagementError(status: Int(response.status.code))
        }
        return try JSONDecoder().decode([Connection].self, from: Data(buffer: body))
    }

    private var authorization: String {
        "Basic " + Data("\(management.user):\(management.password)".utf8).base64EncodedString()
    }

}

struct RabbitMQManagementError: Error, CustomStringConvertible {
    let status: Int
    var description: String { "the RabbitMQ management API answered \(status)" }
}

/// Runs ``RabbitMQSessions``' second looks on `clock`, under the server's `ServiceGroup`: stops with it.
public struct RabbitMQRechecks<C: Clock>: Service where C.Duration == Duration {
    let sessions: RabbitMQSessions
    let clock: C
    let tick: Duration

    public init(sessions: RabbitMQSessions, clock: C, tick: Duration = .milliseconds(500)) {
        self.sessions = sessions
        self.clock = clock
        self.tick = tick
    }

    public func run() async throws {
        do {
            try await cancelWhenGracefulShutdown {
                while !Task.isCancelled {
                    try await clock.sleep(for: tick)
                    await sessions.advance(by: tick)
                }
            }
        } catch is CancellationError {
            return
        }
    }
}
