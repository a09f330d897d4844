using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.McpServers;

/// <summary>tools.get: one tool of a server, as the server's tool list shows it.</summary>
public static class GetMcpTool
{
    public sealed record Query(Guid ServerId, Guid ToolId) : IOperation<McpTool.Response>
    {
        public static string Operation => "tools.get";
        public static string Scope => Scopes.Read;
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<McpTool.Response>>
    {
        private const string Sql = $"""
            SELECT {McpTool.Columns} FROM mcp_tools t
            JOIN mcp_servers s ON s.tenant_id = t.tenant_id AND s.id = t.server_id AND s.deleted_at IS NULL
            WHERE t.tenant_id = @TenantId AND t.server_id = @ServerId AND t.id = @ToolId
            """;

        public async Task<Result<McpTool.Response>> Handle(Query request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var row = await connection.QuerySingleOrDefaultAsync<McpTool.Row>(new CommandDefinition(Sql,
                new { session.TenantId, request.ServerId, request.ToolId }, cancellationToken: ct));
            return row is null ? Error.NotFound("tool") : row.ToResponse();
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/{id:guid}/tools/{toolId:guid}", async (Guid id, Guid toolId, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(id, toolId), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("One tool of the server: status, risk level, enabled flag, schema and hashes.")
            .Produces<McpTool.Response>()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
