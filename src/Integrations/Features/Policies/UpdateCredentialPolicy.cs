using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Policies;

public static class UpdateCredentialPolicy
{
    /// <summary>
    /// Replaces the policy (PUT). It governs attaching from now on; credentials attached before keep resolving, each
    /// still held to its own allowed_hosts at every resolution.
    /// </summary>
    public sealed record Command(bool RequireAllowedHosts = false) : IOperation<CredentialPolicy>, IAudited
    {
        public static string Operation => "policies.credentials.update";
        public static string Scope => Scopes.Admin;
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit) : IRequestHandler<Command, Result<CredentialPolicy>>
    {
        private const string Sql = """
            INSERT INTO credential_policies (tenant_id, require_allowed_hosts, updated_at) VALUES (@TenantId, @RequireAllowedHosts, now())
            ON CONFLICT (tenant_id) DO UPDATE SET require_allowed_hosts = excluded.require_allowed_hosts, updated_at = now()
            RETURNING require_allowed_hosts, updated_at
            """;

        public async Task<Result<CredentialPolicy>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var row = await connection.QuerySingleAsync<CredentialPolicy.Row>(
                new CommandDefinition(Sql, new { session.TenantId, request.RequireAllowedHosts }, cancellationToken: ct));
            audit.Record("credential_policy", session.TenantId, new { request.RequireAllowedHosts });
            return row.ToPolicy();
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPut("/credentials", async (Command command, IMediator mediator, HttpContext http) =>
                (await mediator.Send(command, http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Replace the tenant's credential policy (scope admin): require_allowed_hosts makes binding credentials to hosts mandatory for attaching.")
            .Produces<CredentialPolicy>();
}
