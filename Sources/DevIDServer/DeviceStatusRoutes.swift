import DevIDCore
import DevIDPKI
import DevIDStore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import X509

/// `GET /v1/device/status` over mTLS: a device checks in with its LDevID.
///
/// The answer tells the agent its registry state, the server's time, the rotation policy, and whether the server
/// wants it to rotate now (a campaign, or the credential is already superseded). The first successful check-in of a
/// new credential confirms it (rotation step 3).
struct DeviceStatusResponse: Codable, Sendable {
    var device: DeviceID
    var tenant: TenantID
    var deviceState: DeviceState
    var serial: SerialNumber
    var credentialStatus: CredentialStatus
    var notBefore: Date
    var notAfter: Date
    var overlapDeadline: Date?
    var rotateNow: Bool
    var rotateReason: String?
    var serverTime: Date
    var rotation: RotationPolicy
    /// SHA-256 fingerprints of the roots the device should trust (every root not retired, the active one first):
    /// an agent adds a new one it can validate through a cross-certificate in `/cacerts`, and drops one no longer
    /// listed (root rollover).
    var trustedRoots: [String]
}

enum DeviceStatusRoutes {
    static func register(_ router: Router<DeviceRequestContext>, state: ServerState) {
        let service = EnrollmentService(state: state)
        router.get("/v1/device/status") { _, context -> Response in
            let now = state.clock.now()
            let chain = await context.verifiedPeerChain()
            let identity = chain.flatMap { PeerIdentity.classify(chain: $0, hierarchy: state.hierarchy, issuers: state.issuers.snapshot) }
            let source = context.channel.remoteAddress?.ipAddress
            var claimed: (device: DeviceID, tenant: TenantID)?
            if case .ldevid(let device, let tenant, _) = identity { claimed = (device, tenant) }
            if let refused = await Backpressure.admitCheckIn(
                device: claimed?.device, tenant: claimed?.tenant, source: source, state: state)
            {
                return refused
            }
            guard case .ldevid(let deviceID, let tenant, let serial) = identity else {
                await state.anonymousFailures.record(
                    action: "device.status", reason: "an LDevID client certificate is required", source: source)
                state.metrics.authFailure(.deviceStatus, AuthFailureReason(.authenticationRequired) ?? .other)
                var response = ESTRoutes.refusal(
                    .unauthorized, .authenticationRequired, "an LDevID client certificate is required")
                response.headers[.wwwAuthenticate] = "Basic realm=\"devid\""
                return response
            }
            let subject = EnrollmentService.Subject(
                actor: "device:\(deviceID)", method: "ldevid", tenant: tenant, device: deviceID, serial: serial)
            do {
                let credential = try await service.requireUsableCredential(
                    serial: serial, device: deviceID, now: now, subject, checkIn: true)
                guard let device = try await state.store.device(deviceID) else {
                    throw EnrollmentService.Refusal(.forbidden, .deviceUnknown, "device is not in the registry", subject)
                }
                if let refusal = CredentialLifecycle.deviceRefusal(device.state) {
                    throw EnrollmentService.Refusal(.forbidden, refusal, subject)
                }
                // A check-in only reads; its two writes (first-use confirmation, last seen) wait for space on a full
                // disk, and the device is still answered (the next check-in confirms).
                do {
                    try await service.confirmFirstUse(credential, now: now, subject)
                    try await state.store.recordSeen(deviceID, at: now)
                } catch let error as StoreError where error.code == .storageFull {
                    state.auditor.storage.raise(error, logger: state.logger)
                }
                var reason: String?
                if credential.status == .superseded {
                    reason = nil  // the successor exists; the agent switches to it rather than rotating again
                } else if state.issuers.snapshot.entries.contains(where: {
                    $0.record.state == .tainted && $0.record.subject == credential.issuer
                }) {
                    reason = "issuing CA tainted"
                } else if credential.rotationDue {
                    reason = "rotation campaign"
                }
                state.watch.seen(device: deviceID, tenant: tenant, serial: serial, source: source, at: now)
                let body = DeviceStatusResponse(
                    device: deviceID, tenant: tenant, deviceState: device.state, serial: serial,
                    credentialStatus: credential.status, notBefore: credential.notBefore,
                    notAfter: credential.notAfter, overlapDeadline: credential.overlapDeadline,
                    rotateNow: reason != nil, rotateReason: reason, serverTime: now,
                    rotation: state.configuration.ldevidPolicy.rotation,
                    trustedRoots: state.issuers.snapshot.roots.trusted.map(\.sha256Fingerprint))
                return try DevIDJSON.encoder.encodeAsResponse(body)
            } catch let refusal as EnrollmentService.Refusal {
                if let reason = AuthFailureReason(refusal.code) {
                    state.metrics.authFailure(.deviceStatus, reason, tenant: tenant)
                }
                EnrollmentService.watch(
                    refusal.code, subject: refusal.subject ?? subject, stage: .deviceStatus, source: source, state: state)
                await state.auditor.record(
                    actor: subject.actor, action: "device.status", outcome: .denied, reason: refusal.reason,
                    tenant: tenant, device: deviceID, serial: serial)
                return ESTRoutes.refusal(refusal.status, refusal.code, refusal.reason)
            }
        }
    }
}

/// Stamps every response on the device listener with the server's injected time (`DevID-Time`, RFC 3339), which
/// agents use to track their clock skew. (`Date` is Hummingbird's own wall-clock cache.)
struct ServerTimeMiddleware: RouterMiddleware {
    typealias Context = DeviceRequestContext
    let clock: any WallClock

    func handle(
        _ request: Request, context: DeviceRequestContext,
        next: @concurrent (Request, DeviceRequestContext) async throws -> Response
    ) async throws -> Response {
        let stamp = ServerTime.format(clock.now())
        do {
            var response = try await next(request, context)
            response.headers[.devidTime] = stamp
            return response
        } catch let error as any HTTPResponseError {
            var response = try error.response(from: request, context: context)
            response.headers[.devidTime] = stamp
            return response
        }
    }
}

enum ServerTime {
    /// RFC 3339 in UTC, whole seconds: `2026-11-25T15:40:00Z`.
    static func format(_ date: Date) -> String {
        date.formatted(Date.ISO8601FormatStyle())
    }
}

extension HTTPField.Name {
    static let devidTime = HTTPField.Name("DevID-Time")!
}

extension JSONEncoder {
    func encodeAsResponse(_ value: some Encodable) throws -> Response {
        let data = try encode(value)
        return Response(
            status: .ok, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }
}
