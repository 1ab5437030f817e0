import DevIDCore
import DevIDStore
import Foundation
import Testing

@Suite("Tenant policy")
struct TenantPolicyTests {
    static let open = TenantPolicy(autoRegister: true, manualApproval: false)
    static let reviewed = TenantPolicy(autoRegister: true, manualApproval: true)

    @Test func defaultIsClosed() {
        #expect(TenantPolicy() == TenantPolicy(autoRegister: false, manualApproval: false))
        #expect(Tenant(id: Fixture.tenantID(), displayName: "Acme", createdAt: Fixture.epoch).policy == TenantPolicy())
    }

    @Test func tenantJSONWithoutPolicyDecodesToTheDefault() throws {
        let json = #"{"id":"acme","displayName":"Acme","createdAt":0}"#
        let tenant = try JSONDecoder().decode(Tenant.self, from: Data(json.utf8))
        #expect(
            tenant
                == Tenant(
                    id: Fixture.tenantID("acme"), displayName: "Acme",
                    createdAt: Date(timeIntervalSinceReferenceDate: 0), policy: TenantPolicy()))
    }

    @Test func policyRoundTripsThroughJSONAndMissingFieldsDefault() throws {
        let tenant = Tenant(
            id: Fixture.tenantID("acme"), displayName: "Acme", createdAt: Fixture.epoch, policy: Self.reviewed)
        #expect(try JSONDecoder().decode(Tenant.self, from: JSONEncoder().encode(tenant)) == tenant)

        let partial = #"{"id":"acme","displayName":"Acme","createdAt":0,"policy":{"manualApproval":true}}"#
        #expect(
            try JSONDecoder().decode(Tenant.self, from: Data(partial.utf8)).policy
                == TenantPolicy(autoRegister: false, manualApproval: true))
        #expect(try JSONDecoder().decode(TenantPolicy.self, from: Data("{}".utf8)) == TenantPolicy())

        // Only the policy is optional.
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(Tenant.self, from: Data(#"{"id":"acme","createdAt":0}"#.utf8))
        }
        #expect(throws: DecodingError.self) {
            try JSONDecoder().decode(TenantPolicy.self, from: Data(#"{"autoRegister":"yes"}"#.utf8))
        }
    }

    @Test(arguments: StoreKind.allCases)
    func policyIsStoredWithTheTenant(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            let closed = Fixture.tenant("acme")
            var open = Fixture.tenant("open")
            open.policy = Self.open
            var reviewed = Fixture.tenant("reviewed")
            reviewed.policy = Self.reviewed
            for tenant in [reviewed, closed, open] { try await store.createTenant(tenant, audit: nil) }

            #expect(try await store.tenant(closed.id) == closed)
            #expect(try await store.tenant(open.id) == open)
            #expect(try await store.tenant(reviewed.id) == reviewed)
            #expect(try await store.tenants() == [closed, open, reviewed])
        }
    }

    @Test(arguments: StoreKind.allCases)
    func updatePolicy(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let acme = Fixture.tenantID("acme")
            let other = try #require(try await store.tenant(Fixture.tenantID("other")))

            try await store.updateTenantPolicy(acme, policy: Self.open, audit: Fixture.event("tenant.policy"))
            var expected = Fixture.tenant("acme")
            expected.policy = Self.open
            #expect(try await store.tenant(acme) == expected)
            #expect(try await store.tenant(other.id) == other)
            #expect(try await store.auditEvents(AuditFilter()).map(\.action) == ["tenant.policy"])

            try await store.updateTenantPolicy(acme, policy: Self.reviewed, audit: nil)
            #expect(try await store.tenant(acme)?.policy == Self.reviewed)
            // Writing the same policy again is not an error.
            try await store.updateTenantPolicy(acme, policy: Self.reviewed, audit: nil)
            #expect(try await store.tenant(acme)?.policy == Self.reviewed)
            try await store.updateTenantPolicy(acme, policy: TenantPolicy(), audit: nil)
            #expect(try await store.tenant(acme) == Fixture.tenant("acme"))
            #expect(try await Fixture.auditCount(store) == 1)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func topicPolicyIsStoredWithTheTenant(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let acme = Fixture.tenantID("acme")
            #expect(try await store.tenant(acme)?.policy.topics == nil, "no own topic policy: the default applies")
            let topics = TopicPolicy(
                rules: [TopicRule(.publish, "tenants/{tenant}/lines/+/status"), TopicRule(.all, "tenants/{tenant}/x/#")],
                scopes: ["telemetry:write"])
            try await store.updateTenantPolicy(
                acme, policy: TenantPolicy(autoRegister: true, manualApproval: false, topics: topics), audit: nil)
            let stored = try #require(try await store.tenant(acme))
            #expect(stored.policy.topics == topics)
            #expect(stored.policy.autoRegister)
            #expect(try await store.tenants().first { $0.id == acme }?.policy.topics == topics)

            var created = Fixture.tenant("with-topics")
            created.policy.topics = TopicPolicy(rules: [])
            try await store.createTenant(created, audit: nil)
            #expect(try await store.tenant(created.id) == created, "an empty rule list is not the default")

            try await store.updateTenantPolicy(acme, policy: TenantPolicy(autoRegister: true), audit: nil)
            #expect(try await store.tenant(acme)?.policy.topics == nil)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func unknownTenantChangesNothing(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let before = try await RegistrySnapshot(store)
            let error = await expectStoreError(.notFound) { () async throws(StoreError) in
                try await store.updateTenantPolicy(
                    Fixture.tenantID("nobody"), policy: Self.reviewed, audit: Fixture.event("tenant.policy"))
            }
            #expect(error?.reason.contains("nobody") == false)
            #expect(try await RegistrySnapshot(store) == before)
        }
    }

    @Test(arguments: StoreKind.allCases)
    func concurrentUpdatesEachLandWithTheirEvent(kind: StoreKind) async throws {
        try await withStore(kind) { store in
            try await Fixture.seed(store)
            let acme = Fixture.tenantID("acme")
            let policies = (0..<20).map { TenantPolicy(autoRegister: $0 % 2 == 0, manualApproval: $0 % 3 == 0) }
            try await withThrowingTaskGroup(of: Void.self) { group in
                for (index, policy) in policies.enumerated() {
                    group.addTask {
                        try await store.updateTenantPolicy(
                            acme, policy: policy, audit: Fixture.event("tenant.policy", reason: "update \(index)"))
                    }
                }
                try await group.waitForAll()
            }
            let events = try await store.auditEvents(AuditFilter(action: "tenant.policy"))
            #expect(events.count == 20)
            // Change and event commit together, so the newest event names the policy that won.
            let last = try #require(events.first)
            let index = try #require(Int(last.reason.dropFirst("update ".count)))
            #expect(try await store.tenant(acme)?.policy == policies[index])
            #expect(try await store.verifyAuditChain() == nil)
        }
    }
}
