import DevIDCore
import Foundation
import Testing

import DevIDTesting

@testable import DevIDServer

/// `process_open_fds` and the test launcher count `/proc/self/fd` with `readdir`. The Foundation listing they used
/// before reads past glibc's buffer once about 1,360 descriptors are open and kills the process with SIGSEGV
/// (swift-corelibs-foundation#5472): a server holding that many connections died on a metrics scrape, and a CI run
/// on 35569e4 lost its test process while counting. The crash needs the buffer's end to fall at the end of a
/// mapping, so no test reproduces it on demand (3,000 descriptors and 20 listings did not crash the old code here);
/// this one checks that the count stays right far past that size. Runs in the serial phase of `scripts/test`: 3,000 extra
/// descriptors in the shared test process would push parallel suites' launchers over their limit.
@Suite("Descriptor count")
struct DescriptorCountTests {
    @Test("process_open_fds counts past the 1,360 entries that crashed FileManager's listing")
    func countsManyDescriptors() throws {
        #if os(Linux)
            let before = OpenDescriptors.count()
            #expect(before > 0)
            var opened: [Int32] = []
            defer { for descriptor in opened { close(descriptor) } }
            for _ in 0..<3_000 {
                let descriptor = open("/dev/null", O_RDONLY | O_CLOEXEC)
                try #require(descriptor >= 0)
                opened.append(descriptor)
            }
            // Several passes: the crash depended on where the readdir buffer ended in memory.
            for _ in 0..<20 {
                let sample = try #require(ProcessMetrics.read())
                #expect(abs(Int(sample.openFDs) - (before + 3_000)) < 50)
            }
            let text = ProcessLaunch.openDescriptors()
            #expect(text >= before + 2_950)
        #endif
    }
}
