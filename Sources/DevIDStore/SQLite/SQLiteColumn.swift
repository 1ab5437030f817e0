/// Turns stored text back into a domain value, or reports the column as corrupt (without its content).
enum SQLiteColumn {
    static func decode<Value>(_ make: (String) -> Value?, _ raw: String, _ column: String) throws(StoreError) -> Value {
        guard let value = make(raw) else { throw StoreError(.corrupt, "unreadable value in \(column)") }
        return value
    }
}
