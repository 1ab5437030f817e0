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
/// crash while answering a metrics scrape, and a CI run on 35569e4 lost its test process that way.
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
        while let entry = readdir(directory) {
            let isDot = withUnsafeBytes(of: entry.pointee.d_name) { name in
                name[0] == UInt8(ascii: ".") && (name[1] == 0 || (name[1] == UInt8(ascii: ".") && name[2] == 0))
            }
            if !isDot { count += 1 }
        }
        // The directory's own descriptor is open while it is read.
        return max(0, count - 1)
    }
}
