import Foundation
import GRDB
import Logging
import PostgresNIO

/// A value bound to a `?` of ``PostgresSession``'s SQL: the registry's column types only (BIGINT, TEXT, BYTEA).
///
/// Booleans are BIGINT 0/1, as in the SQLite schema, so that the two backends share their SQL text and a
/// registry copies column for column.
enum PostgresValue: Sendable, Hashable {
    case null
    case integer(Int64)
    case text(String)
    case bytes(Data)
    case real(Double)
    /// A `text[]` (for `= ANY(?)` and `unnest(?::text[])`).
    case texts([String])

    static func int(_ value: Int) -> Self { .integer(Int64(value)) }
    static func bool(_ value: Bool) -> Self { .integer(value ? 1 : 0) }
    static func optional(_ value: String?) -> Self { value.map(Self.text) ?? .null }
    static func optional(_ value: Int64?) -> Self { value.map(Self.integer) ?? .null }

    fileprivate func bind(_ bindings: inout PostgresBindings) throws {
        switch self {
        case .null: bindings.appendNull()
        case .integer(let value): bindings.append(value)
        case .text(let value): bindings.append(value)
        case .bytes(let value): try bindings.append(value)
        case .real(let value): bindings.append(value)
        case .texts(let value): try bindings.append(value)
        }
    }
}

extension PostgresValue: ExpressibleByStringLiteral, ExpressibleByIntegerLiteral {
    init(stringLiteral value: String) { self = .text(value) }
    init(integerLiteral value: Int64) { self = .integer(value) }
}

/// One connection of a ``PostgresStore`` call: inside a write transaction, or for a read. SQL is written with `?`
/// placeholders, as for SQLite, and numbered (`$1`, `$2`, ...) here, so both backends can share statement text.
/// A `?` must never appear in the SQL other than as a placeholder (the registry's statements hold no string
/// literal with one).
struct PostgresSession: Sendable {
    let connection: PostgresConnection
    let logger: Logger

    static func query(_ sql: String, _ arguments: [PostgresValue]) throws -> PostgresQuery {
        var numbered = ""
        numbered.reserveCapacity(sql.utf8.count + arguments.count * 2)
        var index = 0
        for character in sql {
            if character == "?" {
                index += 1
                numbered += "$\(index)"
            } else {
                numbered.append(character)
            }
        }
        precondition(index == arguments.count, "SQL has \(index) placeholders for \(arguments.count) arguments")
        var bindings = PostgresBindings(capacity: arguments.count)
        for argument in arguments { try argument.bind(&bindings) }
        return PostgresQuery(unsafeSQL: numbered, binds: bindings)
    }

    /// Runs `sql` and returns every row.
    func rows(_ sql: String, _ arguments: [PostgresValue] = []) async throws -> [PostgresRow] {
        try await connection.query(try Self.query(sql, arguments), logger: logger).collect()
    }

    /// Runs `sql` (whose rows, if any, are read and dropped).
    func execute(_ sql: String, _ arguments: [PostgresValue] = []) async throws {
        _ = try await rows(sql, arguments)
    }

    /// Runs an `UPDATE`, `DELETE` or `INSERT` and returns how many rows it changed (it is given a `RETURNING 1`).
    func changes(_ sql: String, _ arguments: [PostgresValue] = []) async throws -> Int {
        try await rows(sql + " RETURNING 1", arguments).count
    }

    /// Decodes each row of `sql` as `Record` (its coding keys are the column names).
    func fetch<Record: Decodable>(
        _ type: Record.Type, _ sql: String, _ arguments: [PostgresValue] = []
    ) async throws -> [Record] {
        try await rows(sql, arguments).map { row in try Record(from: PostgresRowDecoder(row: row.makeRandomAccess())) }
    }

    func fetchOne<Record: Decodable>(
        _ type: Record.Type, _ sql: String, _ arguments: [PostgresValue] = []
    ) async throws -> Record? {
        try await fetch(type, sql, arguments).first
    }

    /// The first column of the first row, nil if there is no row or it is NULL.
    func scalar<Value: PostgresDecodable>(
        _ type: Value.Type, _ sql: String, _ arguments: [PostgresValue] = []
    ) async throws -> Value? {
        guard let row = try await rows(sql, arguments).first else { return nil }
        let cell = row.makeRandomAccess()[0]
        guard cell.bytes != nil else { return nil }
        return try cell.decode(Value.self)
    }

    /// Whether `sql` returns at least one row.
    func exists(_ sql: String, _ arguments: [PostgresValue] = []) async throws -> Bool {
        try await !rows(sql, arguments).isEmpty
    }

    /// Inserts `record` (a GRDB record: its table name and coding keys name the table and columns).
    func insert<Record: Encodable & TableRecord>(_ record: Record) async throws {
        let encoder = PostgresRecordEncoder()
        try record.encode(to: encoder)
        let columns = encoder.storage.columns
        let sql = "INSERT INTO \(Record.databaseTableName) (\(columns.map(\.name).joined(separator: ", "))) VALUES ("
            + Array(repeating: "?", count: columns.count).joined(separator: ", ") + ")"
        try await execute(sql, columns.map(\.value))
    }

    /// Replaces every column of the row `record` keys by `keyColumn` with `record`'s values.
    func update<Record: Encodable & TableRecord>(_ record: Record, key keyColumn: String) async throws -> Int {
        let encoder = PostgresRecordEncoder()
        try record.encode(to: encoder)
        let columns = encoder.storage.columns
        guard let key = columns.first(where: { $0.name == keyColumn }) else { return 0 }
        let others = columns.filter { $0.name != keyColumn }
        let sql = "UPDATE \(Record.databaseTableName) SET "
            + others.map { "\($0.name) = ?" }.joined(separator: ", ") + " WHERE \(keyColumn) = ?"
        return try await changes(sql, others.map(\.value) + [key.value])
    }
}

// MARK: - Records from rows

/// Decodes a `Decodable` record from a row by column name: BIGINT (also into `Int` and `Bool`), TEXT, BYTEA and
/// double precision, and NULL for optionals.
struct PostgresRowDecoder: Decoder {
    let row: PostgresRandomAccessRow
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        KeyedDecodingContainer(Container<Key>(row: row))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        throw DecodingError.typeMismatch([Any].self, .init(codingPath: [], debugDescription: "rows are keyed"))
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        throw DecodingError.typeMismatch(Any.self, .init(codingPath: [], debugDescription: "rows are keyed"))
    }

    struct Container<Key: CodingKey>: KeyedDecodingContainerProtocol {
        let row: PostgresRandomAccessRow
        var codingPath: [any CodingKey] { [] }
        var allKeys: [Key] { row.compactMap { Key(stringValue: $0.columnName) } }

        func contains(_ key: Key) -> Bool { row.contains(key.stringValue) }

        private func cell(_ key: Key) throws -> PostgresCell {
            guard row.contains(key.stringValue) else {
                throw DecodingError.keyNotFound(key, .init(codingPath: [], debugDescription: "no such column"))
            }
            return row[key.stringValue]
        }

        func decodeNil(forKey key: Key) throws -> Bool { try cell(key).bytes == nil }
        func decode(_ type: String.Type, forKey key: Key) throws -> String { try cell(key).decode(String.self) }
        func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try cell(key).decode(Int64.self) }
        func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try cell(key).decode(Int.self) }
        func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try cell(key).decode(Double.self) }
        func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool {
            let cell = try cell(key)
            return cell.dataType == .bool ? try cell.decode(Bool.self) : try cell.decode(Int64.self) != 0
        }

        func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
            if T.self == Data.self, let value = try cell(key).decode(Data.self) as? T { return value }
            throw DecodingError.typeMismatch(
                T.self, .init(codingPath: [key], debugDescription: "unsupported column type"))
        }

        func nestedContainer<NestedKey: CodingKey>(
            keyedBy type: NestedKey.Type, forKey key: Key
        ) throws -> KeyedDecodingContainer<NestedKey> {
            throw DecodingError.typeMismatch(Any.self, .init(codingPath: [key], debugDescription: "flat rows only"))
        }

        func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
            throw DecodingError.typeMismatch(Any.self, .init(codingPath: [key], debugDescription: "flat rows only"))
        }

        func superDecoder() throws -> any Decoder { PostgresRowDecoder(row: row) }
        func superDecoder(forKey key: Key) throws -> any Decoder { PostgresRowDecoder(row: row) }
    }
}

// MARK: - Records to columns

/// Collects an `Encodable` record's columns (coding key, value) in encoding order. A nil optional is left out, so
/// the column takes its default (NULL).
final class PostgresRecordEncoder: Encoder {
    final class Storage {
        var columns: [(name: String, value: PostgresValue)] = []
    }

    let storage = Storage()
    var codingPath: [any CodingKey] { [] }
    var userInfo: [CodingUserInfoKey: Any] { [:] }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        KeyedEncodingContainer(Container<Key>(storage: storage))
    }

    // A record is one flat row: anything else throws on its first value (Encoder's container calls cannot).
    func unkeyedContainer() -> any UnkeyedEncodingContainer { Refusing<NoKey>(reason: "records are keyed") }
    func singleValueContainer() -> any SingleValueEncodingContainer { Refusing<NoKey>(reason: "records are keyed") }
    enum NoKey: CodingKey {}

    struct Container<Key: CodingKey>: KeyedEncodingContainerProtocol {
        let storage: Storage
        var codingPath: [any CodingKey] { [] }

        private func add(_ key: Key, _ value: PostgresValue) { storage.columns.append((key.stringValue, value)) }

        mutating func encodeNil(forKey key: Key) throws { add(key, .null) }
        mutating func encode(_ value: String, forKey key: Key) throws { add(key, .text(value)) }
        mutating func encode(_ value: Int64, forKey key: Key) throws { add(key, .integer(value)) }
        mutating func encode(_ value: Int, forKey key: Key) throws { add(key, .int(value)) }
        mutating func encode(_ value: Bool, forKey key: Key) throws { add(key, .bool(value)) }
        mutating func encode(_ value: Double, forKey key: Key) throws { add(key, .real(value)) }

        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
            guard let data = value as? Data else {
                throw EncodingError.invalidValue(
                    value, .init(codingPath: [key], debugDescription: "unsupported column type"))
            }
            add(key, .bytes(data))
        }

        mutating func nestedContainer<NestedKey: CodingKey>(
            keyedBy keyType: NestedKey.Type, forKey key: Key
        ) -> KeyedEncodingContainer<NestedKey> { KeyedEncodingContainer(Refusing<NestedKey>(reason: "flat rows only")) }
        mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
            Refusing<Key>(reason: "flat rows only")
        }
        mutating func superEncoder() -> any Encoder { Refusing<Key>(reason: "flat rows only") }
        mutating func superEncoder(forKey key: Key) -> any Encoder { Refusing<Key>(reason: "flat rows only") }
    }

    /// What a record that is not one flat row gets: every value it encodes throws `reason`.
    struct Refusing<Key: CodingKey>: Encoder, KeyedEncodingContainerProtocol, UnkeyedEncodingContainer,
        SingleValueEncodingContainer
    {
        let reason: String
        var codingPath: [any CodingKey] { [] }
        var userInfo: [CodingUserInfoKey: Any] { [:] }
        var count: Int { 0 }

        private func refuse(_ value: Any) -> EncodingError {
            EncodingError.invalidValue(value, .init(codingPath: [], debugDescription: reason))
        }

        func container<NestedKey: CodingKey>(keyedBy type: NestedKey.Type) -> KeyedEncodingContainer<NestedKey> {
            KeyedEncodingContainer(Refusing<NestedKey>(reason: reason))
        }
        func unkeyedContainer() -> any UnkeyedEncodingContainer { self }
        func singleValueContainer() -> any SingleValueEncodingContainer { self }

        mutating func encodeNil() throws { throw refuse(Optional<Int>.none as Any) }
        mutating func encode<T: Encodable>(_ value: T) throws { throw refuse(value) }
        mutating func encodeNil(forKey key: Key) throws { throw refuse(Optional<Int>.none as Any) }
        mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws { throw refuse(value) }

        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type)
            -> KeyedEncodingContainer<NestedKey>
        { container(keyedBy: keyType) }
        mutating func nestedContainer<NestedKey: CodingKey>(keyedBy keyType: NestedKey.Type, forKey key: Key)
            -> KeyedEncodingContainer<NestedKey>
        { container(keyedBy: keyType) }
        mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer { self }
        mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer { self }
        mutating func superEncoder() -> any Encoder { self }
        mutating func superEncoder(forKey key: Key) -> any Encoder { self }
    }
}
