import DevIDCore
import DevIDPKI
import DevIDStore
import Foundation
import HTTPTypes
import Hummingbird

/// `PUT /v1/admin/tenants/:id/policy`: the enrollment policy fields to change; missing ones stay as they are.
struct TenantPolicyUpdate: Decodable {
    var autoRegister: Bool?
    var manualApproval: Bool?
    var maxUnboundTokenUses: Int?
    var maxUnboundTokenTTL: Int?
}

struct TokenCreateRequest: Decodable {
    var tenant: String
    var device: String?
    /// Lifetime in seconds (default 3600, at most 30 days).
    var ttlSeconds: Int?
    /// How many enrollments it allows (default 1, at most 10000; for a token that names no device, at most the
    /// tenant's `maxUnboundTokenUses`).
    var uses: Int?
    /// A token that names no device: new devices it enrolls join this lot of the tenant.
    var lot: String?
    /// A token that names no device: new device ids must match this pattern (`*`, `?`).
    var namePattern: String?
}

/// The one response that carries a claim token's secret.
struct TokenCreated: Codable, Sendable {
    var id: String
    var token: String
    var tenant: TenantID
    var device: DeviceID?
    var expiresAt: Date
    var uses: Int
    var lot: LotID?
    var namePattern: String?
}

/// A claim token as listed: never the secret or its hash.
struct TokenView: Codable, Sendable {
    var id: String
    var tenant: TenantID
    var device: DeviceID?
    var expiresAt: Date
    var usesRemaining: Int
    var revoked: Bool
    var createdAt: Date
    var lot: LotID?
    var namePattern: String?

    init(_ token: ClaimToken) {
        id = token.id
        tenant = token.tenant
        device = token.device
        expiresAt = token.expiresAt
        usesRemaining = token.usesRemaining
        revoked = token.revoked
        createdAt = token.createdAt
        lot = token.lot
        namePattern = token.namePattern
    }
}

struct DeviceDetail: Codable, Sendable {
    var device: Device
    var credentials: [CredentialView]
}

struct CredentialView: Codable, Sendable {
    var serial: SerialNumber
    var kind: CredentialKind
    var status: CredentialStatus
    var notBefore: Date
    var notAfter: Date
    var sha256: String
    var revokedAt: Date?
    var revocationReason: RevocationReason?

    init(_ credential: Credential) {
        serial = credential.serial
        kind = credential.kind
        status = credential.status
        notBefore = credential.notBefore
        notAfter = credential.notAfter
        sha256 = credential.certificateSHA256
        revokedAt = credential.revokedAt
        revocationReason = credential.revocationReason
    }
}

/// Admin endpoints for bootstrap: claim tokens, the factory allowlist, approval, tenant enrollment policy.
enum AdminRoutes {
    static let maximumTokenTTL = 30 * 86_400
    static let maximumImport = 100_000
    /// The largest manifest the import reads: 100,000 devices as `devid factory mint` writes them (pretty-printed,
    /// about 250 bytes each) with room for longer serials. Read only after the admin token was checked; every other
    /// body on the operations listener stops at `ops.max.body.bytes` (``BodyLimitMiddleware``).
    static let maximumImportBytes = 64 * 1024 * 1024

    static func register(_ admin: RouterGroup<OpsRequestContext>, state: ServerState) {
        let store = state.store
        let auditor = state.auditor

        admin.post("/tokens") { request, context -> EditedResponse<JSONBody<TokenCreated>> in
            let body = try await request.decode(as: TokenCreateRequest.self, context: context)
            guard let tenant = TenantID(rawValue: body.tenant) else { throw HTTPError(.badRequest, message: "invalid tenant") }
            try context.require(tenant: tenant)
            var device: DeviceID?
            if let name = body.device {
                guard let id = DeviceID(rawValue: name) else { throw HTTPError(.badRequest, message: "invalid device id") }
                device = id
            }
            let ttl = body.ttlSeconds ?? 3_600
            guard (1...maximumTokenTTL).contains(ttl) else {
                throw HTTPError(.badRequest, message: "ttlSeconds must be 1-\(maximumTokenTTL)")
            }
            let uses = body.uses ?? 1
            guard (1...10_000).contains(uses) else { throw HTTPError(.badRequest, message: "uses must be 1-10000") }
            guard let owner = try await store.tenant(tenant) else {
                throw HTTPError(.notFound, message: "unknown tenant \(tenant)")
            }
            if let device, let existing = try await store.device(device), existing.tenant != tenant {
                throw HTTPError(.conflict, message: "device \(device) belongs to another tenant")
            }
            // A token may name a device stored with a dot, never create one.
            if let device, device.hasDot, try await store.device(device) == nil {
                throw HTTPError(.badRequest, message: DevIDCoreError.dottedIdentifier(kind: "device id").reason)
            }
            var lot: LotID?
            if let name = body.lot {
                guard device == nil else {
                    throw HTTPError(.badRequest, message: "lot binds a token that names no device; drop --device or --lot")
                }
                guard let id = LotID(rawValue: name), let found = try await store.lot(id), found.tenant == tenant else {
                    throw HTTPError(.notFound, message: "tenant \(tenant) has no lot \(name)")
                }
                lot = id
            }
            if let pattern = body.namePattern {
                guard device == nil else {
                    throw HTTPError(.badRequest, message: "namePattern binds a token that names no device")
                }
                guard NamePattern.isValid(pattern) else {
                    throw HTTPError(.badRequest, message: "invalid namePattern: device-id characters, * and ? only")
                }
            }
            if device == nil {
                // A token that names no device can create devices in bulk: the tenant caps it (1 use, 24 hours by
                // default), so a bulk token is a decision an operator made for this tenant, not a typo.
                let policy = owner.policy
                guard uses <= policy.maxUnboundTokenUses else {
                    throw HTTPError(
                        .badRequest,
                        message: "tenant \(tenant) allows at most \(policy.maxUnboundTokenUses) use(s) for a token "
                            + "that names no device (devid tenant policy \(tenant) --max-token-uses N)")
                }
                guard ttl <= policy.maxUnboundTokenTTL else {
                    throw HTTPError(
                        .badRequest,
                        message: "tenant \(tenant) allows at most \(policy.maxUnboundTokenTTL)s for a token that "
                            + "names no device (devid tenant policy \(tenant) --max-token-ttl D)")
                }
            }
            let generated = ClaimTokens.generate()
            let now = state.clock.now()
            let token = ClaimToken(
                id: generated.id, secretHash: generated.hash, tenant: tenant, device: device,
                expiresAt: now.addingTimeInterval(TimeInterval(ttl)), usesRemaining: uses, createdAt: now, lot: lot,
                namePattern: body.namePattern)
            var scope = device == nil ? "new devices only" : "device \(device!)"
            if let lot { scope += ", lot \(lot)" }
            if let pattern = body.namePattern { scope += ", ids \(pattern)" }
            try await store.insertClaimToken(
                token,
                audit: auditor.event(
                    actor: context.actor, action: "token.create", outcome: .success,
                    reason: "created claim token \(generated.id) (uses \(uses), ttl \(ttl)s, \(scope))",
                    tenant: tenant, device: device))
            return EditedResponse(
                status: .created,
                response: JSONBody(
                    TokenCreated(
                        id: generated.id, token: generated.secret, tenant: tenant, device: device,
                        expiresAt: token.expiresAt, uses: uses, lot: lot, namePattern: body.namePattern)))
        }

        // Newest first, a page at a time: a full page says where the next one starts (`after` that token).
        admin.get("/tokens") { request, context -> ListResponse<TokenView> in
            let query = request.uri.queryParameters
            var filter = ClaimTokenFilter()
            if let name = query["tenant"] {
                guard let id = TenantID(rawValue: String(name)) else { throw HTTPError(.badRequest, message: "invalid tenant") }
                try context.require(tenant: id)
                filter.tenant = id
            }
            if let limit = try request.listLimit() { filter.limit = limit }
            if let after = query["after"] {
                // Only a token this admin token may see marks a place: another tenant's stays unconfirmed.
                guard let cursor = try await store.claimToken(id: String(after)), context.allows(tenant: cursor.tenant)
                else { throw HTTPError(.badRequest, message: "after must name a claim token") }
                filter.after = cursor.id
            }
            let tokens = try await context.claimTokens(filter, store: store)
            return ListResponse(
                items: tokens.map(TokenView.init), next: tokens.count == filter.limit ? tokens.last?.id : nil)
        }

        admin.post("/tokens/:id/revoke") { _, context -> JSONBody<TokenView> in
            let id = try context.parameters.require("id")
            guard let existing = try await store.claimToken(id: id) else {
                throw HTTPError(.notFound, message: "unknown claim token")
            }
            try context.require(tenant: existing.tenant)
            try await store.revokeClaimToken(
                id: id,
                audit: auditor.event(
                    actor: context.actor, action: "token.revoke", outcome: .success, reason: "revoked claim token \(id)",
                    tenant: existing.tenant))
            guard let token = try await store.claimToken(id: id) else { throw HTTPError(.notFound) }
            return JSONBody(TokenView(token))
        }

        admin.post("/devices/import") { request, context -> JSONBody<DeviceImportResult> in
            var reading = context
            reading.maxUploadSize = maximumImportBytes
            let manifest: LotManifest
            do {
                manifest = try await request.decode(as: LotManifest.self, context: reading)
            } catch let error as any HTTPResponseError where error.status == .contentTooLarge {
                throw HTTPError(
                    .contentTooLarge,
                    message: "a manifest may be at most \(maximumImportBytes / 1024 / 1024) MiB (at most \(maximumImport) devices per import)")
            }
            try context.require(tenant: manifest.tenant)
            guard manifest.devices.count <= maximumImport else {
                throw HTTPError(.contentTooLarge, message: "at most \(maximumImport) devices per import")
            }
            guard try await store.tenant(manifest.tenant) != nil else {
                throw HTTPError(.notFound, message: "unknown tenant \(manifest.tenant)")
            }
            let known = state.hierarchy.trustedManufacturers.map(\.sha256Fingerprint)
            guard known.contains(manifest.manufacturerCASHA256) else {
                await auditor.record(
                    actor: context.actor, action: "device.import", outcome: .denied,
                    reason: "manifest for lot \(manifest.lot) names an untrusted manufacturer CA", tenant: manifest.tenant)
                throw HTTPError(.unprocessableContent, message: "the manifest's manufacturer CA is not trusted by this server")
            }
            for entry in manifest.devices where !DeviceNames.isValidHardwareSerial(entry.hardwareSerial) {
                throw HTTPError(.badRequest, message: "invalid hardware serial for device \(entry.deviceID)")
            }
            // New device ids may not have a dot (RabbitMQ reads it as a level separator); nothing is imported.
            for (index, entry) in manifest.devices.enumerated() where entry.deviceID.hasDot {
                let reason = "device \(index + 1) (\(entry.deviceID)): "
                    + DevIDCoreError.dottedIdentifier(kind: "device id").reason
                await auditor.record(
                    actor: context.actor, action: "device.import", outcome: .denied, reason: reason,
                    tenant: manifest.tenant)
                throw HTTPError(.badRequest, message: reason)
            }
            let now = state.clock.now()
            // IDevIDs of DevID's own manufacturer CA are registered by serial: its CRL and OCSP responder list them
            // once revoked, and only the listed certificate enrolls.
            let ownManufacturer = state.hierarchy.ownManufacturers.values.contains {
                $0.certificate.sha256Fingerprint == manifest.manufacturerCASHA256
            }
            let devices = manifest.devices.map {
                Device(
                    id: $0.deviceID, tenant: manifest.tenant, hardwareSerial: $0.hardwareSerial, lot: manifest.lot,
                    state: .manufactured, createdAt: now, idevidSerial: ownManufacturer ? $0.idevidSerial : nil,
                    idevidIssuerSHA256: manifest.manufacturerCASHA256, idevidSHA256: $0.idevidSHA256.isEmpty ? nil : $0.idevidSHA256.lowercased())
            }
            do {
                let result = try await store.importDevices(
                    devices,
                    audit: auditor.event(
                        actor: context.actor, action: "device.import", outcome: .success,
                        reason: "imported lot \(manifest.lot): \(devices.count) devices", tenant: manifest.tenant))
                // Serials registered to devices imported before they were kept: a revoked device's IDevID is now
                // revoked (the change stream drops OCSP's cached `unknown` answers for them).
                if result.idevidsRegistered > 0 {
                    await auditor.record(
                        actor: context.actor, action: "device.import", outcome: .success,
                        reason: "lot \(manifest.lot): registered \(result.idevidsRegistered) IDevID serials of devices "
                            + "imported before they were kept; those of revoked devices are revoked",
                        tenant: manifest.tenant)
                }
                return JSONBody(result)
            } catch let error as StoreError where error.code == .duplicate || error.code == .conflict {
                await auditor.record(
                    actor: context.actor, action: "device.import", outcome: .denied, reason: error.reason,
                    tenant: manifest.tenant)
                throw HTTPError(.conflict, message: error.reason)
            }
        }

        admin.get("/devices/:id") { _, context -> JSONBody<DeviceDetail> in
            let device = try await requireDevice(context, store)
            let credentials = try await store.credentials(device: device.id).map(CredentialView.init)
            return JSONBody(DeviceDetail(device: device, credentials: credentials))
        }

        admin.post("/devices/:id/approve") { _, context -> JSONBody<Device> in
            let device = try await requireDevice(context, store)
            guard device.state == .pendingApproval else {
                throw HTTPError(.conflict, message: "device \(device.id) is \(device.state.rawValue), not pending approval")
            }
            try await store.updateDeviceState(
                device.id, from: .pendingApproval, to: .manufactured,
                audit: auditor.event(
                    actor: context.actor, action: "device.approve", outcome: .success,
                    reason: "approved device \(device.id) for enrollment", tenant: device.tenant, device: device.id))
            return JSONBody(try await requireDevice(context, store))
        }

        admin.put("/tenants/:id/policy") { request, context -> JSONBody<Tenant> in
            let update = try await request.decode(as: TenantPolicyUpdate.self, context: context)
            guard let id = TenantID(rawValue: try context.parameters.require("id")),
                let existing = try await store.tenant(id)
            else { throw HTTPError(.notFound, message: "unknown tenant") }
            try context.require(tenant: id)
            // Fields left out keep their current values.
            var policy = existing.policy
            policy.autoRegister = update.autoRegister ?? policy.autoRegister
            policy.manualApproval = update.manualApproval ?? policy.manualApproval
            policy.maxUnboundTokenUses = update.maxUnboundTokenUses ?? policy.maxUnboundTokenUses
            policy.maxUnboundTokenTTL = update.maxUnboundTokenTTL ?? policy.maxUnboundTokenTTL
            guard (1...10_000).contains(policy.maxUnboundTokenUses) else {
                throw HTTPError(.badRequest, message: "maxUnboundTokenUses must be 1-10000")
            }
            guard (1...maximumTokenTTL).contains(policy.maxUnboundTokenTTL) else {
                throw HTTPError(.badRequest, message: "maxUnboundTokenTTL must be 1-\(maximumTokenTTL) seconds")
            }
            // The topic policy has its own endpoint (PolicyRoutes), which validates it; this one keeps it.
            policy.topics = existing.policy.topics
            try await store.updateTenantPolicy(
                id, policy: policy,
                audit: auditor.event(
                    actor: context.actor, action: "tenant.policy", outcome: .success,
                    reason: "auto-register \(policy.autoRegister), manual approval \(policy.manualApproval), "
                        + "unbound claim tokens at most \(policy.maxUnboundTokenUses) use(s) and "
                        + "\(policy.maxUnboundTokenTTL)s", tenant: id))
            guard let tenant = try await store.tenant(id) else { throw HTTPError(.notFound) }
            return JSONBody(tenant)
        }
    }

    static func requireDevice(_ context: OpsRequestContext, _ store: any Store) async throws -> Device {
        guard let id = DeviceID(rawValue: try context.parameters.require("id")) else {
            throw HTTPError(.badRequest, message: "invalid device id")
        }
        guard let device = try await store.device(id) else { throw HTTPError(.notFound, message: "unknown device \(id)") }
        try context.require(tenant: device.tenant)
        return device
    }
}
