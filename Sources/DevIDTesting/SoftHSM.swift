public import Foundation

/// A SoftHSM2 token store in a temporary directory (its own `softhsm2.conf`), with tokens made by
/// `softhsm2-util --init-token`: a real PKCS#11 module for tests.
///
/// A process loads SoftHSM2 once and reads `SOFTHSM2_CONF` then, so in-process tests share ``shared`` (which sets
/// the variable before any test loads the module); tests that run `devid` as a child process make their own and pass
/// ``environment`` to it.
public struct SoftHSM: Sendable {
    public static let module = "/usr/lib/softhsm/libsofthsm2.so"
    public static let userPIN = "1234"
    public static let soPIN = "5678"

    public let directory: TemporaryDirectory
    public let configuration: String
    /// A file holding ``userPIN``, for `pin-source=file:...`.
    public let pinFile: String
    public var environment: [String: String] { ["SOFTHSM2_CONF": configuration] }

    public init() throws {
        try self.init(directory: try TemporaryDirectory(prefix: "devid-softhsm"))
    }

    /// A store in `directory` (its `tokens/` and `softhsm2.conf`, made if missing).
    init(directory: TemporaryDirectory) throws {
        self.directory = directory
        let tokens = directory.file("tokens")
        try FileManager.default.createDirectory(atPath: tokens, withIntermediateDirectories: true)
        configuration = directory.file("softhsm2.conf")
        if !FileManager.default.fileExists(atPath: configuration) {
            _ = try directory.write(
                "softhsm2.conf", "directories.tokendir = \(tokens)\nobjectstore.backend = file\nlog.level = ERROR\n")
        }
        pinFile = try directory.write("pin", SoftHSM.userPIN + "\n")
    }

    /// The process-wide store for in-process tests, with `SOFTHSM2_CONF` set to it and one token, ``sharedToken``,
    /// made before anything loads the module: SoftHSM2 sees only the tokens that exist when a process initialises
    /// it, so in-process tests share that token and tell their keys apart by label.
    ///
    /// `scripts/test` makes that store before `swift test` starts (`DEVID_TEST_SOFTHSM_DIR`, with `SOFTHSM2_CONF`
    /// pointing into it), so that no test changes the process environment while other tests run; a plain `swift
    /// test` makes one here and sets `SOFTHSM2_CONF` on first use.
    public static func shared() throws -> SoftHSM { try sharedStore.get() }
    private static let sharedStore = Result<SoftHSM, any Error> {
        let environment = ProcessInfo.processInfo.environment
        if let path = environment["DEVID_TEST_SOFTHSM_DIR"], !path.isEmpty,
            environment["SOFTHSM2_CONF"] == path + "/softhsm2.conf"
        {
            let store = try SoftHSM(directory: TemporaryDirectory(existing: path))
            // Once per store (a second `swift test` of the same run finds it made).
            let slots = try ExternalTool.run(["softhsm2-util", "--show-slots"], environment: store.environment)
            if !slots.stdout.contains("Label:            \(sharedToken)") { try store.initToken(sharedToken) }
            return store
        }
        let store = try SoftHSM()
        try store.initToken(sharedToken)
        setenv("SOFTHSM2_CONF", store.configuration, 1)
        return store
    }
    public static let sharedToken = "devid-unit"

    /// A new token labelled `label` with ``userPIN`` and ``soPIN``.
    public func initToken(_ label: String) throws {
        let result = try ExternalTool.run(
            ["softhsm2-util", "--init-token", "--free", "--label", label, "--pin", SoftHSM.userPIN, "--so-pin", SoftHSM.soPIN],
            environment: environment)
        guard result.succeeded else {
            throw NSError(domain: "SoftHSM", code: Int(result.status), userInfo: [NSLocalizedDescriptionKey: result.stderr])
        }
    }

    /// A `pkcs11:` URI for `token` (and `object`), module SoftHSM2, PIN from ``pinFile`` (or `pinSource`).
    public func uri(token: String, object: String? = nil, pinSource: String? = nil) -> String {
        var path = "token=\(token)"
        if let object { path += ";object=\(object)" }
        return "pkcs11:\(path)?module-path=\(SoftHSM.module)&pin-source=\(pinSource ?? "file:" + pinFile)"
    }
}
