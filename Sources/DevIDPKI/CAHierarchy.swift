import DevIDCore
public import DevIDPKCS11
public import Foundation
import SwiftASN1
public import X509

/// Where the CA hierarchy lives in the data directory.
///
/// ```
/// DATA/ca/root.crt                     root CA (P-384, 20 years, pathLen 2)
/// DATA/ca/root.key                     its key, encrypted (absent when written elsewhere with --root-key-out)
/// DATA/ca/issuing.crt, issuing.key     issuing CA for LDevIDs (P-256, 5 years, pathLen 0)
/// DATA/ca/issuing-chain.pem            issuing + root, what EST /cacerts serves
/// DATA/ca/services.crt, services.key   services CA for brokers' TLS certificates (P-256, 5 years, pathLen 0,
///                                      EKU serverAuth + clientAuth: never the EST server)
/// DATA/ca/services-chain.pem           services + root
/// DATA/ca/manufacturer.crt, .key       DevID's own manufacturer CA for IDevIDs (self-signed, separate chain)
/// DATA/ca/trusted-manufacturers/*.pem  every manufacturer CA whose IDevIDs may enroll
/// DATA/tls/server.crt, server.key      the listeners' certificate (chain: server + issuing; EKU serverAuth and
///                                      id-kp-cmcRA, the mark of the EST server)
/// DATA/ca/root-crl/NNNNNN.crl          the root's CRLs, signed ahead at each root ceremony (``RootCRLs``)
/// DATA/ca/hierarchy.json               trust domain and creation time
/// ```
/// With a revocation base URL at `devid ca init`, the issuing and services CA certificates name the root's CRL
/// (`<base>/crl/root.crl`) in their CRL Distribution Points.
/// Keys are PKCS#8 encrypted with PBES2 (PBKDF2-HMAC-SHA256, AES-256-CBC), mode 0600.
public struct CALayout: Sendable, Hashable {
    public let dataDirectory: String

    public init(dataDirectory: String) {
        self.dataDirectory = dataDirectory
    }

    public var caDirectory: String { dataDirectory + "/ca" }
    public var tlsDirectory: String { dataDirectory + "/tls" }
    public var rootCertificate: String { caDirectory + "/root.crt" }
    public var rootKey: String { caDirectory + "/root.key" }
    public var issuingCertificate: String { caDirectory + "/issuing.crt" }
    public var issuingKey: String { caDirectory + "/issuing.key" }
    public var issuingChain: String { caDirectory + "/issuing-chain.pem" }
    public var servicesCertificate: String { caDirectory + "/services.crt" }
    public var servicesKey: String { caDirectory + "/services.key" }
    public var servicesChain: String { caDirectory + "/services-chain.pem" }
    public var manufacturerCertificate: String { caDirectory + "/manufacturer.crt" }
    public var manufacturerKey: String { caDirectory + "/manufacturer.key" }
    public var trustedManufacturers: String { caDirectory + "/trusted-manufacturers" }
    public var serverCertificate: String { tlsDirectory + "/server.crt" }
    public var serverKey: String { tlsDirectory + "/server.key" }
    public var metadata: String { caDirectory + "/hierarchy.json" }
    public var rootCRLDirectory: String { caDirectory + "/root-crl" }

    public var isInitialized: Bool { FileManager.default.fileExists(atPath: metadata) }
}

/// What `devid ca init` records beside the certificates.
public struct CAMetadata: Codable, Sendable, Hashable {
    public var trustDomain: String
    public var createdAt: Date
    /// Where the root key was written, when not in the data directory.
    public var rootKeyLocation: String?
    public var serverNames: [String]
    /// True when the CA keys live in a token: the listeners' key is then never written anywhere: a new one is made in
    /// memory at every start and certified by the issuing CA (``CAStore/load(layout:passphrase:)``), so the data
    /// directory holds no private key at all and a TLS handshake never waits for the token.
    public var listenerKeyInMemory: Bool?

    /// `DATA/ca/hierarchy.json`.
    static func read(_ layout: CALayout) throws(DevIDPKIError) -> CAMetadata {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        guard let metadata = try? decoder.decode(CAMetadata.self, from: Data(SecureFile.read(layout.metadata))) else {
            throw DevIDPKIError(.malformed, "\(layout.metadata) is not valid CA metadata")
        }
        return metadata
    }

    /// Writes `DATA/ca/hierarchy.json` (0644, atomically).
    func write(_ layout: CALayout) throws(DevIDPKIError) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        guard let json = try? encoder.encode(self) else {
            throw DevIDPKIError(.malformed, "CA metadata could not be encoded")
        }
        try SecureFile.write(Array(json), to: layout.metadata, mode: 0o644)
    }
}

/// Options for creating a hierarchy.
public struct CAInitOptions: Sendable {
    public var trustDomain: String
    /// Write the root key here instead of the data directory (the server never needs it day to day).
    public var rootKeyOut: String?
    /// External manufacturer CA certificates to trust. When given, DevID does not create its own manufacturer CA
    /// unless `createManufacturerCA` is also set.
    public var externalManufacturerCAs: [Certificate]
    public var createManufacturerCA: Bool
    /// Extra DNS names or IP addresses for the server certificate (besides localhost and 127.0.0.1).
    public var serverNames: [String]
    public var organization: String
    /// PBKDF2 rounds for the key files.
    public var keyEncryptionRounds: Int
    /// Where relying parties fetch the root's CRL (`<base>/crl/root.crl`), named in the CRL Distribution Points of
    /// the issuing and services CA certificates; nil names none.
    public var revocationBaseURL: String?
    /// A `pkcs11:` token URI: the CA keys are generated inside that token (objects `root`, `issuing`, `services`,
    /// `manufacturer`), never written to the data directory. Nil keeps them in encrypted files.
    public var keyURI: String?
    /// A `pkcs11:` token URI for the root key alone (an offline token); default: ``keyURI``'s token, or the file
    /// ``rootKeyOut``.
    public var rootKeyURI: String?

    public init(
        trustDomain: String, rootKeyOut: String? = nil, externalManufacturerCAs: [Certificate] = [],
        createManufacturerCA: Bool? = nil, serverNames: [String] = [], organization: String = "DevID",
        keyEncryptionRounds: Int = 100_000
    ) {
        self.trustDomain = trustDomain
        self.rootKeyOut = rootKeyOut
        self.externalManufacturerCAs = externalManufacturerCAs
        self.createManufacturerCA = createManufacturerCA ?? externalManufacturerCAs.isEmpty
        self.serverNames = serverNames
        self.organization = organization
        self.keyEncryptionRounds = keyEncryptionRounds
    }

    /// A trust domain is a DNS-like name: lowercase letters, digits, dots and dashes (SPIFFE §2.1).
    public static func isValidTrustDomain(_ name: String) -> Bool {
        !name.isEmpty && name.utf8.count <= 255
            && name.utf8.allSatisfy {
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains($0) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0)
                    || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") || $0 == UInt8(ascii: "_")
            }
    }
}

/// The loaded hierarchy the server runs with. The root key is never loaded.
public struct CAHierarchy: Sendable {
    public let metadata: CAMetadata
    public let root: Certificate
    public let issuing: CertificateAuthority
    /// DevID's own active manufacturer CA, when it has one (the factory tooling mints new lots with it).
    public let manufacturer: CertificateAuthority?
    /// Every manufacturer CA whose IDevIDs may enroll (DevID's own included).
    public let trustedManufacturers: [Certificate]
    /// Server certificate followed by the issuing CA.
    public let serverChain: [Certificate]
    /// The server's PKCS#8 key DER, for the TLS stack (made at load when ``CAMetadata/listenerKeyInMemory``).
    public let serverKeyPKCS8: [UInt8]
    /// The services CA, which issues brokers' TLS certificates; nil in a data directory made before it existed whose
    /// root key is not at hand (`devid ca init-services` creates it).
    public let services: CertificateAuthority?
    /// Every issuing CA in the data directory, by id (``issuing`` is the first). Which one signs, and which are
    /// still trusted, is the registry's word (``IssuingCA``); the server keeps that in its ``IssuingAuthorities``.
    public let issuingAuthorities: [IssuingAuthority]
    /// Every root (``root`` is root 1), their cross-certificates and which one is active.
    public let roots: Roots
    /// Every manufacturer CA of DevID's own, by id (``manufacturer`` is the active one, which mints new lots).
    public let ownManufacturers: [Int: CertificateAuthority]

    public var trustDomain: String { metadata.trustDomain }

    /// Verifies device certificates: LDevIDs chain to the issuing CA; IDevIDs to a manufacturer CA.
    ///
    /// The issuing CA is an anchor of its own, so a device chain ends there and each handshake verifies one P-256
    /// signature (the leaf's) instead of also the root's P-384 signature over the issuing CA, which never changes:
    /// ``CAStore/load(layout:passphrase:)`` checks that signature once. The issuing CA's validity period is still
    /// checked at every validation (swift-certificates checks every certificate of the chain, anchor included).
    ///
    /// The root is not an anchor: the only other CA under it is the services CA, and a broker's certificate is no
    /// device identity.
    public var deviceTrust: TrustVerifier {
        TrustVerifier(anchors: [issuing.certificate] + trustedManufacturers, intermediates: [])
    }

    /// The certificates EST `/cacerts` returns: issuing CA and root.
    public var estCACertificates: [Certificate] { [issuing.certificate, root] }

    /// The services CA, or `.notFound` naming the command that creates it (a data directory made before the services
    /// CA existed, whose root key is kept elsewhere).
    public func requireServices() throws(DevIDPKIError) -> CertificateAuthority {
        guard let services else { throw DevIDPKIError(.notFound, Self.noServicesCA) }
        return services
    }

    /// Why there is no broker certificate without a services CA, and what to run.
    public static let noServicesCA =
        "no services CA to issue broker certificates: the root key is not in the data directory; run "
        + "`devid ca init-services --root-key PATH` and restart `devid serve`"
}

/// Creates and loads the CA hierarchy on disk.
public enum CAStore {
    /// The result of creating a hierarchy.
    public struct Created: Sendable {
        public let hierarchy: CAHierarchy
        public let rootKeyPath: String
    }

    /// Creates root, issuing, manufacturer CA and server certificate under `layout`.
    /// Fails with `.alreadyExists` (changing nothing) if a hierarchy is already there.
    public static func initialize(
        layout: CALayout, options: CAInitOptions, passphrase: [UInt8], now: Date
    ) throws(DevIDPKIError) -> Created {
        guard !layout.isInitialized, !FileManager.default.fileExists(atPath: layout.rootCertificate) else {
            throw DevIDPKIError(.alreadyExists, "a CA hierarchy already exists in \(layout.dataDirectory)")
        }
        guard CAInitOptions.isValidTrustDomain(options.trustDomain) else {
            throw DevIDPKIError(.policyViolation, "trust domain must be a lowercase DNS-like name (a-z 0-9 . - _)")
        }
        guard !passphrase.isEmpty else {
            throw DevIDPKIError(.wrongPassphrase, "the CA passphrase is empty")
        }
        for ca in options.externalManufacturerCAs where !ca.isCertificateAuthority {
            throw DevIDPKIError(.policyViolation, "manufacturer certificate \(ca.subject) is not a CA certificate")
        }
        if let out = options.rootKeyOut, FileManager.default.fileExists(atPath: out) {
            throw DevIDPKIError(.alreadyExists, "root key output \(out) already exists")
        }
        let org = options.organization
        func name(_ cn: String) throws(DevIDPKIError) -> DistinguishedName {
            do {
                return try DistinguishedName {
                    OrganizationName(org)
                    OrganizationalUnitName(options.trustDomain)
                    CommonName(cn)
                }
            } catch { throw DevIDPKIError(.malformed, "CA name could not be encoded") }
        }

        func tokenURI(_ text: String?) throws(DevIDPKIError) -> PKCS11URI? {
            guard let text else { return nil }
            do { return try PKCS11URI(text).tokenURI } catch { throw DevIDPKIError(error) }
        }
        let token = try tokenURI(options.keyURI)
        let rootToken = try tokenURI(options.rootKeyURI) ?? (options.rootKeyOut == nil ? token : nil)
        let rounds = options.keyEncryptionRounds
        let rootKeyPath = options.rootKeyOut ?? layout.rootKey
        // Directories first: a key made in a token is recorded by a reference file beside where its file would be.
        try SecureFile.createDirectory(layout.dataDirectory)
        try SecureFile.createDirectory(layout.caDirectory)
        try SecureFile.createDirectory(layout.tlsDirectory)
        try SecureFile.createDirectory(layout.trustedManufacturers)
        func makeKey(_ path: String, _ algorithm: KeyAlgorithm, _ token: PKCS11URI?, _ label: String)
            throws(DevIDPKIError) -> Certificate.PrivateKey
        {
            try CAKeys.create(path, algorithm: algorithm, token: token, label: label, passphrase: passphrase, rounds: rounds)
        }

        let rootKey = try makeKey(rootKeyPath, .p384, rootToken, "root")
        let root = try CertificateAuthority.makeRoot(
            subject: try name("DevID Root CA"), key: rootKey, profile: .root, now: now)

        let issuingKey = try makeKey(layout.issuingKey, .p256, token, "issuing")
        var caExtensions: [Certificate.Extension] = []
        if let base = options.revocationBaseURL {
            caExtensions = try RevocationExtensions.caExtensions(baseURL: base, rootName: "root")
        }
        let issuingCert = try root.issue(
            subject: try name("DevID Issuing CA"), publicKey: issuingKey.publicKey, profile: .issuing, now: now,
            additionalExtensions: caExtensions)
        let issuing = try CertificateAuthority(certificate: issuingCert, signingKey: issuingKey)
        let services = try makeServicesCA(
            root: root, name: try name("DevID Services CA"), now: now, extensions: caExtensions,
            key: try makeKey(layout.servicesKey, .p256, token, "services"))

        var manufacturer: CertificateAuthority?
        if options.createManufacturerCA {
            let key = try makeKey(layout.manufacturerKey, .p256, token, "manufacturer")
            manufacturer = try CertificateAuthority.makeRoot(
                subject: try name("DevID Manufacturer CA"), key: key, profile: .manufacturer, now: now,
                additionalExtensions: try ownManufacturerExtensions(baseURL: options.revocationBaseURL, id: 1))
        }

        let serverNames = ["localhost", "127.0.0.1"] + options.serverNames.filter { $0 != "localhost" && $0 != "127.0.0.1" }
        // The listeners' key: an encrypted file, or, with the CA keys in a token, only in memory (a new one at every
        // start, see ``CAMetadata/listenerKeyInMemory``).
        let (serverKey, generatedServerPKCS8) = try KeyMaterial.generateWithDER(.p256)
        let serverPKCS8 = token == nil ? generatedServerPKCS8 : nil
        let serverCert = try issuing.issue(
            subject: try name("DevID Server"), publicKey: serverKey.publicKey, profile: .serverTLS,
            subjectAlternativeNames: serverNames.map(generalName(forHost:)), now: now)

        let metadata = CAMetadata(
            trustDomain: options.trustDomain, createdAt: now,
            rootKeyLocation: rootToken.map { $0.naming(object: "root").description } ?? options.rootKeyOut,
            serverNames: serverNames, listenerKeyInMemory: token == nil ? nil : true)

        // Write everything; the metadata file last, so a crash midway leaves no "initialized" hierarchy.
        func writeKey(_ der: [UInt8], _ path: String) throws(DevIDPKIError) {
            let pem = try EncryptedPrivateKey.encryptPEM(privateKeyInfoDER: der, passphrase: passphrase, iterations: rounds)
            try SecureFile.write(Array(pem.utf8), to: path, mode: 0o600)
        }
        func writeCert(_ certs: [Certificate], _ path: String) throws(DevIDPKIError) {
            try SecureFile.write(Array(PEM.bundle(certs).utf8), to: path, mode: 0o644)
        }
        try writeCert([root.certificate], layout.rootCertificate)
        try writeCert([issuing.certificate], layout.issuingCertificate)
        try writeCert([issuing.certificate, root.certificate], layout.issuingChain)
        try writeCert([services.certificate], layout.servicesCertificate)
        try writeCert([services.certificate, root.certificate], layout.servicesChain)
        if let ca = manufacturer {
            try writeCert([ca.certificate], layout.manufacturerCertificate)
            try writeCert([ca.certificate], layout.trustedManufacturers + "/devid-manufacturer.pem")
        }
        for external in options.externalManufacturerCAs {
            try writeCert([external], layout.trustedManufacturers + "/\(external.sha256Fingerprint.prefix(16)).pem")
        }
        if let serverPKCS8 { try writeKey(serverPKCS8, layout.serverKey) }
        try writeCert([serverCert, issuing.certificate], layout.serverCertificate)
        try RootCRLs.sign(root: root, count: RootCRLs.defaultCount, now: now, directory: layout.rootCRLDirectory)
        try metadata.write(layout)

        let hierarchy = try load(layout: layout, passphrase: passphrase)
        return Created(hierarchy: hierarchy, rootKeyPath: metadata.rootKeyLocation ?? rootKeyPath)
    }

    /// Loads the hierarchy the server needs (never the root key).
    public static func load(layout: CALayout, passphrase: [UInt8]) throws(DevIDPKIError) -> CAHierarchy {
        guard layout.isInitialized else {
            throw DevIDPKIError(.notFound, "no CA hierarchy in \(layout.dataDirectory); run `devid ca init`")
        }
        let metadata = try CAMetadata.read(layout)
        let root = try readCertificate(layout.rootCertificate)
        let issuing = try CertificateAuthority(
            certificate: try readCertificate(layout.issuingCertificate),
            signingKey: try readKey(layout.issuingKey, passphrase: passphrase))
        // ``CAHierarchy/deviceTrust`` anchors the issuing CA itself; this is the one check that it is the root's.
        guard issuing.certificate.issuer == root.subject,
            root.publicKey.isValidSignature(issuing.certificate.signature, for: issuing.certificate)
        else {
            throw DevIDPKIError(.malformed, "\(layout.issuingCertificate) is not signed by the root in \(layout.rootCertificate)")
        }
        let own = try loadOwnManufacturers(layout: layout, passphrase: passphrase)
        let manufacturer = own.cas[own.state.active] ?? own.cas[1]
        var trusted: [Certificate] = []
        let files = (try? FileManager.default.contentsOfDirectory(atPath: layout.trustedManufacturers)) ?? []
        for file in files.sorted() where file.hasSuffix(".pem") || file.hasSuffix(".crt") {
            let text = String(decoding: try SecureFile.read(layout.trustedManufacturers + "/" + file), as: UTF8.self)
            trusted.append(contentsOf: try PEM.certificates(text))
        }
        var services: CertificateAuthority?
        if FileManager.default.fileExists(atPath: layout.servicesCertificate) {
            let ca = try CertificateAuthority(
                certificate: try readCertificate(layout.servicesCertificate),
                signingKey: try readKey(layout.servicesKey, passphrase: passphrase))
            guard ca.certificate.issuer == root.subject,
                root.publicKey.isValidSignature(ca.certificate.signature, for: ca.certificate),
                ca.certificate != issuing.certificate
            else {
                throw DevIDPKIError(
                    .malformed, "\(layout.servicesCertificate) is not signed by the root in \(layout.rootCertificate)")
            }
            services = ca
        }
        let serverChain = try PEM.certificates(
            String(decoding: try SecureFile.read(layout.serverCertificate), as: UTF8.self))
        var serverPKCS8: [UInt8] = []
        if metadata.listenerKeyInMemory == true {
            // A new listener key for this process; `devid serve` certifies it at start
            // (``reissueServerCertificate(layout:current:issuing:now:publicKey:)``) before it listens.
            serverPKCS8 = try KeyMaterial.generateWithDER(.p256).pkcs8
        }
        let roots = try loadRoots(layout: layout)
        let authorities = try loadIssuingAuthorities(layout: layout, passphrase: passphrase, roots: roots, first: issuing)
        // The EST listener presents only a certificate of an issuing CA: never a services-CA (broker) certificate,
        // which the agent would refuse anyway.
        guard let serverLeaf = serverChain.first,
            authorities.contains(where: {
                serverLeaf.issuer == $0.certificate.subject
                    && $0.certificate.publicKey.isValidSignature(serverLeaf.signature, for: serverLeaf)
            })
        else {
            throw DevIDPKIError(
                .untrusted, "\(layout.serverCertificate) is not a certificate of the issuing CA in \(layout.issuingCertificate)")
        }
        if serverPKCS8.isEmpty {
            let serverPEM = String(decoding: try SecureFile.read(layout.serverKey), as: UTF8.self)
            serverPKCS8 = try EncryptedPrivateKey.decrypt(pem: serverPEM, passphrase: passphrase)
        }
        return CAHierarchy(
            metadata: metadata, root: root, issuing: issuing, manufacturer: manufacturer,
            trustedManufacturers: trusted, serverChain: serverChain, serverKeyPKCS8: serverPKCS8,
            services: services,
            issuingAuthorities: authorities, roots: roots, ownManufacturers: own.cas)
    }

    /// `devid ca import-key server-tls`: the listeners' key file is removed and ``CAMetadata/listenerKeyInMemory`` set,
    /// so `devid serve` makes a new key in memory at every start (what `devid ca init --key-uri` does from the start).
    public static func moveListenerKeyToMemory(layout: CALayout) throws(DevIDPKIError) {
        var metadata = try CAMetadata.read(layout)
        metadata.listenerKeyInMemory = true
        // Metadata first: a listener key file that is still there is simply not used.
        try metadata.write(layout)
        if FileManager.default.fileExists(atPath: layout.serverKey) {
            do { try FileManager.default.removeItem(atPath: layout.serverKey) } catch {
                throw DevIDPKIError(.io, "\(layout.serverKey) could not be removed; remove it by hand")
            }
        }
    }

    /// The listeners' certificate re-issued by `issuing` (same key, subject and names, a new lifetime), written to
    /// `DATA/tls/server.crt` with `issuing` after it; returns the chain. The server does this at start when its
    /// certificate is not the active issuing CA's (after `devid ca issuing activate`), so that it never keeps
    /// presenting a certificate of a CA that may be revoked next.
    public static func reissueServerCertificate(
        layout: CALayout, current: Certificate, issuing: CertificateAuthority, now: Date,
        publicKey: Certificate.PublicKey? = nil
    ) throws(DevIDPKIError) -> [Certificate] {
        let names = (try? current.extensions.subjectAlternativeNames).flatMap { $0 }.map(Array.init) ?? []
        let renewed = try issuing.issue(
            subject: current.subject, publicKey: publicKey ?? current.publicKey, profile: .serverTLS,
            subjectAlternativeNames: names, now: now)
        let chain = [renewed, issuing.certificate]
        try SecureFile.write(Array(PEM.bundle(chain).utf8), to: layout.serverCertificate, mode: 0o644)
        return chain
    }

    /// A new services CA signed by `root`, and its PKCS#8 key.
    static func makeServicesCA(
        root: CertificateAuthority, name: DistinguishedName, now: Date, extensions: [Certificate.Extension] = [],
        key: Certificate.PrivateKey
    ) throws(DevIDPKIError) -> CertificateAuthority {
        let certificate = try root.issue(
            subject: name, publicKey: key.publicKey, profile: .servicesCA, now: now, additionalExtensions: extensions)
        return try CertificateAuthority(certificate: certificate, signingKey: key)
    }

    /// What ``upgrade(layout:passphrase:now:)`` changed in a data directory made by an earlier DevID.
    public struct Upgrade: Sendable, Hashable {
        /// The services CA was created (from the root key in the data directory).
        public var createdServicesCA = false
        /// The services CA is missing and the root key is not in the data directory: run `devid ca init-services`.
        public var servicesCAMissing = false
        /// The listener certificate was re-issued with id-kp-cmcRA (same key, names and subject).
        public var reissuedServerCertificate = false

        public init() {}
    }

    /// Brings a hierarchy made by an earlier DevID up to date, before ``load(layout:passphrase:)``:
    /// - a missing services CA is created when the root key is in the data directory (`DATA/ca/root.key`); a root
    ///   key kept elsewhere (`--root-key-out`) is never looked for: ``createServicesCA(layout:rootKeyPath:passphrase:now:keyEncryptionRounds:)``
    ///   (`devid ca init-services --root-key PATH`) does it then;
    /// - a listener certificate of the issuing CA without id-kp-cmcRA is re-issued with it (same key, subject and
    ///   names, a new lifetime), since the agent accepts no EST server certificate without it.
    public static func upgrade(
        layout: CALayout, passphrase: [UInt8], now: Date,
        keyEncryptionRounds: Int = EncryptedPrivateKey.defaultIterations
    ) throws(DevIDPKIError) -> Upgrade {
        var result = Upgrade()
        guard layout.isInitialized else { return result }
        if !FileManager.default.fileExists(atPath: layout.servicesCertificate) {
            if CAKeys.exists(layout.rootKey) {
                try createServicesCA(
                    layout: layout, rootKeyPath: layout.rootKey, passphrase: passphrase, now: now,
                    keyEncryptionRounds: keyEncryptionRounds)
                result.createdServicesCA = true
            } else {
                result.servicesCAMissing = true
            }
        }
        let chain = try PEM.certificates(
            String(decoding: try SecureFile.read(layout.serverCertificate), as: UTF8.self))
        let issuingCertificate = try readCertificate(layout.issuingCertificate)
        if let leaf = chain.first, !leaf.isESTServerCertificate, leaf.issuer == issuingCertificate.subject,
            issuingCertificate.publicKey.isValidSignature(leaf.signature, for: leaf)
        {
            let issuing = try CertificateAuthority(
                certificate: issuingCertificate, signingKey: try readKey(layout.issuingKey, passphrase: passphrase))
            let names = (try? leaf.extensions.subjectAlternativeNames).flatMap { $0 }.map(Array.init) ?? []
            let renewed = try issuing.issue(
                subject: leaf.subject, publicKey: leaf.publicKey, profile: .serverTLS,
                subjectAlternativeNames: names, now: now)
            try SecureFile.write(
                Array(PEM.bundle([renewed, issuing.certificate]).utf8), to: layout.serverCertificate, mode: 0o644)
            result.reissuedServerCertificate = true
        }
        return result
    }

    /// A root ceremony's CRLs: signs `count` more root CRLs (``RootCRLs/sign(root:revoked:count:now:directory:)``)
    /// with the root key at `rootKeyPath`, decrypted with `passphrase`. The key is used and dropped, never kept.
    public static func signRootCRLs(
        layout: CALayout, rootKeyPath: String, passphrase: [UInt8], count: Int, now: Date,
        revoked: [RevokedEntry] = []
    ) throws(DevIDPKIError) -> RootCRLs {
        guard layout.isInitialized else {
            throw DevIDPKIError(.notFound, "no CA hierarchy in \(layout.dataDirectory); run `devid ca init`")
        }
        let root = try openRoot(layout: layout, rootKeyPath: rootKeyPath, passphrase: passphrase)
        let id = try loadRoots(layout: layout).id(of: root.certificate) ?? 1
        return try RootCRLs.sign(
            root: root, revoked: revoked, count: count, now: now, directory: layout.rootCRLDirectory(id: id))
    }

    /// A root CA with its key, for a ceremony: the root (of ``loadRoots(layout:)``) whose key is at `rootKeyPath`.
    /// `.notFound` for no key file, `.untrusted` if the key is no root's.
    static func openRoot(
        layout: CALayout, rootKeyPath: String, passphrase: [UInt8]
    ) throws(DevIDPKIError) -> CertificateAuthority {
        let rootKey = try CAKeys.openCeremonyKey(rootKeyPath, passphrase: passphrase)
        let roots = try loadRoots(layout: layout)
        guard let rootCertificate = roots.ids.compactMap({ roots.certificates[$0] }).first(where: { $0.publicKey == rootKey.publicKey })
        else {
            throw DevIDPKIError(.untrusted, "\(rootKeyPath) is not the key of the root in \(layout.rootCertificate)")
        }
        return try CertificateAuthority(certificate: rootCertificate, signingKey: rootKey)
    }

    /// Creates the services CA of an existing hierarchy with the root key at `rootKeyPath` (encrypted with the CA
    /// passphrase). `.alreadyExists` if there is one; `.notFound` for no hierarchy or no key file; `.untrusted` if
    /// the key is not the root's.
    @discardableResult
    public static func createServicesCA(
        layout: CALayout, rootKeyPath: String, passphrase: [UInt8], now: Date,
        keyEncryptionRounds: Int = EncryptedPrivateKey.defaultIterations
    ) throws(DevIDPKIError) -> CertificateAuthority {
        guard layout.isInitialized else {
            throw DevIDPKIError(.notFound, "no CA hierarchy in \(layout.dataDirectory); run `devid ca init`")
        }
        guard !FileManager.default.fileExists(atPath: layout.servicesCertificate) else {
            throw DevIDPKIError(.alreadyExists, "a services CA already exists in \(layout.caDirectory)")
        }
        let root = try openRoot(layout: layout, rootKeyPath: rootKeyPath, passphrase: passphrase)
        // The issuing CA's subject with the services CA's common name.
        let issuing = try readCertificate(layout.issuingCertificate)
        let name = try renamed(issuing.subject, commonName: "DevID Services CA")
        // Key first (in the first issuing CA's token, if it has one), so a services certificate on disk has its key.
        let key = try CAKeys.create(
            layout.servicesKey, algorithm: .p256, token: CAKeys.token(layout: layout), label: "services",
            passphrase: passphrase, rounds: keyEncryptionRounds)
        let services = try makeServicesCA(root: root, name: name, now: now, key: key)
        try SecureFile.write(
            Array(PEM.bundle([services.certificate, root.certificate]).utf8), to: layout.servicesChain, mode: 0o644)
        try SecureFile.write(Array(PEM.bundle([services.certificate]).utf8), to: layout.servicesCertificate, mode: 0o644)
        return services
    }

    /// Adds an external manufacturer CA to the trusted set.
    public static func trustManufacturer(_ certificate: Certificate, layout: CALayout) throws(DevIDPKIError) {
        guard certificate.isCertificateAuthority else {
            throw DevIDPKIError(.policyViolation, "manufacturer certificate is not a CA certificate")
        }
        try SecureFile.write(
            Array(PEM.bundle([certificate]).utf8),
            to: layout.trustedManufacturers + "/\(certificate.sha256Fingerprint.prefix(16)).pem", mode: 0o644)
    }

    /// `subject` with its common name replaced: a new CA named like the first issuing CA.
    static func renamed(_ subject: DistinguishedName, commonName: String) throws(DevIDPKIError) -> DistinguishedName {
        do {
            return try DistinguishedName(
                subject.map { rdn in
                    rdn.contains { $0.type == .RDNAttributeType.commonName }
                        ? RelativeDistinguishedName(
                            try RelativeDistinguishedName.Attribute(type: .RDNAttributeType.commonName, utf8String: commonName))
                        : rdn
                })
        } catch { throw DevIDPKIError(.malformed, "CA name could not be encoded") }
    }

    static func readCertificate(_ path: String) throws(DevIDPKIError) -> Certificate {
        let text = String(decoding: try SecureFile.read(path), as: UTF8.self)
        guard let first = try PEM.certificates(text).first else {
            throw DevIDPKIError(.malformed, "\(path) holds no certificate")
        }
        return first
    }

    /// A CA key: in its token when `DATA/ca/<name>.key.uri` names one (``CAKeys``), else the encrypted file.
    static func readKey(_ path: String, passphrase: [UInt8]) throws(DevIDPKIError) -> Certificate.PrivateKey {
        try CAKeys.read(path, passphrase: passphrase)
    }

    public static func generalName(forHost host: String) -> GeneralName {
        if let bytes = IPAddress.bytes(host) {
            return .ipAddress(ASN1OctetString(contentBytes: ArraySlice(bytes)))
        }
        return .dnsName(host)
    }
}

extension Certificate {
    /// True when basicConstraints says CA.
    public var isCertificateAuthority: Bool {
        if case .isCertificateAuthority = (try? extensions.basicConstraints) ?? nil { return true }
        return false
    }
}

/// Parses dotted IPv4 and textual IPv6 addresses into network-order bytes.
public enum IPAddress {
    public static func bytes(_ text: String) -> [UInt8]? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            return withUnsafeBytes(of: &v4) { Array($0) }
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { Array($0) }
        }
        return nil
    }
}

extension CAHierarchy: CustomStringConvertible {
    /// Names and fingerprints only: never the server key.
    public var description: String {
        "CAHierarchy(trustDomain: \(trustDomain), root: \(root.sha256Fingerprint), issuing: \(issuing.certificate.sha256Fingerprint))"
    }
}

extension CertificateAuthority: CustomStringConvertible {
    public var description: String { "CertificateAuthority(\(certificate.subject))" }
}
