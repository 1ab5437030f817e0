import Foundation
import GRDB

extension StoreError {
    /// Maps whatever a GRDB call threw to a `StoreError` with a one-line reason that names the operation and,
    /// for constraint violations, the schema columns involved, but never SQL, arguments or row contents.
    static func sqlite(_ error: any Error, _ operation: String) -> StoreError {
        switch error {
        case let error as StoreError:
            return error
        case let error as DatabaseError:
            return sqlite(error, operation)
        case is CancellationError:
            return StoreError(.unavailable, "\(operation): cancelled")
        case is RowDecodingError, is DecodingError:
            return StoreError(.corrupt, "\(operation): unreadable row")
        default:
            return StoreError(.unavailable, "\(operation): database error")
        }
    }

    private static func sqlite(_ error: DatabaseError, _ operation: String) -> StoreError {
        switch error.extendedResultCode {
        case .SQLITE_CONSTRAINT_UNIQUE, .SQLITE_CONSTRAINT_PRIMARYKEY:
            return StoreError(.duplicate, "\(operation): \(constrainedColumns(error) ?? "a unique key") already exists")
        case .SQLITE_CONSTRAINT_FOREIGNKEY:
            return StoreError(.notFound, "\(operation): a referenced row does not exist")
        default:
            break
        }
        switch error.resultCode {
        case .SQLITE_BUSY, .SQLITE_LOCKED:
            return StoreError(.unavailable, "\(operation): database is busy")
        case .SQLITE_CORRUPT, .SQLITE_NOTADB:
            return StoreError(.corrupt, "\(operation): database file is corrupt or not a database")
        case .SQLITE_CANTOPEN, .SQLITE_PERM, .SQLITE_READONLY:
            return StoreError(.unavailable, "\(operation): cannot open or write the database")
        case .SQLITE_FULL, .SQLITE_IOERR:
            return StorageFull.error(error.extendedResultCode, operation)
        case .SQLITE_CONSTRAINT:
            return StoreError(.unavailable, "\(operation): \(constrainedColumns(error) ?? "a") constraint failed")
        default:
            return StoreError(.unavailable, "\(operation): SQLite error \(error.extendedResultCode.rawValue)")
        }
    }

    /// The `table.column` list SQLite names in a constraint message ("UNIQUE constraint failed: t.c, t.d"),
    /// if the message has exactly that shape; SQLite never puts values there, and anything else is dropped.
    private static func constrainedColumns(_ error: DatabaseError) -> String? {
        guard let message = error.message, let range = message.range(of: "constraint failed: ") else { return nil }
        let columns = message[range.upperBound...]
        let allowed = Set("abcdefghijklmnopqrstuvwxyz0123456789_., ")
        guard !columns.isEmpty, columns.count <= 200, columns.allSatisfy({ allowed.contains($0) }) else { return nil }
        return String(columns)
    }
}
