using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Connectors;

/// <summary>connections.list: the tenant's live connections, newest first; keyset pagination.</summary>
public static class ListConnections
{
    public sealed record Query(int Limit = 50, string? Cursor = null) : IOperation<Page<Connection.Response>>
    {
        public static string Operation => "connections.list";
        public static string Scope => Scopes.Read;
    }

    internal sealed class Validator : AbstractValidator<Query>
    {
        public Validator()
        {
            RuleFor(x => x.Limit).PageLimit();
            RuleFor(x => x.Cursor).IdCursor();
        }
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Page<Connection.Response>>>
    {
        private const string Sql = $"""
            SELECT {Connection.Columns} FROM connections
            WHERE tenant_id = @TenantId AND deleted_at IS NULL AND (@First OR id < @After)
            ORDER BY id DESC LIMIT @Take
            """;

        public async Task<Result<Page<Connection.Response>>> Handle(Query request, CancellationToken ct)
        {
            Cursor.TryDecode(request.Cursor, out Guid after);
            var connection = await session.ConnectionAsync(ct);
            var rows = (await connection.QueryAsync<Connection.Row>(new CommandDefinition(Sql, new
            {
                session.TenantId,
                First = request.Cursor is null,
                After = after,
                Take = request.Limit + 1,
            }, cancellationToken: ct))).AsList();
            return Paging.ToPage(rows, request.Limit, r => r.ToResponse(), r => Cursor.Encode(r.Id));
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/", async ([FromQuery] int? limit, [FromQuery] string? cursor, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(limit ?? 50, cursor), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("The tenant's connections, newest first; keyset pagination.")
            .Produces<Page<Connection.Response>>()
            .ProducesValidationProblem();
}
