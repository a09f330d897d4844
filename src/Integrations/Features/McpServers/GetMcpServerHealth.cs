using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.McpServers;

/// <summary>mcp_servers.get_health: the last recorded health of a server, read without probing it (no audit, no incident).</summary>
public static class GetMcpServerHealth
{
    public sealed record Query(Guid Id) : IOperation<Response>
    {
        public static string Operation => "mcp_servers.get_health";
        public static string Scope => Scopes.Read;
    }

    /// <param name="CheckedAt">When the last probe ran (null: never; <c>status</c> is then what registration found).</param>
    public sealed record Response(Guid Id, string Status, int? LatencyMs, string? Detail, DateTimeOffset? CheckedAt);

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Response>>
    {
        public async Task<Result<Response>> Handle(Query request, CancellationToken ct) =>
            await McpServer.FindAsync(session, request.Id, ct) is { } row
                ? new Response(row.Id, row.Status, row.HealthLatencyMs, row.HealthDetail, row.LastHealthCheckAt)
                : Error.NotFound("MCP server");
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/{id:guid}/health", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(id), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("The server's last recorded health (status, latency, detail, when); probes nothing — POST .../health probes now.")
            .Produces<Response>()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
