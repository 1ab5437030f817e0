import GRDB

/// Which SQLite failures mean "the filesystem refused a write": the registry's disk is full, so a write transaction
/// was rolled back and nothing of it is stored.
///
/// SQLite reports `ENOSPC` as `SQLITE_FULL` when a write to the database, its WAL or journal comes up short, and as
/// one of the `SQLITE_IOERR_*` codes below when the failing call is an `fsync`, a truncate or the growth of the WAL
/// index (`-shm`). Those are also what a failing disk returns, and the answer is the same for both: refuse with
/// `503` and `Retry-After`, and let the next call try again (SQLite keeps no state from the failed transaction).
/// A failed read (`SQLITE_IOERR_READ`, `..._SHORT_READ`) is not a full disk and stays `.unavailable`.
enum StorageFull {
    static let writeFailures: [ResultCode] = [
        .SQLITE_IOERR, .SQLITE_IOERR_WRITE, .SQLITE_IOERR_FSYNC, .SQLITE_IOERR_DIR_FSYNC, .SQLITE_IOERR_TRUNCATE,
        .SQLITE_IOERR_SHMSIZE, .SQLITE_IOERR_SHMMAP,
    ]

    /// The `StoreError` for a `SQLITE_FULL` or `SQLITE_IOERR` family result of `operation`.
    static func error(_ code: ResultCode, _ operation: String) -> StoreError {
        if code.primaryResultCode == .SQLITE_FULL {
            return StoreError(.storageFull, "\(operation): disk full")
        }
        if writeFailures.contains(code) {
            return StoreError(.storageFull, "\(operation): write to disk failed (disk full or I/O error)")
        }
        return StoreError(.unavailable, "\(operation): I/O error")
    }
}
