using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.McpServers;

public static class GetMcpServer
{
    public sealed record Query(Guid Id) : IOperation<McpServer.Response>
    {
        public static string Operation => "mcp_servers.get";
        public static string Scope => Scopes.Read;
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<McpServer.Response>>
    {
        public async Task<Result<McpServer.Response>> Handle(Query request, CancellationToken ct) =>
            await McpServer.FindAsync(session, request.Id, ct) is { } row ? row.ToResponse() : Error.NotFound("MCP server");
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/{id:guid}", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(id), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("One MCP server: status, protocol, server info, capabilities, tool count, last health check.")
            .Produces<McpServer.Response>()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
