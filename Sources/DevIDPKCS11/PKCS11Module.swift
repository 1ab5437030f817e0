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

    private static let loaded = Mutex<[String: PKCS11Module]>([:])

    private init(path: String, functions: UnsafeMutablePointer<CK_FUNCTION_LIST>) {
        self.path = path
        self.functions = functions
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
            CKR_DEVICE_MEMORY, CKR_USER_NOT_LOGGED_IN,
        ].map { CK_RV($0) }.contains(rv)
    }
}
