using Dapper;
using Integrations.Common;
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
    public sealed record Response(
        string TenantId, string Actor, Guid? KeyId, string? KeyName, IReadOnlyList<string> Scopes, DateTimeOffset? ExpiresAt,
        DateTimeOffset ServerTime, SessionLimits Limits);

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
                ? await connection.QuerySingleOrDefaultAsync<(string Name, DateTimeOffset? ExpiresAt)>(new CommandDefinition(
                    "SELECT name, expires_at FROM api_keys WHERE tenant_id = @TenantId AND id = @Id", new { session.TenantId, Id = id }, cancellationToken: ct))
                : default;
            var policy = await policies.GetAsync(connection, session.TenantId, ct);
            return new Response(current.TenantId, current.Actor, keyId, key.Name, current.Scopes.Order(StringComparer.Ordinal).ToList(),
                key.ExpiresAt,
                time.GetUtcNow(), new SessionLimits(policy.RiskCeiling, policy.DefaultRateLimitPerMinute, policy.TenantRateLimitPerMinute));
        }
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
