public import CPKCS11
import Foundation
import Synchronization

#if canImport(Glibc)
    import Glibc
#endif

/// A PKCS#11 module (a `.so` named by a URI's module-path), loaded with dlopen and initialised once per process
/// for multi-threaded use (CKF_OS_LOCKING_OK). Modules stay loaded until the process ends: PKCS#11 allows one
/// C_Initialize per process, and every token of the module shares it.
public final class PKCS11Module: Sendable {
    public let path: String
    nonisolated(unsafe) let functions: UnsafeMutablePointer<CK_FUNCTION_LIST>
    /// Every call into the module holds it shared; ``reinitialize()`` holds it exclusively, since PKCS#11 forbids
    /// C_Finalize while other threads are inside the library.
    nonisolated(unsafe) private let lock: UnsafeMutablePointer<pthread_rwlock_t>
    /// Bumped by every ``reinitialize()``: sessions and object handles from before are void.
    private let state = Mutex<(generation: Int, lastReinitialized: ContinuousClock.Instant?)>((0, nil))

    private static let loaded = Mutex<[String: PKCS11Module]>([:])

    private init(path: String, functions: UnsafeMutablePointer<CK_FUNCTION_LIST>) {
        self.path = path
        self.functions = functions
        lock = .allocate(capacity: 1)
        pthread_rwlock_init(lock, nil)
    }

    var generation: Int { state.withLock { $0.generation } }

    /// Runs `body` while no ``reinitialize()`` can run.
    func shared<T>(_ body: () throws(PKCS11Error) -> T) throws(PKCS11Error) -> T {
        pthread_rwlock_rdlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        return try body()
    }

    /// C_Finalize and C_Initialize again, at most once every two seconds: a token that was removed and came back
    /// may only be seen after it (SoftHSM2, for one, lists the tokens it found at C_Initialize). Every token of the
    /// module then opens new sessions and finds its keys again.
    func reinitialize() {
        let now = ContinuousClock.now
        let due = state.withLock { state -> Bool in
            if let last = state.lastReinitialized, now - last < .seconds(2) { return false }
            state.lastReinitialized = now
            return true
        }
        guard due else { return }
        pthread_rwlock_wrlock(lock)
        defer { pthread_rwlock_unlock(lock) }
        _ = functions.pointee.C_Finalize?(nil)
        var args = CK_C_INITIALIZE_ARGS()
        args.flags = CK_FLAGS(CKF_OS_LOCKING_OK)
        _ = withUnsafeMutablePointer(to: &args) { functions.pointee.C_Initialize?(UnsafeMutableRawPointer($0)) }
        state.withLock { $0.generation += 1 }
    }

    /// The module at `path`, loaded and initialised on first use.
    public static func load(path: String) throws(PKCS11Error) -> PKCS11Module {
        let result: Result<PKCS11Module, PKCS11Error> = loaded.withLock { modules in
            if let module = modules[path] { return .success(module) }
            guard path.hasPrefix("/") else {
                return .failure(PKCS11Error(.moduleUnavailable, "PKCS#11 module-path \(path) is not an absolute path"))
            }
            guard FileManager.default.fileExists(atPath: path) else {
                return .failure(PKCS11Error(.moduleUnavailable, "PKCS#11 module \(path) does not exist"))
            }
            guard let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) else {
                let reason = dlerror().map { String(cString: $0) } ?? "unknown error"
                return .failure(PKCS11Error(.moduleUnavailable, "PKCS#11 module \(path) cannot be loaded: \(reason)"))
            }
            guard let symbol = dlsym(handle, "C_GetFunctionList") else {
                return .failure(PKCS11Error(.moduleUnavailable, "\(path) is not a PKCS#11 module (no C_GetFunctionList)"))
            }
            typealias GetFunctionList = @convention(c) (
                UnsafeMutablePointer<UnsafeMutablePointer<CK_FUNCTION_LIST>?>?
            ) -> CK_RV
            let getFunctionList = unsafeBitCast(symbol, to: GetFunctionList.self)
            var list: UnsafeMutablePointer<CK_FUNCTION_LIST>?
            let rv = getFunctionList(&list)
            guard rv == CKR_OK, let list, let initialize = list.pointee.C_Initialize else {
                return .failure(PKCS11Error(.moduleUnavailable, "PKCS#11 module \(path): C_GetFunctionList failed (\(PKCS11Module.name(rv)))", returnValue: rv))
            }
            var args = CK_C_INITIALIZE_ARGS()
            args.flags = CK_FLAGS(CKF_OS_LOCKING_OK)
            let initialized = withUnsafeMutablePointer(to: &args) { initialize(UnsafeMutableRawPointer($0)) }
            guard initialized == CKR_OK || initialized == CKR_CRYPTOKI_ALREADY_INITIALIZED else {
                return .failure(PKCS11Error(.moduleUnavailable, "PKCS#11 module \(path): C_Initialize failed (\(PKCS11Module.name(initialized)))", returnValue: initialized))
            }
            let module = PKCS11Module(path: path, functions: list)
            modules[path] = module
            return .success(module)
        }
        return try result.get()
    }

    /// The module's own name for a return value, for error messages.
    static func name(_ rv: CK_RV) -> String {
        switch rv {
        case CK_RV(CKR_OK): "CKR_OK"
        case CK_RV(CKR_GENERAL_ERROR): "CKR_GENERAL_ERROR"
        case CK_RV(CKR_FUNCTION_FAILED): "CKR_FUNCTION_FAILED"
        case CK_RV(CKR_ARGUMENTS_BAD): "CKR_ARGUMENTS_BAD"
        case CK_RV(CKR_ATTRIBUTE_VALUE_INVALID): "CKR_ATTRIBUTE_VALUE_INVALID"
        case CK_RV(CKR_ATTRIBUTE_TYPE_INVALID): "CKR_ATTRIBUTE_TYPE_INVALID"
        case CK_RV(CKR_DEVICE_ERROR): "CKR_DEVICE_ERROR"
        case CK_RV(CKR_DEVICE_MEMORY): "CKR_DEVICE_MEMORY"
        case CK_RV(CKR_DEVICE_REMOVED): "CKR_DEVICE_REMOVED"
        case CK_RV(CKR_KEY_HANDLE_INVALID): "CKR_KEY_HANDLE_INVALID"
        case CK_RV(CKR_MECHANISM_INVALID): "CKR_MECHANISM_INVALID"
        case CK_RV(CKR_MECHANISM_PARAM_INVALID): "CKR_MECHANISM_PARAM_INVALID"
        case CK_RV(CKR_OBJECT_HANDLE_INVALID): "CKR_OBJECT_HANDLE_INVALID"
        case CK_RV(CKR_PIN_INCORRECT): "CKR_PIN_INCORRECT"
        case CK_RV(CKR_PIN_LOCKED): "CKR_PIN_LOCKED"
        case CK_RV(CKR_SESSION_CLOSED): "CKR_SESSION_CLOSED"
        case CK_RV(CKR_SESSION_HANDLE_INVALID): "CKR_SESSION_HANDLE_INVALID"
        case CK_RV(CKR_SLOT_ID_INVALID): "CKR_SLOT_ID_INVALID"
        case CK_RV(CKR_TEMPLATE_INCONSISTENT): "CKR_TEMPLATE_INCONSISTENT"
        case CK_RV(CKR_TEMPLATE_INCOMPLETE): "CKR_TEMPLATE_INCOMPLETE"
        case CK_RV(CKR_TOKEN_NOT_PRESENT): "CKR_TOKEN_NOT_PRESENT"
        case CK_RV(CKR_TOKEN_NOT_RECOGNIZED): "CKR_TOKEN_NOT_RECOGNIZED"
        case CK_RV(CKR_TOKEN_WRITE_PROTECTED): "CKR_TOKEN_WRITE_PROTECTED"
        case CK_RV(CKR_USER_NOT_LOGGED_IN): "CKR_USER_NOT_LOGGED_IN"
        case CK_RV(CKR_USER_ALREADY_LOGGED_IN): "CKR_USER_ALREADY_LOGGED_IN"
        case CK_RV(CKR_CRYPTOKI_NOT_INITIALIZED): "CKR_CRYPTOKI_NOT_INITIALIZED"
        case CK_RV(CKR_DOMAIN_PARAMS_INVALID): "CKR_DOMAIN_PARAMS_INVALID"
        case CK_RV(CKR_CURVE_NOT_SUPPORTED): "CKR_CURVE_NOT_SUPPORTED"
        default: "CKR 0x" + String(rv, radix: 16)
        }
    }

    /// The error for a failed call: `what` is the operation, in words.
    static func error(_ rv: CK_RV, _ what: String) -> PKCS11Error {
        let code: PKCS11Error.Code
        switch rv {
        case CK_RV(CKR_PIN_INCORRECT), CK_RV(CKR_PIN_LOCKED), CK_RV(CKR_PIN_INVALID), CK_RV(CKR_PIN_LEN_RANGE):
            code = .wrongPIN
        case CK_RV(CKR_MECHANISM_INVALID), CK_RV(CKR_MECHANISM_PARAM_INVALID), CK_RV(CKR_CURVE_NOT_SUPPORTED),
            CK_RV(CKR_DOMAIN_PARAMS_INVALID):
            code = .mechanismUnsupported
        case CK_RV(CKR_KEY_HANDLE_INVALID), CK_RV(CKR_OBJECT_HANDLE_INVALID):
            code = .keyNotFound
        default:
            code = isTokenGone(rv) ? .tokenUnavailable : .failed
        }
        return PKCS11Error(code, "\(what): \(name(rv))", returnValue: rv)
    }

    /// Return values after which the sessions are gone and DevID reconnects (re-finds the slot, logs in again).
    static func isTokenGone(_ rv: CK_RV) -> Bool {
        [
            CKR_DEVICE_ERROR, CKR_DEVICE_REMOVED, CKR_TOKEN_NOT_PRESENT, CKR_TOKEN_NOT_RECOGNIZED, CKR_SESSION_CLOSED,
            CKR_SESSION_HANDLE_INVALID, CKR_SLOT_ID_INVALID, CKR_CRYPTOKI_NOT_INITIALIZED, CKR_GENERAL_ERROR,
            CKR_USER_NOT_LOGGED_IN,
        ].map { CK_RV($0) }.contains(rv)
    }
}
