using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Security;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.ApiKeys;

/// <summary>api_keys.list: the tenant's keys, newest first, with when each was last used — never a secret.</summary>
public static class ListApiKeys
{
    public sealed record Query(bool IncludeRevoked = false, int Limit = 50, string? Cursor = null) : IOperation<Page<ApiKey.Response>>
    {
        public static string Operation => "api_keys.list";
        public static string Scope => Scopes.Admin;
    }

    internal sealed class Validator : AbstractValidator<Query>
    {
        public Validator()
        {
            RuleFor(x => x.Limit).PageLimit();
            RuleFor(x => x.Cursor).IdCursor();
        }
    }

    internal sealed class Handler(TenantSession session, ApiKeyUsage usage, TimeProvider time) : IRequestHandler<Query, Result<Page<ApiKey.Response>>>
    {
        public async Task<Result<Page<ApiKey.Response>>> Handle(Query request, CancellationToken ct)
        {
            Cursor.TryDecode(request.Cursor, out Guid after);
            var sql = $"""
                SELECT {ApiKey.Columns} FROM api_keys
                WHERE tenant_id = @TenantId {(request.IncludeRevoked ? "" : "AND revoked_at IS NULL")}
                  {(request.Cursor is null ? "" : "AND (created_at, id) < (SELECT created_at, id FROM api_keys WHERE tenant_id = @TenantId AND id = @After)")}
                ORDER BY created_at DESC, id DESC LIMIT @Take
                """;
            var connection = await session.ConnectionAsync(ct);
            var rows = (await connection.QueryAsync<ApiKey.Row>(new CommandDefinition(sql,
                new { session.TenantId, After = after, Take = request.Limit + 1 }, cancellationToken: ct))).AsList();
            var now = time.GetUtcNow();
            return Paging.ToPage(rows, request.Limit, r => r.ToResponse(now, usage.PendingFor(r.Id)), r => Cursor.Encode(r.Id));
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/", async ([FromQuery(Name = "include_revoked")] bool? includeRevoked, [FromQuery] int? limit, [FromQuery] string? cursor,
                IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(includeRevoked ?? false, limit ?? 50, cursor), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("List your tenant's API keys (scope admin), newest first: prefix, scopes, status, expiry, last use; never the key.")
            .Produces<Page<ApiKey.Response>>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status403Forbidden);
}
