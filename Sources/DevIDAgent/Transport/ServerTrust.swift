import Foundation
import NIOCore
import SwiftASN1
@_spi(FixedExpiryValidationTime) import X509

/// How the agent decides whether the EST server's TLS certificate is the DevID server's, at the agent's time.
///
/// BoringSSL would check the server's certificate against the machine's real clock, which on a device whose RTC
/// reset reads 1970: every certificate is "not yet valid" and the device could never reach the server to learn the
/// time. So the agent's transport (``HTTPSTransport``) replaces BoringSSL's check with this one, which validates with
/// swift-certificates' `Verifier` at a time the agent chooses:
///
/// - the trust bundle is the only set of roots (never the system store);
/// - `RFC5280Policy` at the validation time (signatures, basic constraints, key usage, name constraints, validity of
///   every certificate in the chain);
/// - `ServerIdentityPolicy`: the leaf names the host the agent connects to (DNS or IP SAN, RFC 6125);
/// - ``ServerAuthPolicy``: the leaf, if it has an extended key usage, allows `serverAuth`;
/// - ``ESTServerPolicy``: the leaf is DevID's EST server certificate (id-kp-cmcRA in its extended key usage, RFC 7030
///   §3.6.1), and no CA of the chain bounds its usages to exclude id-kp-cmcRA. DevID's services CA does: a broker's
///   certificate, though it chains to the same root and names the same `localhost`, is never the EST server.
///
/// ## Which time
/// ``Mode/strict(at:)`` — every request — validates at the agent's *corrected* time (``ServerClock/now()``: the
/// device clock plus the skew learnt from the server's `DevID-Time`). A certificate that is expired or not yet valid
/// at that time is refused.
///
/// ``Mode/timeProbe`` is only used when the device clock is *known* to be wrong: when the corrected time is earlier
/// than ``timeFloor``, the newest `notBefore` of the certificates the agent holds (trust bundle, IDevID or LDevID
/// chain). None of them can have been issued in the future, so a clock before the floor is certainly wrong (an RTC
/// reset to 1970). Then one `GET /cacerts` without client certificate, credentials or body is sent, its chain
/// validated at `max(timeFloor, leaf.notBefore)` — the earliest moment consistent with what the agent knows at
/// which the server's certificate can be valid — and only the server's time is taken from the answer. The real
/// request follows on a new connection, validated strictly at the corrected time. See ``ESTClient`` and
/// `docs/agent.md` ("Time and the server's certificate") for what an attacker on the path can and cannot do.
///
/// This file, like `DevIDPKI`'s `TrustVerifier`, uses swift-certificates' `FixedExpiryValidationTime` SPI: the public
/// `RFC5280Policy()` reads the real clock, which is exactly what must not decide here.
struct ServerTrust: Sendable {
    enum Mode: Sendable, Hashable {
        /// Validate at the agent's corrected time.
        case strict(at: Date)
        /// The device clock is before ``ServerTrust/timeFloor``: validate at `max(timeFloor, leaf.notBefore)`, only to
        /// learn the server's time.
        case timeProbe
    }

    enum Outcome: Sendable, Hashable {
        case trusted
        /// One line, safe to log: what is wrong with the server's certificate.
        case untrusted(reason: String)
    }

    /// The only certificates a server chain may end in.
    let roots: [Certificate]
    /// The host the agent connects to (a DNS name or an IP address literal).
    let host: String
    /// No certificate the agent holds was issued after now: a device clock earlier than this is wrong.
    let timeFloor: Date

    init(roots: [Certificate], host: String, holding others: [Certificate]) {
        self.roots = roots
        self.host = host
        self.timeFloor = Self.timeFloor(roots + others)
    }

    /// The newest `notBefore` of `certificates` (`distantPast` for none).
    static func timeFloor(_ certificates: [Certificate]) -> Date {
        certificates.map(\.notValidBefore).max() ?? .distantPast
    }

    /// The time a chain is validated at in `mode`.
    func validationTime(_ mode: Mode, leaf: Certificate) -> Date {
        switch mode {
        case .strict(let time): time
        case .timeProbe: max(timeFloor, leaf.notValidBefore)
        }
    }

    /// Validates the chain the server presented (leaf first).
    func evaluate(_ presented: [Certificate], mode: Mode) async -> Outcome {
        guard let leaf = presented.first else { return .untrusted(reason: "the server sent no certificate") }
        let time = validationTime(mode, leaf: leaf)
        let identity = ServerIdentityPolicy(
            serverHostname: Self.isIPAddress(host) ? nil : host, serverIP: Self.isIPAddress(host) ? host : nil)
        var verifier = Verifier(rootCertificates: CertificateStore(roots)) {
            RFC5280Policy(fixedExpiryValidationTime: time)
            identity
            ServerAuthPolicy()
            ESTServerPolicy()
        }
        let result = await verifier.validate(leaf: leaf, intermediates: CertificateStore(Array(presented.dropFirst())))
        if case .validCertificate = result { return .trusted }
        return .untrusted(reason: await diagnose(leaf: leaf, presented: presented, identity: identity, at: time))
    }

    /// Why a chain failed, most specific first.
    private func diagnose(
        leaf: Certificate, presented: [Certificate], identity: ServerIdentityPolicy, at time: Date
    ) async -> String {
        let when = Self.format(time)
        if time < leaf.notValidBefore {
            return "the server's certificate is not yet valid at the agent's time \(when) "
                + "(valid from \(Self.format(leaf.notValidBefore)))"
        }
        if time > leaf.notValidAfter {
            return "the server's certificate has expired at the agent's time \(when) "
                + "(valid until \(Self.format(leaf.notValidAfter)))"
        }
        // Only for the message, never for trust: the leaf alone as its own root, checked for the name only (its
        // critical extensions declared handled, else the Verifier refuses them as not understood).
        let critical = leaf.extensions.filter(\.critical).map(\.oid)
        var nameCheck = Verifier(rootCertificates: CertificateStore([leaf])) {
            DeclaresExtensionsHandled(verifyingCriticalExtensions: critical)
            identity
        }
        if case .couldNotValidate = await nameCheck.validate(leaf: leaf, intermediates: CertificateStore()) {
            return "the server's certificate does not name \(host)"
        }
        if let usage = try? leaf.extensions.extendedKeyUsage, !usage.contains(ExtendedKeyUsage.Usage.serverAuth) {
            return "the server's certificate is not for TLS servers (no serverAuth extended key usage)"
        }
        if !ESTServerPolicy.isESTServer(leaf) {
            return "the server's certificate is not DevID's EST server certificate (no id-kp-cmcRA extended key "
                + "usage): a broker's or other service's certificate cannot stand in for the EST server"
        }
        if let ca = presented.dropFirst().first(where: { !ESTServerPolicy.allowsESTServer($0) }) {
            return "a CA of the server's chain does not allow id-kp-cmcRA (\(ca.subject)): its certificates cannot "
                + "be the EST server's"
        }
        if presented.dropFirst().contains(where: { time < $0.notValidBefore || time > $0.notValidAfter }) {
            return "a CA certificate of the server's chain is not valid at the agent's time \(when)"
        }
        return "the server's certificate does not chain to the trust bundle"
    }

    static func isIPAddress(_ host: String) -> Bool {
        (try? SocketAddress(ipAddress: host, port: 0)) != nil
    }

    static func format(_ date: Date) -> String {
        date.formatted(.iso8601)
    }
}

/// Meets every chain; only declares extensions handled. For the diagnosis in ``ServerTrust``, never for trust.
private struct DeclaresExtensionsHandled: VerifierPolicy {
    let verifyingCriticalExtensions: [ASN1ObjectIdentifier]

    func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) async -> PolicyEvaluationResult {
        .meetsPolicy
    }
}

/// The leaf is for TLS servers: if it has an extended key usage, `serverAuth` is in it (RFC 5280 §4.2.1.12).
///
/// A DevID LDevID (clientAuth only) or IDevID is therefore never accepted as the server's certificate, even though it
/// chains to a trusted CA.
struct ServerAuthPolicy: VerifierPolicy {
    let verifyingCriticalExtensions: [ASN1ObjectIdentifier] = [.X509ExtensionID.extendedKeyUsage]

    func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) async -> PolicyEvaluationResult {
        let usage: ExtendedKeyUsage?
        do {
            usage = try chain.leaf.extensions.extendedKeyUsage
        } catch {
            return .failsToMeetPolicy(reason: "the leaf's extended key usage does not parse")
        }
        guard let usage else { return .meetsPolicy }
        return usage.contains(ExtendedKeyUsage.Usage.serverAuth)
            ? .meetsPolicy : .failsToMeetPolicy(reason: "the leaf is not for serverAuth")
    }
}

/// The leaf is an EST server's certificate: id-kp-cmcRA (1.3.6.1.5.5.7.3.28) is in its extended key usage (RFC 7030
/// §3.6.1), which DevID puts in its own listener certificate only. And every CA certificate of the chain that has an
/// extended key usage allows id-kp-cmcRA: an EKU in a CA certificate bounds the usages under it, and DevID's services
/// CA (which issues brokers' certificates) carries serverAuth and clientAuth only.
struct ESTServerPolicy: VerifierPolicy {
    static let cmcRA: ASN1ObjectIdentifier = [1, 3, 6, 1, 5, 5, 7, 3, 28]
    let verifyingCriticalExtensions: [ASN1ObjectIdentifier] = []

    func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) async -> PolicyEvaluationResult {
        guard Self.isESTServer(chain.leaf) else {
            return .failsToMeetPolicy(reason: "the leaf is not an EST server certificate (no id-kp-cmcRA)")
        }
        for ca in chain.dropFirst() where !Self.allowsESTServer(ca) {
            return .failsToMeetPolicy(reason: "a CA of the chain does not allow id-kp-cmcRA")
        }
        return .meetsPolicy
    }

    static func isESTServer(_ certificate: Certificate) -> Bool {
        guard let usage = (try? certificate.extensions.extendedKeyUsage) ?? nil else { return false }
        return usage.contains(ExtendedKeyUsage.Usage(oid: cmcRA))
    }

    /// A certificate without an extended key usage allows everything; one with it must name id-kp-cmcRA (or any).
    static func allowsESTServer(_ certificate: Certificate) -> Bool {
        guard let usage = (try? certificate.extensions.extendedKeyUsage) ?? nil else { return true }
        return usage.contains(ExtendedKeyUsage.Usage(oid: cmcRA)) || usage.contains(.any)
    }
}
