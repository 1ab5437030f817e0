import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#elseif canImport(Musl)
    import Musl
#elseif canImport(Darwin)
    import Darwin
#endif

/// The reload hook (`--on-rotate CMD`): run with `/bin/sh -c CMD` after a new identity is installed, so that the
/// programs using `key.pem` and `cert.pem` (a broker client, a web server) pick them up.
///
/// The environment is the agent's plus `DEVID_STATE_DIR` (the state directory) and `DEVID_SERIAL` (the new
/// certificate's serial). Standard input is `/dev/null`; output goes where the agent's goes. A failure (non-zero exit,
/// a signal, a timeout, or a command that cannot start) is reported, not thrown: the identity is already installed,
/// and the next step, the check-in with the new certificate, does not depend on the hook.
///
/// The timeout is real time (the hook is a real process); the hook is sent SIGTERM, then SIGKILL 5 s later.
public struct ReloadHook: Sendable, Hashable {
    public var command: String
    public var timeout: Duration

    public init(command: String, timeout: Duration = .seconds(120)) {
        self.command = command
        self.timeout = timeout
    }

    /// How a run ended.
    public enum Outcome: Sendable, Hashable, CustomStringConvertible {
        case succeeded
        case failed(exitStatus: Int32)
        case killed(signal: Int32)
        case timedOut
        case couldNotStart(String)

        public var succeeded: Bool { self == .succeeded }

        public var description: String {
            switch self {
            case .succeeded: "exit 0"
            case .failed(let status): "exit \(status)"
            case .killed(let signal): "killed by signal \(signal)"
            case .timedOut: "timed out"
            case .couldNotStart(let reason): "could not start: \(reason)"
            }
        }
    }

    public func run(stateDirectory: String, serial: String) async -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", command]
        var environment = ProcessInfo.processInfo.environment
        environment["DEVID_STATE_DIR"] = stateDirectory
        environment["DEVID_SERIAL"] = serial
        process.environment = environment
        process.standardInput = FileHandle.nullDevice

        let exited = Exit()
        process.terminationHandler = { process in
            exited.finish(status: process.terminationStatus, reason: process.terminationReason)
        }
        do {
            try process.run()
        } catch {
            return .couldNotStart(AgentError.oneLine(String(describing: error)))
        }
        let pid = process.processIdentifier
        let timeout = self.timeout
        let watchdog = Task {
            try await Task.sleep(for: timeout)
            exited.markTimedOut()
            kill(pid, SIGTERM)
            try await Task.sleep(for: .seconds(5))
            kill(pid, SIGKILL)
        }
        let (status, reason, timedOut) = await exited.wait()
        watchdog.cancel()
        if timedOut { return .timedOut }
        if reason == .uncaughtSignal { return .killed(signal: status) }
        return status == 0 ? .succeeded : .failed(exitStatus: status)
    }

    /// The child's exit, delivered once from `terminationHandler`.
    private final class Exit: Sendable {
        typealias Ending = (Int32, Process.TerminationReason, Bool)
        private struct State {
            var result: (Int32, Process.TerminationReason)?
            var waiter: CheckedContinuation<Ending, Never>?
            var timedOut = false
        }
        private let state = Mutex(State())

        func finish(status: Int32, reason: Process.TerminationReason) {
            let resume = state.withLock { state -> (CheckedContinuation<Ending, Never>, Bool)? in
                state.result = (status, reason)
                guard let waiter = state.waiter else { return nil }
                state.waiter = nil
                return (waiter, state.timedOut)
            }
            if let (waiter, timedOut) = resume { waiter.resume(returning: (status, reason, timedOut)) }
        }

        func markTimedOut() {
            state.withLock { $0.timedOut = true }
        }

        func wait() async -> Ending {
            await withCheckedContinuation { continuation in
                let done = state.withLock { state -> Ending? in
                    if let (status, reason) = state.result { return (status, reason, state.timedOut) }
                    state.waiter = continuation
                    return nil
                }
                if let done { continuation.resume(returning: done) }
            }
        }
    }
}
