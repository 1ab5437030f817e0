import DevIDCore
import DevIDStore
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore

/// A tenant's topic policy as the admin API shows it: the rules in force and whether they are the default.
struct TopicPolicyView: ResponseCodable {
    var tenant: String
    /// True when the tenant has no policy of its own and the default applies.
    var `default`: Bool
    var rules: [TopicRule]
    var scopes: [String]
}

/// `GET|PUT|DELETE /v1/admin/tenants/:id/topic-policy`: the MQTT topic rules and API scopes of a tenant.
///
/// PUT replaces the tenant's policy with the body (`{"rules":[{"action":"publish|subscribe|all","topic":"..."}],
/// "scopes":[...]}`) after validating every rule; a bad rule is refused 400 with a one-line reason and nothing is
/// stored. DELETE returns the tenant to the default policy. Both are audited (`tenant.topic_policy`) and take
/// effect at the next policy decision.
enum PolicyRoutes {
    static let maximumBody = 1024 * 1024

    static func register(_ admin: RouterGroup<OpsRequestContext>, state: ServerState) {
        admin.get("/tenants/:id/topic-policy") { _, context -> TopicPolicyView in
            let tenant = try await requireTenant(context, state.store)
            return view(tenant)
        }

        admin.put("/tenants/:id/topic-policy") { request, context -> TopicPolicyView in
            let tenant = try await requireTenant(context, state.store)
            let buffer = try await request.body.collect(upTo: maximumBody)
            let policy: TopicPolicy
            do {
                policy = try JSONDecoder().decode(TopicPolicy.self, from: Data(buffer.readableBytesView))
            } catch {
                let reason =
                    #"body must be {"rules":[{"action":"publish|subscribe|all","topic":"..."}],"scopes":["..."]}"#
                await refuse(state, context, tenant.id, reason)
                throw HTTPError(.badRequest, message: reason)
            }
            do {
                try policy.validate()
            } catch let error as DevIDCoreError {
                await refuse(state, context, tenant.id, error.reason)
                throw HTTPError(.badRequest, message: error.reason)
            }
            try await store(policy, tenant: tenant, state: state, context: context)
            return view(try await requireTenant(context, state.store))
        }

        admin.delete("/tenants/:id/topic-policy") { _, context -> TopicPolicyView in
            let tenant = try await requireTenant(context, state.store)
            try await store(nil, tenant: tenant, state: state, context: context)
            return view(try await requireTenant(context, state.store))
        }
    }

    static func view(_ tenant: Tenant) -> TopicPolicyView {
        let policy = tenant.policy.effectiveTopics
        return TopicPolicyView(
            tenant: tenant.id.rawValue, default: tenant.policy.topics == nil, rules: policy.rules, scopes: policy.scopes
        )
    }

    static func store(_ topics: TopicPolicy?, tenant: Tenant, state: ServerState, context: OpsRequestContext)
        async throws
    {
        var policy = tenant.policy
        policy.topics = topics
        let summary =
            topics.map { "set topic policy: \($0.rules.count) rules, \($0.scopes.count) scopes" }
            ?? "reset topic policy to the default"
        try await state.store.updateTenantPolicy(
            tenant.id, policy: policy,
            audit: state.auditor.event(
                actor: context.actor, action: "tenant.topic_policy", outcome: .success, reason: summary,
                tenant: tenant.id))
    }

    static func refuse(_ state: ServerState, _ context: OpsRequestContext, _ tenant: TenantID, _ reason: String) async {
        await state.auditor.record(
            actor: context.actor, action: "tenant.topic_policy", outcome: .denied, reason: reason, tenant: tenant)
    }

    static func requireTenant(_ context: OpsRequestContext, _ store: any Store) async throws -> Tenant {
        guard let id = TenantID(rawValue: try context.parameters.require("id")) else {
            throw HTTPError(.badRequest, message: "invalid tenant")
        }
        guard let tenant = try await store.tenant(id) else {
            throw HTTPError(.notFound, message: "unknown tenant \(id)")
        }
        try context.require(tenant: id)
        return tenant
    }
}
