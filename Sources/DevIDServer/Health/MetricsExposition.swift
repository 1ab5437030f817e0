import DevIDCore
import DevIDPKI
import DevIDStore
import Foundation
import Prometheus
import X509

/// The body of `GET /metrics`: the Prometheus text format (version 0.0.4).
///
/// The registry is read at scrape time, at the injected clock's `now`, in aggregate queries
/// (``Store/fleetHealth(now:upperBounds:)``, ``Store/credentialCounts(now:)`` and
/// ``Store/rotationProgress(_:now:unreachableAfter:)``): devices by state, the expiry distribution, credentials by
/// status, the rotation campaign's progress. CA, CRL and OCSP-signer dates come from memory. `devid_auth_failures_total` joins the stages counted by
/// ``ServerMetrics`` with the policy decisions' own counters (`authz`). The event-fed counters and histograms
/// follow, from the server's ``ServerMetrics/registry``.
struct MetricsExposition {
    /// Upper bounds of `devid_credential_expiry_seconds`: 1, 7, 14, 30, 60, 90, 180 and 365 days.
    static let expiryBuckets: [TimeInterval] = [1, 7, 14, 30, 60, 90, 180, 365].map { $0 * 86400 }
    static let contentType = "text/plain; version=0.0.4; charset=utf-8"

    let state: ServerState

    func render() async throws -> [UInt8] {
        let now = state.clock.now()
        // Three reads at once (SQLite in WAL mode serves readers in parallel): the scrape costs the slowest, the
        // expiry join, rather than the sum (Benchmarks/metrics/run).
        let store = state.store
        let unreachableAfter = state.configuration.unreachableAfter
        async let fleetRead = store.fleetHealth(now: now, upperBounds: Self.expiryBuckets)
        async let credentialsRead = store.credentialCounts(now: now)
        async let rotationRead = store.rotationProgress(nil, now: now, unreachableAfter: unreachableAfter)
        let (fleet, credentials, rotation) = try await (fleetRead, credentialsRead, rotationRead)
        var text = PrometheusText()

        text.family(
            "devid_devices", type: "gauge",
            help: "Registered devices by tenant and state, read from the registry at scrape time.")
        for row in fleet.devices {
            text.sample(
                "devid_devices", [("tenant", row.tenant.rawValue), ("state", row.state.rawValue)], Double(row.count))
        }

        text.family(
            "devid_credentials", type: "gauge",
            help:
                "Credentials by effective status at scrape time (a credential past notAfter and not revoked is expired)."
        )
        for status in CredentialStatus.allCases {
            text.sample("devid_credentials", [("status", status.rawValue)], Double(credentials[status] ?? 0))
        }

        text.family(
            "devid_credential_expiry_seconds", type: "histogram",
            help: "Time left to notAfter of every current (active, unexpired) LDevID, by tenant, at scrape time.")
        for (tenant, histogram) in fleet.expiry.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
            let labels = [("tenant", tenant.rawValue)]
            for (bound, count) in zip(fleet.upperBounds, histogram.cumulative) {
                text.sample(
                    "devid_credential_expiry_seconds_bucket", labels + [("le", PrometheusText.number(bound))],
                    Double(count))
            }
            text.sample("devid_credential_expiry_seconds_bucket", labels + [("le", "+Inf")], Double(histogram.count))
            text.sample("devid_credential_expiry_seconds_sum", labels, histogram.sum)
            text.sample("devid_credential_expiry_seconds_count", labels, Double(histogram.count))
        }

        text.family(
            "devid_rotation_campaign_devices", type: "gauge",
            help:
                "LDevIDs flagged by rotation campaigns (devid rotate mark), by state: due (all flagged), rotated, pending (device seen recently), unreachable."
        )
        for (name, count) in [
            ("due", rotation.due), ("rotated", rotation.rotated), ("pending", rotation.pending),
            ("unreachable", rotation.unreachable),
        ] {
            // DevID keeps one set of rotation-due flags, not named campaigns: the campaign label is "all" for now.
            text.sample("devid_rotation_campaign_devices", [("campaign", "all"), ("state", name)], Double(count))
        }

        text.family(
            "devid_auth_failures_total", type: "counter",
            help: "Refused identities by stage (tls, est, authz, device_status) and reason, since the server started.")
        let authz = authzFailures()
        for stage in AuthStage.allCases {
            for reason in AuthFailureReason.allCases {
                let count = stage == .authz ? authz[reason, default: 0] : state.metrics.authFailureCount(stage, reason)
                text.sample(
                    "devid_auth_failures_total", [("stage", stage.rawValue), ("reason", reason.rawValue)], Double(count)
                )
            }
        }

        text.family(
            "devid_authz_decisions_total", type: "counter",
            help: "Policy decisions (/v1/authz) by action, result (allow, deny) and reason, since the server started.")
        for (key, count) in state.authz.counters.snapshot() {
            text.sample(
                "devid_authz_decisions_total",
                [("action", key.action), ("result", key.allowed ? "allow" : "deny"), ("reason", key.reason.rawValue)],
                Double(count))
        }

        text.family(
            "devid_ca_expiry_timestamp_seconds", type: "gauge", help: "notAfter of each CA certificate, as a Unix time."
        )
        for (name, certificate) in caCertificates() {
            text.sample(
                "devid_ca_expiry_timestamp_seconds", [("ca", name)], certificate.notValidAfter.timeIntervalSince1970)
        }

        text.family(
            "devid_crl_next_update_timestamp_seconds", type: "gauge",
            help: "nextUpdate of each published CRL (partition \"complete\" for the whole CRL), as a Unix time.")
        for crl in await state.revocation.publishedCRLs() {
            text.sample(
                "devid_crl_next_update_timestamp_seconds", [("ca", crl.caName), ("partition", Self.partition(crl))],
                crl.nextUpdate.timeIntervalSince1970)
        }
        if let root = state.rootCRLs.crls.current(at: now) {
            text.sample(
                "devid_crl_next_update_timestamp_seconds", [("ca", "root"), ("partition", "complete")],
                (root.nextUpdate ?? root.thisUpdate).timeIntervalSince1970)
        }

        text.family(
            "devid_ocsp_signer_expiry_timestamp_seconds", type: "gauge",
            help:
                "notAfter of each CA's current delegated OCSP signer (issued on the first OCSP request), as a Unix time."
        )
        for signer in await state.revocation.ocspSignerExpiries() {
            text.sample(
                "devid_ocsp_signer_expiry_timestamp_seconds", [("ca", signer.ca)], signer.notAfter.timeIntervalSince1970
            )
        }

        ProcessMetrics.write(into: &text)

        var bytes = text.bytes
        state.metrics.registry.emit(into: &bytes)
        return bytes
    }

    /// Denials of the policy decision counters, by failure reason.
    private func authzFailures() -> [AuthFailureReason: Int] {
        var counts: [AuthFailureReason: Int] = [:]
        for (key, count) in state.authz.counters.snapshot() where !key.allowed {
            guard let reason = AuthFailureReason(key.reason) else { continue }
            counts[reason, default: 0] += count
        }
        return counts
    }

    /// Every CA of the hierarchy by a fixed name; an external manufacturer CA by the first 16 hex digits of its
    /// SHA-256 fingerprint (bounded by the configuration, stable across restarts).
    private func caCertificates() -> [(String, Certificate)] { Self.caCertificates(state) }

    static func caCertificates(_ state: ServerState) -> [(String, Certificate)] {
        let hierarchy = state.hierarchy
        var result: [(String, Certificate)] = [("root", hierarchy.root)]
        // Every issuing CA that is not revoked, by its CRL name (`issuing`, `issuing2`, ...).
        for authority in state.issuers.snapshot.trusted { result.append((authority.crlName, authority.certificate)) }
        if let services = hierarchy.services { result.append(("services", services.certificate)) }
        for (id, own) in hierarchy.ownManufacturers.sorted(by: { $0.key < $1.key })
        where hierarchy.trustedManufacturers.contains(own.certificate) {
            result.append((id == 1 ? "manufacturer" : "manufacturer\(id)", own.certificate))
        }
        let own = Set(hierarchy.ownManufacturers.values.map(\.certificate))
        for external in hierarchy.trustedManufacturers where !own.contains(external) {
            result.append(("manufacturer-" + String(external.sha256Fingerprint.prefix(16)), external))
        }
        return result
    }

    /// `complete` for a CA's whole CRL, `<count>-<index>` for a partition (`issuing-4-0` is `4-0`).
    static func partition(_ crl: PublishedCRL) -> String {
        partitionLabel(name: crl.name, caName: crl.caName)
    }

    static func partitionLabel(name: String, caName: String) -> String {
        guard name != caName, name.hasPrefix(caName + "-") else { return "complete" }
        return String(name.dropFirst(caName.count + 1))
    }
}
