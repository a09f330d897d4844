using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Policies;

/// <summary>
/// A tenant's credential policy: with <see cref="RequireAllowedHosts"/>, a credential can be attached only when it
/// declares the hosts it may be sent to (and <c>encrypted://</c> references, which cannot, are not attached at all).
/// </summary>
public sealed record CredentialPolicy(bool RequireAllowedHosts, DateTimeOffset? UpdatedAt)
{
    internal const string SelectSql = "SELECT require_allowed_hosts, updated_at FROM credential_policies WHERE tenant_id = @TenantId";

    internal sealed class Row
    {
        public bool RequireAllowedHosts { get; init; }
        public DateTimeOffset UpdatedAt { get; init; }

        public CredentialPolicy ToPolicy() => new(RequireAllowedHosts, UpdatedAt);
    }
}

public static class GetCredentialPolicy
{
    public sealed record Query : IOperation<CredentialPolicy>
    {
        public static string Operation => "policies.credentials.get";
        public static string Scope => Scopes.Read;
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<CredentialPolicy>>
    {
        public async Task<Result<CredentialPolicy>> Handle(Query request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var row = await connection.QuerySingleOrDefaultAsync<CredentialPolicy.Row>(
                new CommandDefinition(CredentialPolicy.SelectSql, new { session.TenantId }, cancellationToken: ct));
            return row?.ToPolicy() ?? new CredentialPolicy(false, null);
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/credentials", async (IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("The tenant's credential policy: whether credentials must declare allowed_hosts to be attached.")
            .Produces<CredentialPolicy>();
}
