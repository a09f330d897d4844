using Dapper;
using Integrations.Common;
using Integrations.Features.LlmGateway;
using Integrations.Features.Policies;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Security;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Session;

/// <summary>session.get: who the caller is to the service — tenant, key, scopes, expiry — and the limits its calls run under.</summary>
public static class GetSession
{
    public sealed record Query : IOperation<Response>
    {
        public static string Operation => "session.get";
        public static string Scope => Scopes.Read;
    }

    /// <param name="KeyId">The API key's id (null for an in-process caller with no key).</param>
    /// <param name="Limits">The tenant's tool policy as every governed call sees it.</param>
    /// <param name="Spend">The key's LLM limits and what is left of them this month (null for an in-process caller).</param>
    public sealed record Response(
        string TenantId, string Actor, Guid? KeyId, string? KeyName, IReadOnlyList<string> Scopes, DateTimeOffset? ExpiresAt,
        DateTimeOffset ServerTime, SessionLimits Limits, KeySpend? Spend = null);

    /// <summary>
    /// What the key may still spend through the LLM gateway this UTC month (its own limits; the integration's hold too).
    /// Null remaining: no limit of the key's own.
    /// </summary>
    public sealed record KeySpend(
        int? RequestsPerMinute, long? TokensPerMonth, long TokensThisMonth, long? TokensRemaining, long? BudgetCentsPerMonth,
        decimal CentsThisMonth, decimal? BudgetCentsRemaining, IReadOnlyList<string> AllowedModels, DateTimeOffset ResetAt);

    /// <param name="DefaultRateLimitPerMinute">Per tool or template without its own limit (templates fall back to 60).</param>
    public sealed record SessionLimits(string RiskCeiling, int? DefaultRateLimitPerMinute, int? TenantRateLimitPerMinute);

    internal sealed class Handler(TenantSession session, CallerContext caller, ToolPolicyStore policies, TimeProvider time)
        : IRequestHandler<Query, Result<Response>>
    {
        public async Task<Result<Response>> Handle(Query request, CancellationToken ct)
        {
            var current = caller.Required;
            var connection = await session.ConnectionAsync(ct);
            var keyId = Infrastructure.Security.ApiKeys.KeyIdOf(current.Actor);
            var key = keyId is { } id
                ? await connection.QuerySingleOrDefaultAsync<KeyRow>(new CommandDefinition(KeySql, new { session.TenantId, Id = id }, cancellationToken: ct))
                : null;
            var policy = await policies.GetAsync(connection, session.TenantId, ct);
            var now = time.GetUtcNow();
            var spend = key is null ? null : new KeySpend(key.RequestsPerMinute, key.TokensPerMonth, key.TokensThisMonth,
                key.TokensPerMonth is { } tokens ? Math.Max(0, tokens - key.TokensThisMonth) : null, key.BudgetCentsPerMonth, key.CentsThisMonth,
                key.BudgetCentsPerMonth is { } cents ? Math.Max(0, cents - key.CentsThisMonth) : null, key.AllowedModels, LlmCall.NextMonth(now));
            return new Response(current.TenantId, current.Actor, keyId, key?.Name, current.Scopes.Order(StringComparer.Ordinal).ToList(),
                key?.ExpiresAt,
                now, new SessionLimits(policy.RiskCeiling, policy.DefaultRateLimitPerMinute, policy.TenantRateLimitPerMinute), spend);
        }
    }

    private const string KeySql = """
        SELECT k.name, k.expires_at, k.requests_per_minute, k.tokens_per_month, k.budget_cents_per_month, k.allowed_models,
               COALESCE(u.tokens, 0) AS tokens_this_month, COALESCE(u.cost_cents, 0) AS cents_this_month
        FROM api_keys k
        LEFT JOIN llm_key_usage_months u
               ON u.tenant_id = k.tenant_id AND u.api_key_id = k.id AND u.month = date_trunc('month', now() AT TIME ZONE 'UTC')::date
        WHERE k.tenant_id = @TenantId AND k.id = @Id
        """;

    private sealed class KeyRow
    {
        public string Name { get; init; } = "";
        public DateTimeOffset? ExpiresAt { get; init; }
        public int? RequestsPerMinute { get; init; }
        public long? TokensPerMonth { get; init; }
        public long? BudgetCentsPerMonth { get; init; }
        public string[] AllowedModels { get; init; } = [];
        public long TokensThisMonth { get; init; }
        public decimal CentsThisMonth { get; init; }
    }

    internal static void Map(IEndpointRouteBuilder app) =>
        app.MapGet("/session", async (IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(), http.RequestAborted)).ToHttp(http))
            .RequireAuthorization()
            .WithTag("Session", "Who the caller's API key says it is: tenant, key, scopes, expiry and the tenant's effective limits.")
            .WithName(Query.Operation)
            .WithSummary("The caller's session: tenant, API key, scopes, expiry, server time and the tenant's effective limits.")
            .Produces<Response>();
}
