#if canImport(Glibc)
public import Glibc
#elseif canImport(Musl)
public import Musl
#elseif canImport(Darwin)
public import Darwin
#endif

/// Files that hold secrets: private keys, CA state. Writes are atomic and never expose the bytes to other users.
///
/// Errors carry the path and the system's reason, never the file's content.
public enum SecureFile {
    /// Writes `bytes` to `path` atomically with permissions `mode`.
    ///
    /// A temporary file is created next to `path` with `O_CREAT | O_EXCL` and `mode` from the start (so the content
    /// is never readable by others, not even briefly), written in full, `fsync`ed, renamed over `path`, and the
    /// directory is `fsync`ed. A reader sees the old content or the new, never a mix. The directory must exist.
    ///
    /// - Throws: `.io` if any step fails; the temporary file is removed.
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o600) throws(DevIDPKIError) {
        let (directory, name) = try split(path)
        let fd: Int32
        let temporary: String
        (fd, temporary) = try createTemporary(for: path, directory: directory, name: name, mode: mode)

        do throws(DevIDPKIError) {
            // O_CREAT applies the umask; make the mode exactly what was asked for.
            guard fchmod(fd, mode) == 0 else { throw failure("could not set the mode of", path) }
            try writeAll(bytes, to: fd, path: path)
            guard fsync(fd) == 0 else { throw failure("could not flush", path) }
        } catch {
            close(fd)
            unlink(temporary)
            throw error
        }
        guard close(fd) == 0 else {
            let error = failure("could not close", path)
            unlink(temporary)
            throw error
        }
        guard rename(temporary, path) == 0 else {
            let error = failure("could not replace", path)
            unlink(temporary)
            throw error
        }
        try syncDirectory(directory)
    }

    /// The whole content of the file at `path`.
    ///
    /// - Throws: `.notFound` if there is no such file, `.io` for any other failure.
    public static func read(_ path: String) throws(DevIDPKIError) -> [UInt8] {
        let fd = retryingOnInterrupt { open(path, O_RDONLY | O_CLOEXEC) }
        guard fd >= 0 else {
            if errno == ENOENT { throw DevIDPKIError(.notFound, "no such file: \(path)") }
            throw failure("could not open", path)
        }
        defer { close(fd) }

        var content: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 64 * 1024)
        while true {
            let count = buffer.withUnsafeMutableBytes { raw in
                retryingOnInterrupt { systemRead(fd, raw.baseAddress, raw.count) }
            }
            guard count >= 0 else { throw failure("could not read", path) }
            if count == 0 { break }
            content.append(contentsOf: buffer[..<count])
        }
        return content
    }

    /// Creates the directory `path` with permissions `mode`. An existing directory is left as it is.
    ///
    /// The parent must exist; it is `fsync`ed so the new entry survives a crash.
    ///
    /// - Throws: `.alreadyExists` if `path` exists and is not a directory, `.io` for any other failure
    ///   (including a missing parent).
    public static func createDirectory(_ path: String, mode: mode_t = 0o700) throws(DevIDPKIError) {
        guard !path.isEmpty else { throw DevIDPKIError(.io, "empty directory path") }
        if mkdir(path, mode) != 0 {
            guard errno == EEXIST else { throw failure("could not create directory", path) }
            // O_DIRECTORY opens only a directory. (No `stat` struct here: which module provides it under
            // MemberImportVisibility depends on how the compiler batches files, and it has broken builds.)
            let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
            guard descriptor >= 0 else {
                if errno == ENOTDIR { throw DevIDPKIError(.alreadyExists, "exists and is not a directory: \(path)") }
                throw failure("could not inspect", path)
            }
            close(descriptor)
            return
        }
        // mkdir applies the umask; make the mode exactly what was asked for.
        let fd = retryingOnInterrupt { open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) }
        guard fd >= 0 else { throw failure("could not open directory", path) }
        defer { close(fd) }
        guard fchmod(fd, mode) == 0 else { throw failure("could not set the mode of", path) }

        var trimmed = Substring(path)
        while trimmed.count > 1, trimmed.hasSuffix("/") { trimmed = trimmed.dropLast() }
        let parent = try split(String(trimmed)).directory
        try syncDirectory(parent)
    }

    // MARK: - Helpers

    /// The directory part and the last component of a file path.
    private static func split(_ path: String) throws(DevIDPKIError) -> (directory: String, name: String) {
        guard let slash = path.lastIndex(of: "/") else {
            guard !path.isEmpty else { throw DevIDPKIError(.io, "empty file path") }
            return (".", path)
        }
        let name = String(path[path.index(after: slash)...])
        guard !name.isEmpty, name != ".", name != ".." else {
            throw DevIDPKIError(.io, "not a file path: \(path)")
        }
        let directory = String(path[..<slash])
        return (directory.isEmpty ? "/" : directory, name)
    }

    private static func createTemporary(
        for path: String,
        directory: String,
        name: String,
        mode: mode_t
    ) throws(DevIDPKIError) -> (Int32, String) {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<8 {
            let suffix = String(UInt64.random(in: .min ... .max, using: &generator), radix: 16)
            let temporary = "\(directory)/.\(name).\(suffix).tmp"
            let fd = retryingOnInterrupt {
                open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
            }
            if fd >= 0 { return (fd, temporary) }
            guard errno == EEXIST else { throw failure("could not create a temporary file to write", path) }
        }
        throw DevIDPKIError(.io, "could not create a temporary file to write \(path)")
    }

    private static func writeAll(_ bytes: [UInt8], to fd: Int32, path: String) throws(DevIDPKIError) {
        var offset = 0
        while offset < bytes.count {
            let written = bytes.withUnsafeBytes { raw in
                retryingOnInterrupt { systemWrite(fd, raw.baseAddress! + offset, raw.count - offset) }
            }
            guard written > 0 else { throw failure("could not write", path) }
            offset += written
        }
    }

    private static func syncDirectory(_ directory: String) throws(DevIDPKIError) {
        let fd = retryingOnInterrupt { open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) }
        guard fd >= 0 else { throw failure("could not open directory", directory) }
        defer { close(fd) }
        // Some file systems cannot fsync a directory; that is not a failure of the write.
        guard fsync(fd) == 0 || errno == EINVAL else { throw failure("could not flush directory", directory) }
    }

    private static func retryingOnInterrupt<Result: BinaryInteger>(_ call: () -> Result) -> Result {
        while true {
            let result = call()
            if result >= 0 || errno != EINTR { return result }
        }
    }

    /// An `.io` error naming `path` and the current `errno`.
    private static func failure(_ what: String, _ path: String) -> DevIDPKIError {
        let reason = String(cString: strerror(errno))
        return DevIDPKIError(.io, "\(what) \(path): \(reason)")
    }
}

// `SecureFile.read` and `.write` shadow the C functions inside the enum; these reach them without naming the C module.
private func systemRead(_ fd: Int32, _ buffer: UnsafeMutableRawPointer?, _ count: Int) -> Int {
    read(fd, buffer, count)
}

private func systemWrite(_ fd: Int32, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
    write(fd, buffer, count)
}
