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

    @Test("stored CRLs replace each other, an older set is refused, and each store is one change", arguments: StoreKind.allCases)
    func storedCRLs(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            #expect(try await store.storedCRLs().isEmpty)
            let first = [
                StoredCRL(name: "issuing", caName: "issuing", url: "http://h/crl/issuing.crl", number: 5, der: [1, 2, 3]),
                StoredCRL(name: "issuing-2-0", caName: "issuing", url: "", number: 5, der: [], withheld: "too big"),
            ]
            let mark = try await store.changes(after: 0, limit: 1_000).last?.sequence ?? 0
            #expect(try await store.storeCRLs(first))
            #expect(try await store.storedCRLs() == first.sorted { $0.name < $1.name })
            let changes = try await store.changes(after: mark, limit: 10)
            #expect(changes.map { "\($0.kind.rawValue) \($0.detail)" } == ["crl 5"], "\(changes)")
            let newer = [StoredCRL(name: "issuing", caName: "issuing", url: "http://h/crl/issuing.crl", number: 7, der: [9])]
            #expect(try await store.storeCRLs(newer))
            #expect(try await store.storedCRLs() == newer)
            // A holder that lost the lease, finishing a build of an older number: refused, nothing changes.
            #expect(try await store.storeCRLs(first) == false)
            #expect(try await store.storedCRLs() == newer)
        }
    }
}
