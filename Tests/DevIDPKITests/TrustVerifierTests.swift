import DevIDCore
import DevIDPKI
import DevIDTesting
import Foundation
import Testing
import X509

@Suite("Trust verification at an injected time")
struct TrustVerifierTests {
    @Test func validAtIssueTimeExpiredLaterNotYetValidBefore() async throws {
        let chain = try TestChain()
        let now = chain.clock.now()
        let leaf = try chain.ldevid(at: now).certificate
        let trust = chain.hierarchy.deviceTrust

        guard case .trusted(let path) = await trust.validate(leaf: leaf, at: now) else {
            Issue.record("a fresh LDevID must be trusted")
            return
        }
        #expect(path.first == leaf)
        #expect(path == [leaf, chain.hierarchy.issuing.certificate], "the issuing CA is an anchor: one signature")

        #expect(await trust.validate(leaf: leaf, at: now.addingTimeInterval(31 * 86_400))
            == .untrusted(reason: "certificate has expired"))
        // Backdated 5 minutes: 4 minutes early is fine, 10 minutes early is not.
        if case .untrusted = await trust.validate(leaf: leaf, at: now.addingTimeInterval(-240)) {
            Issue.record("backdating must cover a clock 4 minutes slow")
        }
        #expect(await trust.validate(leaf: leaf, at: now.addingTimeInterval(-600))
            == .untrusted(reason: "certificate is not yet valid"))
    }

    @Test func idevidChainsToManufacturerCA() async throws {
        let chain = try TestChain()
        let idevid = try chain.idevid().certificate
        guard case .trusted(let path) = await chain.hierarchy.deviceTrust.validate(leaf: idevid, at: chain.clock.now())
        else {
            Issue.record("IDevID must chain to the manufacturer CA")
            return
        }
        #expect(path.last == chain.hierarchy.manufacturer?.certificate)
    }

    @Test func certificateFromAnotherHierarchyIsUntrusted() async throws {
        let ours = try TestChain()
        let theirs = try TestChain()
        let foreign = try theirs.ldevid().certificate
        let outcome = await ours.hierarchy.deviceTrust.validate(leaf: foreign, at: ours.clock.now())
        #expect(outcome == .untrusted(reason: "certificate does not chain to a trusted CA"))
    }
}

@Suite("CA hierarchy on disk")
struct CAStoreTests {
    @Test func initializeRefusesAnExistingHierarchyAndChangesNothing() throws {
        let chain = try TestChain()
        let before = try Data(contentsOf: URL(fileURLWithPath: chain.layout.issuingCertificate))
        #expect(throws: DevIDPKIError(.alreadyExists, "")) {
            try CAStore.initialize(
                layout: chain.layout, options: CAInitOptions(trustDomain: "other.devid", keyEncryptionRounds: 1_000),
                passphrase: TestChain.passphrase, now: chain.clock.now())
        }
        #expect(try Data(contentsOf: URL(fileURLWithPath: chain.layout.issuingCertificate)) == before)
    }

    @Test(arguments: ["", "UPPER.case", "spaces here", "slash/inside"])
    func invalidTrustDomainIsRefused(trustDomain: String) throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let layout = CALayout(dataDirectory: directory.file("data"))
        #expect(throws: DevIDPKIError(.policyViolation, "")) {
            try CAStore.initialize(
                layout: layout, options: CAInitOptions(trustDomain: trustDomain, keyEncryptionRounds: 1_000),
                passphrase: TestChain.passphrase, now: Date(timeIntervalSince1970: 1_790_000_000))
        }
        #expect(!layout.isInitialized)
    }

    @Test func wrongPassphraseCannotLoad() throws {
        let chain = try TestChain()
        #expect(throws: DevIDPKIError(.wrongPassphrase, "")) {
            try CAStore.load(layout: chain.layout, passphrase: Array("wrong".utf8))
        }
        let loaded = try CAStore.load(layout: chain.layout, passphrase: TestChain.passphrase)
        #expect(loaded.issuing.certificate == chain.hierarchy.issuing.certificate)
    }

    /// The issuing CA is a trust anchor for device chains, so loading checks once that the root signed it.
    @Test func anIssuingCANotSignedByTheRootIsRefusedAtLoad() throws {
        let ours = try TestChain()
        let theirs = try TestChain()
        // Another hierarchy's issuing CA, certificate and key together (same passphrase), under our root.
        for (from, to) in [
            (theirs.layout.issuingCertificate, ours.layout.issuingCertificate),
            (theirs.layout.issuingKey, ours.layout.issuingKey),
        ] {
            try FileManager.default.removeItem(atPath: to)
            try FileManager.default.copyItem(atPath: from, toPath: to)
        }
        #expect(throws: DevIDPKIError(.malformed, "")) {
            try CAStore.load(layout: ours.layout, passphrase: TestChain.passphrase)
        }
        do {
            _ = try CAStore.load(layout: ours.layout, passphrase: TestChain.passphrase)
        } catch {
            #expect(error.reason == "\(ours.layout.issuingCertificate) is not signed by the root in \(ours.layout.rootCertificate)")
        }
        _ = try CAStore.load(layout: theirs.layout, passphrase: TestChain.passphrase)
    }

    @Test func rootKeyCanLiveOutsideTheDataDirectoryAndIsNeverLoaded() throws {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let layout = CALayout(dataDirectory: directory.file("data"))
        let outside = directory.file("offline-root.key")
        let created = try CAStore.initialize(
            layout: layout,
            options: CAInitOptions(trustDomain: "x.devid", rootKeyOut: outside, keyEncryptionRounds: 1_000),
            passphrase: TestChain.passphrase, now: Date(timeIntervalSince1970: 1_790_000_000))
        #expect(created.rootKeyPath == outside)
        #expect(!FileManager.default.fileExists(atPath: layout.rootKey))
        let attributes = try FileManager.default.attributesOfItem(atPath: outside)
        #expect((attributes[.posixPermissions] as? Int) == 0o600)
        let opened = try ExternalTool.run(["openssl", "pkey", "-in", outside, "-passin", "pass:test-passphrase", "-noout"])
        #expect(opened.succeeded)
        // The server loads without the root key.
        _ = try CAStore.load(layout: layout, passphrase: TestChain.passphrase)
    }

    @Test func everyKeyFileIs0600AndEncrypted() throws {
        let chain = try TestChain()
        for path in [chain.layout.rootKey, chain.layout.issuingKey, chain.layout.manufacturerKey, chain.layout.serverKey] {
            let attributes = try FileManager.default.attributesOfItem(atPath: path)
            #expect((attributes[.posixPermissions] as? Int) == 0o600, "\(path)")
            let text = try String(contentsOfFile: path, encoding: .utf8)
            #expect(text.hasPrefix("-----BEGIN " + "ENCRYPTED PRIVATE KEY-----"))
            #expect(try ExternalTool.run(["openssl", "pkey", "-in", path, "-passin", "pass:test-passphrase", "-noout"]).succeeded)
            #expect(!(try ExternalTool.run(["openssl", "pkey", "-in", path, "-passin", "pass:nope", "-noout"]).succeeded))
        }
    }

    @Test func externalManufacturerCAIsTrustedInsteadOfOurOwn() async throws {
        let factory = try TestChain(trustDomain: "factory.example")
        let manufacturerCA = try #require(factory.hierarchy.manufacturer).certificate
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let layout = CALayout(dataDirectory: directory.file("data"))
        let created = try CAStore.initialize(
            layout: layout,
            options: CAInitOptions(
                trustDomain: "ops.example", externalManufacturerCAs: [manufacturerCA], keyEncryptionRounds: 1_000),
            passphrase: TestChain.passphrase, now: factory.clock.now())
        #expect(created.hierarchy.manufacturer == nil)
        #expect(created.hierarchy.trustedManufacturers == [manufacturerCA])
        let idevid = try factory.idevid(hardwareSerial: "EXT-1").certificate
        if case .untrusted(let reason) = await created.hierarchy.deviceTrust.validate(leaf: idevid, at: factory.clock.now()) {
            Issue.record("an IDevID from a trusted external manufacturer must chain: \(reason)")
        }
    }
}
