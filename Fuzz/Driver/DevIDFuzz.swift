import DevIDFuzzTargets
import Foundation

#if FUZZING
import CDevIDFuzz
#endif

/// `devid-fuzz`: the libFuzzer driver for every target in `DevIDFuzzTargets` (docs/fuzzing.md).
///
/// Built with `-sanitize=fuzzer,address -DFUZZING` (scripts/fuzz does it, in `.build-fuzz`), it is a libFuzzer
/// program: `DEVID_FUZZ_TARGET=<name> devid-fuzz [libFuzzer options] [corpus dirs]`. Built normally it replays
/// inputs: `devid-fuzz <target> <file>...` runs each file once and exits 1 if any breaks an invariant (a trap
/// crashes it, as in the fuzzer). `devid-fuzz --list` prints `<name> <max_len> <summary>` per target, in both builds.
@main
struct DevIDFuzz {
    static func main() {
        let arguments = CommandLine.arguments
        if arguments.count == 2, arguments[1] == "--list" {
            for target in FuzzTargets.all { print("\(target.name) \(target.maximumLength) \(target.summary)") }
            return
        }
        #if FUZZING
        fuzz()
        #else
        replay(Array(arguments.dropFirst()))
        #endif
    }

    static func warn(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    #if FUZZING
    /// The target libFuzzer calls; set once, before libFuzzer starts.
    nonisolated(unsafe) static var selected: FuzzTarget?

    static func fuzz() -> Never {
        let name = getenv("DEVID_FUZZ_TARGET").map { String(cString: $0) } ?? ""
        guard let target = FuzzTargets.named(name) else {
            let names = FuzzTargets.all.map(\.name).joined(separator: " ")
            warn("devid-fuzz: set DEVID_FUZZ_TARGET to one of: \(names)")
            exit(2)
        }
        selected = target
        var argc = CommandLine.argc
        var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
        exit(LLVMFuzzerRunDriver(&argc, &argv, testOneInput))
    }
    #else
    static func replay(_ arguments: [String]) {
        guard arguments.count >= 2, let target = FuzzTargets.named(arguments[0]) else {
            let names = FuzzTargets.all.map(\.name).joined(separator: " ")
            warn("usage: devid-fuzz <target> <file>... | devid-fuzz --list\ntargets: \(names)")
            exit(2)
        }
        var failures = 0
        for path in arguments.dropFirst() {
            guard let data = FileManager.default.contents(atPath: path) else {
                warn("devid-fuzz: cannot read \(path)")
                exit(2)
            }
            do {
                try target.run(Array(data))
                print("ok \(path)")
            } catch {
                failures += 1
                print("FAIL \(path): \(error)")
            }
        }
        exit(failures == 0 ? 0 : 1)
    }
    #endif
}

#if FUZZING
/// libFuzzer's per-input callback. A broken invariant becomes a crash, so libFuzzer saves the input.
@_cdecl("LLVMFuzzerTestOneInput")
func testOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = size == 0 ? [] : Array(UnsafeBufferPointer(start: data, count: size))
    do {
        try DevIDFuzz.selected?.run(bytes)
    } catch {
        fatalError("invariant broken: \(error)")
    }
    return 0
}
#endif
