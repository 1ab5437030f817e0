import DevIDTesting
import Foundation
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// The test launcher that replaced Foundation's `Process` in the suite's busiest launchers (``SpawnedProcess``):
/// Foundation 6.3.1 crashes the test process when it starts a child while more than about 1,360 descriptors are open
/// (swift-corelibs-foundation#5472). Runs in the serial phase of `scripts/test`: it opens 1,500 descriptors.
@Suite("SpawnedProcess: posix_spawn for the tests", .serialized)
struct SpawnedProcessTests {
    @Test("starts a child with 1,500 extra descriptors open, and the child inherits none of them")
    func manyDescriptors() throws {
        var opened: [Int32] = []
        defer { for descriptor in opened { close(descriptor) } }
        for _ in 0..<1_500 {
            let descriptor = open("/dev/null", O_RDONLY)  // not close-on-exec: the launcher must close it
            try #require(descriptor >= 0)
            opened.append(descriptor)
        }
        let output = Pipe()
        let process = try SpawnedProcess.start(
            "/bin/sh", ["-c", "ls /proc/self/fd | wc -l"], stdout: output.fileHandleForWriting)
        try? output.fileHandleForWriting.close()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(process.waitUntilExit() == 0)
        // 0, 1, 2, the shell's pipe to wc and the directory ls reads: a handful, not 1,500.
        let count = Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1
        #expect((3...6).contains(count), "the child saw \(count) descriptors")
    }

    @Test("exit status, the signal that ended a child, environment and directory")
    func statusSignalEnvironment() async throws {
        #expect(try SpawnedProcess.start("/bin/sh", ["-c", "exit 7"]).waitUntilExit() == 7)

        let sleeper = try SpawnedProcess.start("/bin/sleep", ["30"])
        #expect(sleeper.isRunning)
        sleeper.signal(SIGKILL)
        #expect(sleeper.waitUntilExit() == SIGKILL)
        #expect(sleeper.terminationReason == .uncaughtSignal)
        #expect(!sleeper.isRunning)

        let output = Pipe()
        let printer = try SpawnedProcess.start(
            "/bin/sh", ["-c", "printf '%s %s' \"$DEVID_SPAWN_TEST\" \"$(pwd)\""], environment: ["DEVID_SPAWN_TEST": "yes"],
            directory: "/tmp", stdout: output.fileHandleForWriting)
        try? output.fileHandleForWriting.close()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        #expect(printer.waitUntilExit() == 0)
        #expect(printer.terminationReason == .exit)
        #expect(text == "yes /tmp")

        #expect(throws: (any Error).self) { try SpawnedProcess.start("/nonexistent/tool", []) }
    }
}
