#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The number of descriptors this process has open, counted with `readdir` on `/proc/self/fd` (`/dev/fd`
/// elsewhere). Not `FileManager.contentsOfDirectory`: in swift-corelibs-foundation 6.3.1 it copies each entry with a
/// fixed 256-byte read that runs past glibc's 32 KiB `readdir` buffer once about 1,360 descriptors are open, and the
/// process dies with SIGSEGV (swiftlang/swift-corelibs-foundation#5472) — a server with many connections open would
/// crash while answering a metrics scrape, and a CI run on 35569e4 lost its test process that way. Reading a name
/// reads at most its first three bytes, which every record holds (a name and its terminating zero, padded).
public enum OpenDescriptors {
    public static func count() -> Int {
        #if os(Linux)
            let path = "/proc/self/fd"
        #else
            let path = "/dev/fd"
        #endif
        guard let directory = opendir(path) else { return 0 }
        defer { closedir(directory) }
        var count = 0
        // Never `entry.pointee`: that copies the whole 280-byte `dirent`, while `readdir` returns records only
        // `d_reclen` long — the very over-read of the Foundation bug. The name's first bytes are read in place.
        let nameOffset = MemoryLayout<dirent>.offset(of: \dirent.d_name) ?? 19
        while let entry = readdir(directory) {
            let name = UnsafeRawPointer(entry).advanced(by: nameOffset).assumingMemoryBound(to: UInt8.self)
            let dot = UInt8(ascii: ".")
            let isDot = name[0] == dot && (name[1] == 0 || (name[1] == dot && name[2] == 0))
            if !isDot { count += 1 }
        }
        // The directory's own descriptor is open while it is read.
        return max(0, count - 1)
    }
}
