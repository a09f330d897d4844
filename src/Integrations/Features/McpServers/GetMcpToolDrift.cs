using System.Text.Json;
using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.McpServers;

/// <summary>
/// tools.drift: what a reviewer reads before approving a drifted tool — the pinned (approved) definition and the one
/// the server announces now, which parts differ, and the hash to repeat in <c>approve_hash</c>. For a tool that has
/// not drifted both definitions are the same and nothing is changed.
/// </summary>
public static class GetMcpToolDrift
{
    public sealed record Query(Guid ServerId, Guid ToolId) : IOperation<Response>
    {
        public static string Operation => "tools.drift";
        public static string Scope => Scopes.Read;
    }

    /// <param name="Approved">The pinned definition (name, description, inputSchema), hashed as <c>approved_hash</c>.</param>
    /// <param name="Current">The definition the server announced at the last discovery, hashed as <c>definition_hash</c>.</param>
    /// <param name="Changed">Which parts differ: <c>description</c>, <c>input_schema</c>.</param>
    public sealed record Response(McpTool.Response Tool, JsonElement Approved, JsonElement Current, IReadOnlyList<string> Changed);

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Response>>
    {
        private const string Sql = $"""
            SELECT {McpTool.Columns}, ({McpTool.CurrentDefinitionSql})::text AS current_definition FROM mcp_tools t
            JOIN mcp_servers s ON s.tenant_id = t.tenant_id AND s.id = t.server_id AND s.deleted_at IS NULL
            WHERE t.tenant_id = @TenantId AND t.server_id = @ServerId AND t.id = @ToolId
            """;

        public async Task<Result<Response>> Handle(Query request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var found = (await connection.QueryAsync<McpTool.Row, string, (McpTool.Row Tool, string Current)>(new CommandDefinition(Sql,
                new { session.TenantId, request.ServerId, request.ToolId }, cancellationToken: ct),
                (tool, current) => (tool, current), splitOn: "current_definition")).SingleOrDefault();
            if (found.Tool is null) return Error.NotFound("tool");
            return new Response(found.Tool.ToResponse(), Parse(found.Tool.ApprovedDefinition), Parse(found.Current),
                McpTool.Definition.Changed(found.Tool.ApprovedDefinition, found.Current));
        }

        private static JsonElement Parse(string json) => JsonDocument.Parse(json).RootElement.Clone();
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/{id:guid}/tools/{toolId:guid}/drift", async (Guid id, Guid toolId, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(id, toolId), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("A tool's pinned definition next to the one its server announces now, and what changed: read it before approving a drift.")
            .Produces<Response>()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
