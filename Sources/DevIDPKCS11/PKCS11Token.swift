public import CPKCS11
public import Crypto
import Foundation
import Synchronization
public import X509

/// One token of a module, found by the URI's token attributes (label, serial, manufacturer, model or slot id), with
/// a pool of logged-in read-write sessions. Thread-safe: a session is used by one caller at a time; callers beyond
/// the pool open another session.
///
/// When the token goes away (removed, device error, sessions closed: ``PKCS11Error/Code/tokenUnavailable``), every
/// session is dropped and the next call finds the slot again and logs in again, so a token that returns is used
/// again without a restart. An operation that fails that way is retried once on fresh sessions.
public final class PKCS11Token: Sendable {
    public let module: PKCS11Module
    /// The token's URI (no object).
    public let uri: PKCS11URI
    private let pin: [UInt8]?

    private struct State {
        var slot: CK_SLOT_ID?
        var idle: [CK_SESSION_HANDLE] = []
        var loggedIn = false
        /// The module's generation the sessions belong to.
        var moduleGeneration = 0
        /// Bumped at every reset: object handles found before are void (a handle may name another object once the
        /// token is back).
        var generation = 0
    }
    private let state = Mutex(State())

    private static let tokens = Mutex<[String: PKCS11Token]>([:])

    init(module: PKCS11Module, uri: PKCS11URI, pin: [UInt8]?) {
        self.module = module
        self.uri = uri
        self.pin = pin
    }

    /// The token `uri` names (its object attributes ignored), shared by every key of it in this process. The PIN is
    /// read from the URI's pin-source now; the module is loaded on first use; the slot is looked up at once, so a
    /// missing token or a wrong PIN is reported here, not at the first signature.
    public static func open(_ uri: PKCS11URI) throws(PKCS11Error) -> PKCS11Token {
        let tokenURI = uri.tokenURI
        let key = tokenURI.description
        if let token = tokens.withLock({ $0[key] }) { return token }
        let pin = try uri.readPIN()
        let module = try PKCS11Module.load(path: uri.modulePath)
        let token = PKCS11Token(module: module, uri: tokenURI, pin: pin)
        try token.withSession { _ throws(PKCS11Error) in }
        return tokens.withLock { tokens in
            if let existing = tokens[key] { return existing }
            tokens[key] = token
            return token
        }
    }

    var functions: CK_FUNCTION_LIST { module.functions.pointee }

    // MARK: Sessions

    /// The current generation of object handles (see ``State/generation``).
    var generation: Int { state.withLock { $0.generation } }

    /// Runs `body` with a logged-in session. When the token was gone, retries on fresh sessions; when the token is
    /// then not found, re-initializes the module once and looks again; a token still missing is
    /// ``PKCS11Error/Code/tokenUnavailable`` (it was there before: removed, not misnamed). With `retry` false (an
    /// operation that creates an object, which may have been written before the error), it runs once.
    public func withSession<T>(
        retry: Bool = true, _ body: (CK_SESSION_HANDLE) throws(PKCS11Error) -> T
    ) throws(PKCS11Error) -> T {
        do {
            return try attempt(body)
        } catch {
            guard retry, error.code == .tokenUnavailable || error.code == .tokenNotFound else { throw error }
        }
        do {
            return try attempt(body)
        } catch {
            guard error.code == .tokenUnavailable || error.code == .tokenNotFound else { throw error }
        }
        module.reinitialize()
        do {
            return try attempt(body)
        } catch {
            guard error.code == .tokenNotFound, found.withLock({ $0 }) else { throw error }
            throw PKCS11Error(.tokenUnavailable, "token \(label) is not present in \(module.path) (removed?)")
        }
    }

    /// Whether the token was ever found: one that is missing later was removed, not misnamed.
    private let found = Mutex(false)

    /// Whether a pin-source was given (without one, private keys are invisible: no login).
    var hasPIN: Bool { pin != nil }

    private func attempt<T>(_ body: (CK_SESSION_HANDLE) throws(PKCS11Error) -> T) throws(PKCS11Error) -> T {
        try module.shared { () throws(PKCS11Error) -> T in try attemptShared(body) }
    }

    /// Inside the module's shared lock: the module cannot be re-initialized meanwhile, so every session handle of
    /// this generation stays valid until it is closed here.
    private func attemptShared<T>(_ body: (CK_SESSION_HANDLE) throws(PKCS11Error) -> T) throws(PKCS11Error) -> T {
        let (session, generation) = try checkOut()
        do {
            let result = try body(session)
            checkIn(session, generation)
            return result
        } catch {
            if error.code == .tokenUnavailable {
                reset(generation, failed: session)
            } else {
                checkIn(session, generation)
            }
            throw error
        }
    }

    /// Returns a session to the pool, or closes it when the pool was reset since it was checked out (a session is
    /// only ever closed by the one caller holding it, so a handle number is never shared by two callers).
    private func checkIn(_ session: CK_SESSION_HANDLE, _ generation: Int) {
        let kept = state.withLock { state -> Bool in
            guard state.generation == generation else { return false }
            state.idle.append(session)
            return true
        }
        if !kept { _ = functions.C_CloseSession?(session) }
    }

    /// After the token went away: a new generation (slot looked up again, login again, object handles found again);
    /// the idle sessions and the failed one are closed, sessions in use are closed by their callers at check-in.
    /// Nothing happens when another caller already reset after this generation.
    private func reset(_ generation: Int, failed: CK_SESSION_HANDLE) {
        let idle = state.withLock { state -> [CK_SESSION_HANDLE]? in
            guard state.generation == generation else { return nil }
            let idle = state.idle
            state = State(moduleGeneration: state.moduleGeneration, generation: generation + 1)
            return idle
        }
        for session in (idle ?? []) + [failed] { _ = functions.C_CloseSession?(session) }
    }

    private func checkOut() throws(PKCS11Error) -> (CK_SESSION_HANDLE, Int) {
        // After the module was re-initialized, every session and handle of before is void (never closed: the
        // numbers may name new sessions now).
        let moduleGeneration = module.generation
        let current = state.withLock { state -> (CK_SESSION_HANDLE?, Int) in
            if state.moduleGeneration != moduleGeneration {
                state = State(moduleGeneration: moduleGeneration, generation: state.generation + 1)
            }
            return (state.idle.popLast(), state.generation)
        }
        if let session = current.0 { return (session, current.1) }
        let slot = try resolveSlot()
        var session = CK_SESSION_HANDLE(0)
        let rv = functions.C_OpenSession!(slot, CK_FLAGS(CKF_SERIAL_SESSION | CKF_RW_SESSION), nil, nil, &session)
        guard rv == CKR_OK else { throw PKCS11Module.error(rv, "opening a session on token \(label)") }
        if !state.withLock({ $0.loggedIn }) {
            try login(session)
        }
        return (session, current.1)
    }

    /// PINs a token refused, by token and SHA-256 of the PIN: never offered again until the pin-source changes, so
    /// that retries (an agent's backoff) cannot lock the PIN or trip a TPM's dictionary-attack lockout.
    private static let refusedPINs = Mutex<[String: [UInt8]]>([:])

    private func login(_ session: CK_SESSION_HANDLE) throws(PKCS11Error) {
        guard var pin else {
            state.withLock { $0.loggedIn = true }
            return
        }
        let key = uri.description
        let digest = Array(SHA256.hash(data: pin))
        if Self.refusedPINs.withLock({ $0[key] }) == digest {
            _ = functions.C_CloseSession?(session)
            throw PKCS11Error(
                .wrongPIN, "token \(label) refused this PIN before (CKR_PIN_INCORRECT); not trying it again until the pin-source changes")
        }
        let rv = pin.withUnsafeMutableBufferPointer { buffer in
            functions.C_Login!(session, CK_USER_TYPE(CKU_USER), buffer.baseAddress, CK_ULONG(buffer.count))
        }
        guard rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN else {
            _ = functions.C_CloseSession?(session)
            if rv == CKR_PIN_INCORRECT {
                Self.refusedPINs.withLock { $0[key] = digest }
                throw PKCS11Error(.wrongPIN, "token \(label) refused the PIN (CKR_PIN_INCORRECT)", returnValue: rv)
            }
            throw PKCS11Module.error(rv, "logging in to token \(label)")
        }
        Self.refusedPINs.withLock { _ = $0.removeValue(forKey: key) }
        state.withLock { $0.loggedIn = true }
    }

    var label: String { uri.token ?? uri.serial ?? uri.slotID.map { "in slot \($0)" } ?? "?" }

    /// The slot holding the token the URI names.
    private func resolveSlot() throws(PKCS11Error) -> CK_SLOT_ID {
        if let slot = state.withLock({ $0.slot }) { return slot }
        var count = CK_ULONG(0)
        var rv = functions.C_GetSlotList!(CK_BBOOL(CK_TRUE), nil, &count)
        guard rv == CKR_OK else { throw PKCS11Module.error(rv, "listing the slots of \(module.path)") }
        var slots = [CK_SLOT_ID](repeating: 0, count: Int(count))
        rv = slots.withUnsafeMutableBufferPointer { functions.C_GetSlotList!(CK_BBOOL(CK_TRUE), $0.baseAddress, &count) }
        guard rv == CKR_OK else { throw PKCS11Module.error(rv, "listing the slots of \(module.path)") }
        for slot in slots.prefix(Int(count)) {
            if let id = uri.slotID, id != UInt(slot) { continue }
            var info = CK_TOKEN_INFO()
            guard functions.C_GetTokenInfo!(slot, &info) == CKR_OK else { continue }
            if let token = uri.token, Self.padded(info.label) != token { continue }
            if let serial = uri.serial, Self.padded(info.serialNumber) != serial { continue }
            if let manufacturer = uri.manufacturer, Self.padded(info.manufacturerID) != manufacturer { continue }
            if let model = uri.model, Self.padded(info.model) != model { continue }
            state.withLock { $0.slot = slot }
            found.withLock { $0 = true }
            return slot
        }
        throw PKCS11Error(.tokenNotFound, "no token \(label) in PKCS#11 module \(module.path)")
    }

    /// A blank-padded fixed-size field of CK_TOKEN_INFO, trimmed.
    static func padded<T>(_ field: T) -> String {
        withUnsafeBytes(of: field) { raw in
            var bytes = Array(raw)
            while let last = bytes.last, last == 0x20 || last == 0 { bytes.removeLast() }
            return String(decoding: bytes, as: UTF8.self)
        }
    }

    // MARK: Objects

    /// Runs `body` with a CK_ATTRIBUTE array for `attributes` (type and bytes), every value copied into one
    /// allocation (each at an 8-byte boundary) that lives until `body` returns.
    static func withTemplate<T>(
        _ attributes: [(CK_ATTRIBUTE_TYPE, [UInt8])], _ body: (UnsafeMutablePointer<CK_ATTRIBUTE>, CK_ULONG) -> T
    ) -> T {
        let total = attributes.reduce(0) { $0 + ($1.1.count + 7) / 8 * 8 }
        let block = UnsafeMutableRawPointer.allocate(byteCount: max(total, 8), alignment: 8)
        defer { block.deallocate() }
        var template: [CK_ATTRIBUTE] = []
        var offset = 0
        for (type, bytes) in attributes {
            bytes.withUnsafeBytes { raw in
                if let base = raw.baseAddress { (block + offset).copyMemory(from: base, byteCount: raw.count) }
            }
            template.append(
                CK_ATTRIBUTE(type: type, pValue: bytes.isEmpty ? nil : block + offset, ulValueLen: CK_ULONG(bytes.count)))
            offset += (bytes.count + 7) / 8 * 8
        }
        return template.withUnsafeMutableBufferPointer { body($0.baseAddress!, CK_ULONG($0.count)) }
    }

    static func ulong(_ value: UInt) -> [UInt8] { withUnsafeBytes(of: CK_ULONG(value)) { Array($0) } }
    static let yes: [UInt8] = [UInt8(CK_TRUE)]
    static let no: [UInt8] = [UInt8(CK_FALSE)]

    /// Handles of the objects of `objectClass` labelled `label` (and with CKA_ID `id`, when given).
    func find(
        _ session: CK_SESSION_HANDLE, objectClass: UInt, label: String?, id: [UInt8]?
    ) throws(PKCS11Error) -> [CK_OBJECT_HANDLE] {
        var attributes: [(CK_ATTRIBUTE_TYPE, [UInt8])] = [(CK_ATTRIBUTE_TYPE(CKA_CLASS), Self.ulong(objectClass))]
        if let label { attributes.append((CK_ATTRIBUTE_TYPE(CKA_LABEL), Array(label.utf8))) }
        if let id { attributes.append((CK_ATTRIBUTE_TYPE(CKA_ID), id)) }
        let f = functions
        var rv = Self.withTemplate(attributes) { f.C_FindObjectsInit!(session, $0, $1) }
        guard rv == CKR_OK else { throw PKCS11Module.error(rv, "searching token \(label ?? "?")") }
        var handles: [CK_OBJECT_HANDLE] = []
        var batch = [CK_OBJECT_HANDLE](repeating: 0, count: 16)
        while true {
            var found = CK_ULONG(0)
            rv = batch.withUnsafeMutableBufferPointer { f.C_FindObjects!(session, $0.baseAddress, 16, &found) }
            guard rv == CKR_OK else {
                _ = f.C_FindObjectsFinal!(session)
                throw PKCS11Module.error(rv, "searching token \(self.label)")
            }
            handles += batch.prefix(Int(found))
            if found < 16 { break }
        }
        _ = f.C_FindObjectsFinal!(session)
        return handles
    }

    /// One attribute's value.
    func attribute(_ session: CK_SESSION_HANDLE, _ object: CK_OBJECT_HANDLE, _ type: UInt) throws(PKCS11Error) -> [UInt8] {
        let f = functions
        var query = CK_ATTRIBUTE(type: CK_ATTRIBUTE_TYPE(type), pValue: nil, ulValueLen: 0)
        var rv = f.C_GetAttributeValue!(session, object, &query, 1)
        guard rv == CKR_OK, query.ulValueLen != CK_ULONG.max else {
            throw PKCS11Module.error(rv, "reading an attribute in token \(label)")
        }
        var value = [UInt8](repeating: 0, count: Int(query.ulValueLen))
        rv = value.withUnsafeMutableBytes { buffer in
            query.pValue = buffer.baseAddress
            return f.C_GetAttributeValue!(session, object, &query, 1)
        }
        guard rv == CKR_OK else { throw PKCS11Module.error(rv, "reading an attribute in token \(label)") }
        return Array(value.prefix(Int(query.ulValueLen)))
    }

    /// Labels of the private keys in the token.
    public func privateKeyLabels() throws(PKCS11Error) -> [String] {
        try withSession { session throws(PKCS11Error) in
            var labels: [String] = []
            for handle in try find(session, objectClass: UInt(CKO_PRIVATE_KEY), label: nil, id: nil) {
                labels.append(String(decoding: try attribute(session, handle, UInt(CKA_LABEL)), as: UTF8.self))
            }
            return labels.sorted()
        }
    }
}

/// The elliptic curves DevID generates keys on.
public enum PKCS11Curve: Sendable, Hashable {
    case p256
    case p384

    /// CKA_EC_PARAMS: the DER of the curve's named OID.
    var parameters: [UInt8] {
        switch self {
        case .p256: [0x06, 0x08, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07]
        case .p384: [0x06, 0x05, 0x2B, 0x81, 0x04, 0x00, 0x22]
        }
    }

    init?(parameters: [UInt8]) {
        if parameters == PKCS11Curve.p256.parameters {
            self = .p256
        } else if parameters == PKCS11Curve.p384.parameters {
            self = .p384
        } else {
            return nil
        }
    }

    var pointLength: Int { self == .p256 ? 65 : 97 }
}
