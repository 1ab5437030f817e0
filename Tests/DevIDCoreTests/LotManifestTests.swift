import DevIDCore
import Foundation
import Testing

/// A manifest's `createdAt` survives a round trip: kept to the second, as DevID writes it.
@Suite("Lot manifest")
struct LotManifestTests {
    static func manifest(createdAt: String) -> Data {
        Data(
            """
            {"lot":"lot-7","tenant":"acme","manufacturerCASHA256":"\(String(repeating: "ab", count: 32))",
             "createdAt":"\(createdAt)","devices":[]}
            """.utf8)
    }

    static var decoder: JSONDecoder {
        let decoder = JSONDecoder()
        decoder.dateDecodingStrategy = .iso8601
        return decoder
    }

    static var encoder: JSONEncoder {
        let encoder = JSONEncoder()
        encoder.dateEncodingStrategy = .iso8601
        return encoder
    }

    @Test("a fraction of a second is dropped when read, so encoding and reading again gives the same manifest",
        arguments: ["2026-12-01T10:00:00.7Z", "2026-12-01T10:00:0.1Z", "2026-12-01T10:00:00Z"])
    func fractionalSeconds(createdAt: String) throws {
        let manifest = try Self.decoder.decode(LotManifest.self, from: Self.manifest(createdAt: createdAt))
        #expect(manifest.createdAt == Date(timeIntervalSince1970: 1_796_119_200))
        let again = try Self.decoder.decode(LotManifest.self, from: try Self.encoder.encode(manifest))
        #expect(again == manifest)
    }
}
