@testable import DevIDStore
import Foundation
import Testing

/// The Postgres registry's record encoder takes flat rows: a record that is anything else is refused with an error
/// (it used to stop the process with `fatalError`).
@Suite("Postgres record encoder")
struct PostgresRecordEncoderTests {
    struct Flat: Encodable {
        var id = "d1"
        var count = 3
        var note: String? = nil
    }

    struct Nested: Encodable {
        struct Inner: Encodable { var x = 1 }
        var id = "d1"
        var inner = Inner()
        enum CodingKeys: String, CodingKey { case id, inner }
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(id, forKey: .id)
            var nested = container.nestedContainer(keyedBy: CodingKeys.self, forKey: .inner)
            try nested.encode(inner.x, forKey: .id)
        }
    }

    struct UnkeyedInField: Encodable {
        enum CodingKeys: String, CodingKey { case list }
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            var list = container.nestedUnkeyedContainer(forKey: .list)
            try list.encode(1)
        }
    }

    struct SuperEncoded: Encodable {
        enum CodingKeys: String, CodingKey { case id }
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try "d1".encode(to: container.superEncoder())
        }
    }

    @Test("a flat record becomes its columns; a nil optional is left out")
    func flatRecord() throws {
        let encoder = PostgresRecordEncoder()
        try Flat().encode(to: encoder)
        #expect(encoder.storage.columns.map(\.name) == ["id", "count"])
    }

    @Test("a record that is not one flat row is refused with an error")
    func notFlat() {
        let encoder = { PostgresRecordEncoder() }
        #expect(throws: EncodingError.self) { try [1, 2].encode(to: encoder()) }
        #expect(throws: EncodingError.self) { try "d1".encode(to: encoder()) }
        #expect(throws: EncodingError.self) { try Nested().encode(to: encoder()) }
        #expect(throws: EncodingError.self) { try UnkeyedInField().encode(to: encoder()) }
        #expect(throws: EncodingError.self) { try SuperEncoded().encode(to: encoder()) }
    }
}
