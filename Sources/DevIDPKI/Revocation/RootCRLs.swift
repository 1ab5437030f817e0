import DevIDCore
public import Foundation
public import X509

/// The root CA's own CRL (an authority revocation list): which issuing CAs the root revoked. It is what
/// `openssl verify -crl_check_all` and other strict validators need for the middle of an LDevID's path.
///
/// The root key is offline in production, so the root cannot sign a fresh CRL whenever one is due. Instead the
/// ceremonies that do have the root key (`devid ca init`, `devid ca root-crl --root-key FILE`) sign a schedule of
/// CRLs ahead: one every ``period`` (30 days), each valid for ``validity`` (45 days), so the next one is current
/// 15 days before the last one ends. The server serves the newest whose thisUpdate has come
/// (``current(at:)``): each has its own CRL number, in order.
///
/// ```
/// DATA/ca/root-crl/000001.crl   DER, CRL number 1, thisUpdate = the ceremony
/// DATA/ca/root-crl/000002.crl   CRL number 2, thisUpdate 30 days later
/// ...
/// ```
public struct RootCRLs: Sendable {
    public static let period: TimeInterval = 30 * 86_400
    public static let validity: TimeInterval = 45 * 86_400
    /// How many a ceremony signs by default: 13, a little over a year.
    public static let defaultCount = 13

    /// Every pre-signed CRL, by CRL number.
    public let crls: [CertificateRevocationList]

    public init(crls: [CertificateRevocationList]) {
        self.crls = crls.sorted { ($0.crlNumber ?? 0) < ($1.crlNumber ?? 0) }
    }

    /// The newest CRL whose thisUpdate is not after `now`; nil before the first. Past the last one's nextUpdate it
    /// is still the last one (stale: relying parties refuse it, and the `crl_stale` check says so).
    public func current(at now: Date) -> CertificateRevocationList? {
        crls.last { $0.thisUpdate <= now }
    }

    /// When the last pre-signed CRL ends: a root ceremony must sign more before then.
    public var signedUntil: Date? { crls.map { $0.nextUpdate ?? $0.thisUpdate }.max() }

    /// Reads every `*.crl` of `directory` (none if it does not exist), checking each is signed by `root`.
    public static func load(directory: String, root: Certificate) throws(DevIDPKIError) -> RootCRLs {
        guard let names = try? FileManager.default.contentsOfDirectory(atPath: directory) else {
            return RootCRLs(crls: [])
        }
        var crls: [CertificateRevocationList] = []
        for name in names.sorted() where name.hasSuffix(".crl") {
            guard let data = FileManager.default.contents(atPath: directory + "/" + name) else {
                throw DevIDPKIError(.notFound, "root CRL \(name) cannot be read")
            }
            let crl = try CertificateRevocationList(derEncoded: Array(data))
            guard crl.issuer == root.subject, crl.isSignatureValid(issuer: root) else {
                throw DevIDPKIError(.policyViolation, "root CRL \(name) is not signed by the root CA")
            }
            crls.append(crl)
        }
        return RootCRLs(crls: crls)
    }

    /// Signs `count` CRLs with the root's key, one every ``period`` from `start` (or, when CRLs are already
    /// signed, from the last one's thisUpdate plus a period, never before `now`), numbered after the highest, and
    /// writes them to `directory` (created 0755; files 0644).
    ///
    /// `revoked` lists issuing CAs the root revokes; every entry of the newest CRL already signed is carried
    /// forward, so a revoked CA stays listed. When `revoked` names a CA no signed CRL lists yet, the new series
    /// starts at `now` (so the next request already gets it), and the CRLs signed earlier for later dates, which
    /// do not list it, are deleted.
    @discardableResult
    public static func sign(
        root: CertificateAuthority, revoked: [RevokedEntry] = [], count: Int, now: Date, directory: String
    ) throws(DevIDPKIError) -> RootCRLs {
        guard count > 0, count <= 120 else {
            throw DevIDPKIError(.policyViolation, "sign between 1 and 120 root CRLs at a time")
        }
        let existing = try load(directory: directory, root: root.certificate)
        var number = existing.crls.compactMap(\.crlNumber).max() ?? 0
        let carried = existing.crls.last?.entries ?? []
        let added = revoked.filter { entry in !carried.contains { $0.serial == entry.serial } }
        let entries = carried + added
        var start = now
        var kept = existing.crls
        if !added.isEmpty {
            for crl in existing.crls where crl.thisUpdate > now {
                if let crlNumber = crl.crlNumber { try? FileManager.default.removeItem(atPath: directory + "/" + fileName(crlNumber)) }
            }
            kept = existing.crls.filter { $0.thisUpdate <= now }
        } else if let last = existing.crls.last, last.thisUpdate.addingTimeInterval(period) > now {
            start = last.thisUpdate.addingTimeInterval(period)
        }
        try SecureFile.createDirectory(directory, mode: 0o755)
        let builder = try CRLBuilder(authority: root)
        var signed = kept
        for index in 0..<count {
            number += 1
            let thisUpdate = start.addingTimeInterval(Double(index) * period)
            let crl = try builder.build(
                entries: entries, thisUpdate: thisUpdate, nextUpdate: thisUpdate.addingTimeInterval(validity),
                crlNumber: number)
            try SecureFile.write(crl.derBytes, to: directory + "/" + fileName(number), mode: 0o644)
            signed.append(crl)
        }
        return RootCRLs(crls: signed)
    }

    static func fileName(_ number: UInt64) -> String {
        let digits = String(number)
        return String(repeating: "0", count: max(0, 6 - digits.count)) + digits + ".crl"
    }
}
