import DevIDStore
import Foundation
import Testing

/// ``Store/nextCRLNumber(atLeast:)``: one counter for every CRL, shared by every server of a registry.
@Suite("CRL numbers")
struct CRLNumberTests {
    @Test("numbers rise by one, never below the floor given, and concurrent callers each get their own", arguments: StoreKind.allCases)
    func allocation(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            #expect(try await store.nextCRLNumber(atLeast: 0) == 1)
            #expect(try await store.nextCRLNumber(atLeast: 0) == 2)
            // A server that numbered its CRLs itself before (up to 57) continues above that.
            #expect(try await store.nextCRLNumber(atLeast: 57) == 58)
            #expect(try await store.nextCRLNumber(atLeast: 3) == 59)
            let numbers = try await withThrowingTaskGroup(of: UInt64.self) { group in
                for _ in 0..<20 { group.addTask { try await store.nextCRLNumber(atLeast: 0) } }
                return try await group.reduce(into: []) { $0.append($1) }
            }
            #expect(numbers.sorted() == Array(60...79))
        }
    }
}
