import DevIDTesting
import Foundation
import Testing

/// docs/hardware-keys.md as executable documentation: every command on the page runs, in order, in one shell, against
/// a real SoftHSM2 token store, a real `devid serve` signing through it, and a software TPM (`scripts/tpm-sandbox`:
/// swtpm, a D-Bus session bus, tpm2-abrmd, tpm2-pkcs11), and the output the page shows is compared by shape with what
/// the commands print (see [ReadmeTests]). Blocks marked `not-run` (URI syntax, vendor HSM modules) are listed.
@Suite("docs/hardware-keys.md", .serialized)
struct HardwareKeysDocTests {
    @Test("docs/hardware-keys.md: CA keys in SoftHSM2, device keys in a secure element and a TPM", .timeLimit(.minutes(5)))
    func walk() async throws {
        let page = try DocFile("docs/hardware-keys.md")
        let work = try TemporaryDirectory(prefix: "devid-hardware-doc")
        defer { work.remove() }
        // `scripts/tpm-sandbox` as from a checkout.
        try FileManager.default.createSymbolicLink(
            atPath: work.file("scripts"), withDestinationPath: RunbookTests.packageRoot.appendingPathComponent("scripts").path)
        var walk = try DocWalk(directory: work.path, dataDirectory: work.file("devid-data"))
        defer {
            _ = try? ExternalTool.run([work.file("scripts/tpm-sandbox"), "stop", work.file("tpm")])
            walk.close()
        }
        try await walk.run("alias devid=devid")

        var ran: [String] = []
        var notRun = 0
        for block in page.blocks {
            if block.isNotRun {
                notRun += 1
                continue
            }
            ran += try await walk.run(block).map(\.command)
        }
        #expect(notRun == 2, "the URI example and the vendor HSMs")
        // The page's story, in order: the token, ca init, the server, the openssl checks, a ceremony, import-key,
        // the secure element with a rotation, the TPM with a factory key.
        for expected in [
            "devid ca init --key-uri \"$HSM\" > init.log", "devid serve > serve.log 2>&1 &",
            "openssl verify -CAfile devid-data/ca/root.crt -untrusted devid-data/ca/issuing.crt sensor-1.crt",
            "devid ca import-key issuing --data-dir old-data --to \"$HSM\"",
            "devid rotate mark --device se-1 | tail -1", "scripts/tpm-sandbox stop $PWD/tpm",
        ] {
            #expect(ran.contains(expected), "\(expected) ran")
        }
        // The token keys exist only in the tokens: no file key, and the listener key in memory.
        let caFiles = try FileManager.default.subpathsOfDirectory(atPath: work.file("devid-data"))
        #expect(!caFiles.contains { $0.hasSuffix(".key") }, "\(caFiles.filter { $0.hasSuffix(".key") })")
        #expect(caFiles.contains("ca/issuing.key.uri") && caFiles.contains("ca/root.key.uri"))
    }
}
