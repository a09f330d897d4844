using System.Text.Json;
using Integrations.Common;
using Integrations.Features.McpServers;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Mcp;
using Integrations.Infrastructure.Vault;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;
using ModelContextProtocol;
using ModelContextProtocol.Protocol;

namespace Integrations.Features.McpGateway;

/// <summary>
/// mcp_resources.list: one page of <c>resources/list</c> of a server that passes its resources through
/// (<c>expose_resources</c>), the resources as the server describes them; <c>/mcp</c>'s resources/list walks these.
/// </summary>
public static class ListServerResources
{
    public sealed record Query(Guid ServerId, string? Cursor = null) : IOperation<Response>, INeedsCredential
    {
        public static string Operation => "mcp_resources.list";
        public static string Scope => Scopes.Read;

        public CredentialAccessor CredentialAccessor => new(CredentialAccessor.McpServer, ServerId);
        public string? CredentialRef => null;
    }

    /// <param name="Resources">MCP <c>Resource</c> objects (uri, name, title, description, mimeType, size, annotations) as the server sent them.</param>
    /// <param name="NextCursor">The server's own cursor for the next page.</param>
    public sealed record Response(IReadOnlyList<JsonElement> Resources, string? NextCursor);

    internal sealed class Handler(TenantSession session, CredentialContext credentials, McpSessions sessions)
        : IRequestHandler<Query, Result<Response>>
    {
        public async Task<Result<Response>> Handle(Query request, CancellationToken ct)
        {
            var asked = await PassthroughServers.AskAsync(session, credentials, sessions, request.ServerId, PassthroughServers.Kind.Resources,
                (client, token) => client.ListResourcesAsync(new ListResourcesRequestParams { Cursor = request.Cursor }, token), ct);
            if (!asked.IsSuccess) return asked.Error!;
            var page = asked.Value.Answer;
            return new Response(page.Resources.Select(r => JsonSerializer.SerializeToElement(r, McpJsonUtilities.DefaultOptions)).ToList(), page.NextCursor);
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/{id:guid}/resources", async (Guid id, [FromQuery] string? cursor, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(id, cursor), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("One page of the server's resources (resources/list), when it passes them through (expose_resources); 404 otherwise.")
            .Produces<Response>()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status502BadGateway)
            .ProducesProblem(StatusCodes.Status504GatewayTimeout);
}
