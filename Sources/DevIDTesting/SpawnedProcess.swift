public import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// A child process started with `posix_spawn`, without Foundation's `Process`.
///
/// Foundation 6.3.1's `Process.run()` lists `/proc/self/fd` with a 256-byte copy per entry that runs past glibc's
/// `readdir` buffer once the process holds more than about 1,360 descriptors: the test process then dies with SIGSEGV
/// (swiftlang/swift-corelibs-foundation#5472). The suite runs hundreds of tests at once and passes that count at its
/// peak; a clean-clone CI rehearsal crashed there (`ShellSession.init`, 2026-12-06). This launcher lists nothing: the
/// child's descriptors 0-2 are set with `dup2`, and every descriptor from 3 up is closed in the child by glibc's
/// `posix_spawn_file_actions_addclosefrom_np` (`close_range`), whatever the parent holds. Signal dispositions and the
/// signal mask are reset to the defaults, as a shell expects (the test process ignores `SIGPIPE`).
public final class SpawnedProcess: @unchecked Sendable {
    public let processIdentifier: Int32
    /// Guards `status` and `signaled`; never held while waiting for the child.
    private let lock = NSLock()
    /// Held around `waitpid`.
    private let reaper = NSLock()
    private var status: Int32?
    private var signaled = false

    /// How the child ended, in the words of Foundation's `Process`.
    public enum TerminationReason: Sendable { case exit, uncaughtSignal }

    /// Starts `executable` (an absolute path) with `arguments` (not including argv[0]) and exactly `environment`.
    /// `stdin`, `stdout` and `stderr` are the parent's descriptors to give the child as 0, 1 and 2; the caller
    /// closes its copies of the child's ends afterwards.
    public init(
        executable: String, arguments: [String], environment: [String: String], directory: String? = nil,
        stdin: Int32, stdout: Int32, stderr: Int32
    ) throws {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        for (descriptor, target) in [(stdin, Int32(0)), (stdout, 1), (stderr, 2)] {
            try Self.check(posix_spawn_file_actions_adddup2(&actions, descriptor, target), "dup2 \(target)")
        }
        if let directory {
            try Self.check(Self.function(Self.addChdir)(&actions, directory), "chdir")
        }
        try Self.check(Self.function(Self.addCloseFrom)(&actions, 3), "closefrom")

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var all = sigset_t()
        sigfillset(&all)
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigdefault(&attributes, &all)
        posix_spawnattr_setsigmask(&attributes, &none)
        try Self.check(
            posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK)), "flags")

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for pointer in argv { free(pointer) }
            for pointer in envp { free(pointer) }
        }
        var pid: pid_t = 0
        try Self.check(posix_spawn(&pid, executable, &actions, &attributes, argv, envp), "spawn \(executable)")
        processIdentifier = pid
    }

    // glibc 2.29 and 2.34 extensions (Debian 12 has 2.36) that Swift's Glibc module does not import: looked up once.
    private typealias AddChdir = @convention(c) (
        UnsafeMutablePointer<posix_spawn_file_actions_t>, UnsafePointer<CChar>
    ) -> Int32
    private typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    private static let addChdir: (name: String, function: AddChdir?) = symbol("posix_spawn_file_actions_addchdir_np")
    private static let addCloseFrom: (name: String, function: AddCloseFrom?) =
        symbol("posix_spawn_file_actions_addclosefrom_np")

    private static func symbol<Function>(_ name: String) -> (name: String, function: Function?) {
        (name, dlsym(dlopen(nil, RTLD_NOW), name).map { unsafeBitCast($0, to: Function.self) })
    }

    private static func function<Function>(_ symbol: (name: String, function: Function?)) throws -> Function {
        guard let function = symbol.function else {
            throw NSError(
                domain: NSPOSIXErrorDomain, code: Int(ENOSYS),
                userInfo: [NSLocalizedDescriptionKey: "\(symbol.name) is missing: glibc 2.34 or later is needed"])
        }
        return function
    }

    private static func check(_ result: Int32, _ step: String) throws {
        guard result == 0 else {
            throw NSError(
                domain: NSPOSIXErrorDomain, code: Int(result),
                userInfo: [NSLocalizedDescriptionKey: "posix_spawn \(step): \(String(cString: strerror(result)))"])
        }
    }

    /// The exit status (or the number of the signal that ended it, as Foundation's `terminationStatus`), once the
    /// child has exited and been reaped; nil while it runs. Never blocks.
    public var exitStatus: Int32? {
        if let known = recorded { return known }
        // Another thread blocked in ``waitUntilExit()`` reaps it; nothing to do here meanwhile.
        if reaper.try() {
            defer { reaper.unlock() }
            reap(options: WNOHANG)
        }
        return recorded
    }

    public var isRunning: Bool { exitStatus == nil }

    /// ``exitStatus``, or -1 while the child runs.
    public var terminationStatus: Int32 { exitStatus ?? -1 }

    /// `.uncaughtSignal` if a signal ended the child; `.exit` otherwise (and while it runs).
    public var terminationReason: TerminationReason {
        _ = exitStatus
        return lock.withLock { signaled ? .uncaughtSignal : .exit }
    }

    /// Blocks the calling thread until the child exits: never call it on the cooperative pool.
    @discardableResult
    public func waitUntilExit() -> Int32 {
        while true {
            if let known = recorded { return known }
            reaper.withLock { reap(options: 0) }
        }
    }

    /// Sends `signal` to the child, if it has not been reaped yet. Never waits for a thread in ``waitUntilExit()``.
    public func signal(_ signal: Int32) {
        lock.withLock {
            if status == nil { _ = kill(processIdentifier, signal) }
        }
    }

    private var recorded: Int32? { lock.withLock { status } }

    /// With `reaper` held: one `waitpid` at a time, so the status is never lost to a second caller's `ECHILD`.
    private func reap(options: Int32) {
        guard recorded == nil else { return }
        var raw: Int32 = 0
        let result = waitpid(processIdentifier, &raw, options)
        if result == processIdentifier {
            let signal = raw & 0x7f
            lock.withLock {
                signaled = signal != 0
                status = signal == 0 ? (raw >> 8) & 0xff : signal
            }
        } else if result == -1, errno != EINTR {
            lock.withLock { status = -1 }  // not our child any more (reaped elsewhere): nothing to wait for
        }
    }
}

extension SpawnedProcess {
    /// Starts `executable` with standard input from `/dev/null`, and its output to `stdout` and `stderr` (`/dev/null`
    /// when nil), in this process's environment unless one is given. Close your copies of a pipe's write end after
    /// this returns, so reading it ends when the child exits.
    public static func start(
        _ executable: String, _ arguments: [String], environment: [String: String]? = nil, directory: String? = nil,
        stdout: FileHandle? = nil, stderr: FileHandle? = nil
    ) throws -> SpawnedProcess {
        guard let null = FileHandle(forUpdatingAtPath: "/dev/null") else {
            throw NSError(domain: NSPOSIXErrorDomain, code: Int(ENOENT))
        }
        defer { try? null.close() }
        return try SpawnedProcess(
            executable: executable, arguments: arguments,
            environment: environment ?? ProcessInfo.processInfo.environment, directory: directory,
            stdin: null.fileDescriptor, stdout: (stdout ?? null).fileDescriptor, stderr: (stderr ?? null).fileDescriptor)
    }
}
