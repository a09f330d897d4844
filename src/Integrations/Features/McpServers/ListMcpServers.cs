using System.Text;
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

namespace Integrations.Features.McpServers;

public static class ListMcpServers
{
    public sealed record Query(string? Status = null, string? NamePrefix = null, int Limit = 50, string? Cursor = null)
        : IOperation<Page<McpServer.Response>>
    {
        public static string Operation => "mcp_servers.list";
        public static string Scope => Scopes.Read;
    }

    internal sealed class Validator : AbstractValidator<Query>
    {
        public Validator()
        {
            RuleFor(x => x.Status).Must(s => s is null || McpServer.Statuses.Contains(s))
                .WithMessage($"Status must be one of: {string.Join(", ", McpServer.Statuses)}.");
            RuleFor(x => x.NamePrefix).MaximumLength(200);
            RuleFor(x => x.Limit).PageLimit();
            RuleFor(x => x.Cursor).IdCursor();
        }
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Page<McpServer.Response>>>
    {
        public async Task<Result<Page<McpServer.Response>>> Handle(Query request, CancellationToken ct)
        {
            Cursor.TryDecode(request.Cursor, out Guid after);
            var sql = new StringBuilder($"SELECT {McpServer.Columns} FROM mcp_servers s WHERE s.tenant_id = @TenantId AND s.deleted_at IS NULL");
            if (request.Cursor is not null) sql.Append(" AND s.id < @After");
            if (request.Status is not null) sql.Append(" AND s.status = @Status");
            if (request.NamePrefix is not null) sql.Append(" AND starts_with(s.name, @NamePrefix)");
            sql.Append(" ORDER BY s.id DESC LIMIT @Take");

            var connection = await session.ConnectionAsync(ct);
            var rows = (await connection.QueryAsync<McpServer.Row>(new CommandDefinition(sql.ToString(), new
            {
                session.TenantId,
                After = after,
                request.Status,
                request.NamePrefix,
                Take = request.Limit + 1,
            }, cancellationToken: ct))).AsList();

            return Paging.ToPage(rows, request.Limit, r => r.ToResponse(), r => Cursor.Encode(r.Id));
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/", async (
                [FromQuery, OneOf(typeof(McpServer), nameof(McpServer.Statuses))] string? status, [FromQuery(Name = "name_prefix")] string? namePrefix, [FromQuery] int? limit, [FromQuery] string? cursor,
                IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(status, namePrefix, limit ?? 50, cursor), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("List MCP servers, newest first, with keyset pagination (limit 1-200, cursor from next_cursor).")
            .Produces<Page<McpServer.Response>>()
            .ProducesValidationProblem();
}
