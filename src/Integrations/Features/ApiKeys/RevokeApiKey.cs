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
        /// <summary>A key's status is derived (revoked, expired, active), so the move and its refusal read it from the row.</summary>
        private static readonly StatusTransition Revoking = new("API key", [ApiKey.Active, ApiKey.Expired], ApiKey.Revoked, "revoked");

        private const string MoveSql = $"""
            UPDATE api_keys SET revoked_at = now()
            WHERE tenant_id = @TenantId AND id = @Id AND revoked_at IS NULL
            RETURNING {ApiKey.Columns}
            """;

        private const string StatusSql = $"""
            SELECT CASE WHEN revoked_at IS NOT NULL THEN '{ApiKey.Revoked}' ELSE '{ApiKey.Active}' END
            FROM api_keys WHERE tenant_id = @TenantId AND id = @Id
            """;

        public async Task<Result<ApiKey.Response>> Handle(Command request, CancellationToken ct)
        {
            var moved = await Revoking.RunAsync<ApiKey.Row>(session, request.Id, MoveSql, StatusSql, null, ct);
            if (!moved.IsSuccess) return moved.Error!;
            var row = moved.Value;
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
