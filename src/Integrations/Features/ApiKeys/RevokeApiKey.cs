using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.ApiKeys;

/// <summary>api_keys.revoke: the key stops working at once on this replica and, as the change commits, on every other.</summary>
public static class RevokeApiKey
{
    public sealed record Command(Guid Id) : IOperation<ApiKey.Response>, IAudited
    {
        public static string Operation => "api_keys.revoke";
        public static string Scope => Scopes.Admin;
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit, Infrastructure.Security.ApiKeys keys, TimeProvider time)
        : IRequestHandler<Command, Result<ApiKey.Response>>
    {
        private const string Sql = $"""
            UPDATE api_keys SET revoked_at = now()
            WHERE tenant_id = @TenantId AND id = @Id AND revoked_at IS NULL
            RETURNING {ApiKey.Columns}
            """;

        public async Task<Result<ApiKey.Response>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var row = await connection.QuerySingleOrDefaultAsync<ApiKey.Row>(new CommandDefinition(Sql,
                new { session.TenantId, request.Id }, cancellationToken: ct));
            if (row is null)
            {
                var exists = await connection.ExecuteScalarAsync<bool>(new CommandDefinition(
                    "SELECT EXISTS (SELECT FROM api_keys WHERE tenant_id = @TenantId AND id = @Id)", new { session.TenantId, request.Id }, cancellationToken: ct));
                return exists ? Error.InvalidTransition("API key", ApiKey.Revoked, "revoked") : Error.NotFound("API key");
            }
            audit.Record(ApiKey.SubjectType, request.Id.ToString(), new { row.Name });
            session.AfterCommit(() => keys.Forget(request.Id));
            return row.ToResponse(time.GetUtcNow());
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/revoke", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Revoke one of your tenant's API keys (scope admin); it answers 401 from the next request on.")
            .Produces<ApiKey.Response>()
            .ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status409Conflict);
}
