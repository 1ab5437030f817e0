import DevIDPKCS11
import Foundation
import Testing

@Suite("pkcs11: URIs (RFC 7512)")
struct PKCS11URITests {
    @Test("token, object, id, module-path and pin-source are read, percent-decoded")
    func parses() throws {
        let uri = try PKCS11URI(
            "pkcs11:token=devid%20ca;object=issuing;id=%01%FF?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/devid/pin&x-vendor=1")
        #expect(uri.token == "devid ca")
        #expect(uri.object == "issuing")
        #expect(uri.id == [0x01, 0xFF])
        #expect(uri.modulePath == "/usr/lib/softhsm/libsofthsm2.so")
        #expect(uri.pinSource == "file:/etc/devid/pin")
        #expect(uri.tokenURI.object == nil)
        #expect(uri.naming(object: "root").description
            == "pkcs11:token=devid%20ca;object=root?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-source=file:/etc/devid/pin")
        #expect(try PKCS11URI(uri.naming(object: "root").description).object == "root")
    }

    @Test(
        "bad URIs are refused with one line saying why",
        arguments: [
            ("file:/etc/key.pem", "not a pkcs11: URI"),
            ("pkcs11:token=a?pin-source=file:/p", "names no module-path"),
            ("pkcs11:object=k?module-path=/m.so", "names no token"),
            ("pkcs11:token=a;colour=red?module-path=/m.so", "unknown pkcs11: URI path attribute 'colour'"),
            ("pkcs11:token=a;token=b?module-path=/m.so", "given twice"),
            ("pkcs11:token=a%2?module-path=/m.so", "bad percent-encoding"),
            ("pkcs11:token=a;type=secret?module-path=/m.so", "type 'secret'"),
            ("pkcs11:token=a?module-path=/m.so&pin-value=1234", "pin-value in a pkcs11: URI is refused"),
            ("pkcs11:token=a;slot-id=x?module-path=/m.so", "slot-id is not a number"),
        ])
    func refused(_ text: String, _ reason: String) {
        #expect {
            _ = try PKCS11URI(text)
        } throws: { error in
            guard let error = error as? PKCS11Error else { return false }
            return error.code == .invalidURI && error.reason.contains(reason) && !error.reason.contains("1234")
        }
    }

    @Test("pin-source: a file's first line, an environment variable; missing ones are clear errors")
    func pinSources() throws {
        let dir = FileManager.default.temporaryDirectory.path + "/devid-pin-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "4321\n".write(toFile: dir + "/pin", atomically: true, encoding: .utf8)
        #expect(try PKCS11URI("pkcs11:token=a?module-path=/m.so&pin-source=file:\(dir)/pin").readPIN() == Array("4321".utf8))
        #expect(try PKCS11URI("pkcs11:token=a?module-path=/m.so&pin-source=\(dir)/pin").readPIN() == Array("4321".utf8))
        #expect(
            try PKCS11URI("pkcs11:token=a?module-path=/m.so&pin-source=env:DEVID_TEST_PIN").readPIN(
                environment: ["DEVID_TEST_PIN": "9999"]) == Array("9999".utf8))
        #expect(try PKCS11URI("pkcs11:token=a?module-path=/m.so").readPIN() == nil)
        #expect(throws: PKCS11Error.self) {
            try PKCS11URI("pkcs11:token=a?module-path=/m.so&pin-source=env:DEVID_TEST_PIN").readPIN(environment: [:])
        }
        #expect(throws: PKCS11Error.self) {
            try PKCS11URI("pkcs11:token=a?module-path=/m.so&pin-source=file:\(dir)/none").readPIN()
        }
    }
}
