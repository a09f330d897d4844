using System.Text.Json;
using FluentValidation;
using Integrations.Common;
using Integrations.Features.Policies;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.McpGateway;

/// <summary>
/// tools.list: the tools the tenant can call now, across its servers, under their gateway names — enabled, active,
/// approved, on a server that is not disabled, allowed by the tenant's policy — with the pinned definition. The MCP
/// gateway's <c>tools/list</c> answers from it; pages follow the names in ordinal order.
/// </summary>
public static class ListGatewayTools
{
    /// <param name="VirtualServer">Only the tools this virtual server serves (<c>/mcp/{name}</c>).</param>
    public sealed record Query(int Limit = 50, string? Cursor = null, string? VirtualServer = null) : IOperation<Page<Response>>
    {
        public static string Operation => "tools.list";
        public static string Scope => Scopes.Read;
    }

    public sealed record Response(
        string Name,
        string? Title,
        string? Description,
        JsonElement InputSchema,
        JsonElement? OutputSchema,
        JsonElement? Annotations,
        string RiskLevel,
        Guid ServerId,
        string ServerName,
        Guid ToolId,
        string ToolName,
        string Source);

    internal sealed class Validator : AbstractValidator<Query>
    {
        public Validator()
        {
            RuleFor(x => x.Limit).PageLimit();
            RuleFor(x => x.Cursor).NameCursor();
        }
    }

    internal sealed class Handler(TenantSession session, GatewayCatalog catalog, ToolPolicyStore policies)
        : IRequestHandler<Query, Result<Page<Response>>>
    {
        public async Task<Result<Page<Response>>> Handle(Query request, CancellationToken ct)
        {
            var tenantId = session.TenantId;
            if (!catalog.TryGetCached(tenantId, out var snapshot) || !policies.TryGetCached(tenantId, out var policy)
                || (request.VirtualServer is not null && !snapshot.VirtualServers.ContainsKey(request.VirtualServer)))
            {
                var connection = await session.ConnectionAsync(ct);
                snapshot = await catalog.GetAsync(connection, tenantId, ct, readThrough: true);
                policy = await policies.GetAsync(connection, tenantId, ct);
                await session.RollbackAsync();
            }
            VirtualServers.VirtualServer.Selection? within = null;
            if (request.VirtualServer is not null && !snapshot.VirtualServers.TryGetValue(request.VirtualServer, out within))
            {
                return Error.NotFound("virtual server");
            }
            Cursor.TryDecodeName(request.Cursor, out var after);
            var (page, more) = snapshot.Callable(policy, after, request.Limit, within);
            return new Page<Response>(page.ConvertAll(ToResponse), more ? Cursor.EncodeName(page[^1].Name) : null);
        }

        private static Response ToResponse(GatewayTool tool) => new(
            tool.Name, tool.Title, tool.Description, Parse(tool.InputSchema), tool.OutputSchema is null ? null : Parse(tool.OutputSchema),
            tool.Annotations is null ? null : Parse(tool.Annotations), tool.RiskLevel, tool.ServerId, tool.ServerName, tool.ToolId, tool.ToolName, tool.Source);

        private static JsonElement Parse(string json)
        {
            using var document = JsonDocument.Parse(json);
            return document.RootElement.Clone();
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/", async ([FromQuery] int? limit, [FromQuery] string? cursor, [FromQuery(Name = "virtual_server")] string? virtualServer,
                IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(limit ?? 50, cursor, virtualServer), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("The tools the tenant can call now, across its MCP servers, named <server>__<tool> as on /mcp; keyset pagination by name.")
            .Produces<Page<Response>>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
