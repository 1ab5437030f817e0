import ArgumentParser
import DevIDServer
import Foundation
import Logging

/// Options every command shares: where the data directory is, how to find a running server.
struct GlobalOptions: ParsableArguments {
    @Option(name: .long, help: "Data directory (CA hierarchy, registry, secrets).")
    var dataDir: String = ProcessInfo.processInfo.environment["DEVID_DATA_DIR"] ?? "./devid-data"

    @Option(name: .long, help: "Operations URL of a running server (default: DEVID_SERVER, else DATA/server.json).")
    var server: String?

    @Flag(name: .long, help: "Print machine-readable JSON.")
    var json: Bool = false
}

/// A one-line, secret-free error for stderr; ArgumentParser prints it and exits non-zero.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

enum Output {
    static func json<T: Encodable>(_ value: T) throws {
        let encoder = DevIDJSON.encoder
        // URLs as they are (`http://...`), not with JSONEncoder's escaped slashes (`http:\/\/...`).
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        let data = try encoder.encode(value)
        print(String(decoding: data, as: UTF8.self))
    }

    static func date(_ date: Date) -> String {
        ISO8601DateFormatter().string(from: date)
    }

    /// A secret on stdout (alone, so `T=$(devid ...)` captures only it), then a note about it on stderr. stdout is
    /// flushed first: when both go to one file or pipe (`> log 2>&1`), the secret comes before its note, as on a
    /// terminal, instead of after it when stdout is buffered until exit.
    static func secret(_ secret: String, note: String) {
        print(secret)
        fflush(nil)  // every output stream: naming `stdout` is not concurrency-safe in Swift 6
        FileHandle.standardError.write(Data((note + "\n").utf8))
    }

    /// Left-aligned columns.
    static func table(_ header: [String], _ rows: [[String]]) {
        let all = [header] + rows
        let widths = header.indices.map { column in all.map { $0[column].count }.max() ?? 0 }
        for row in all {
            print(
                row.enumerated().map { index, cell in
                    index == row.count - 1 ? cell : cell.padding(toLength: widths[index], withPad: " ", startingAt: 0)
                }.joined(separator: "  "))
        }
    }
}

enum LoggingSetup {
    static func bootstrap(level: Logger.Level) {
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
    }
}
