using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Mcp;
using Integrations.Infrastructure.Vault;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.McpServers;

public static class DiscoverMcpServer
{
    /// <summary>The credential behavior resolves the server's own <c>credential_ref</c> (granted at registration).</summary>
    public sealed record Command(Guid Id) : IOperation<ToolChanges>, IAudited, INeedsCredential
    {
        public static string Operation => "mcp_servers.discover";
        public static string Scope => Scopes.Write;

        public CredentialAccessor CredentialAccessor => new(CredentialAccessor.McpServer, Id);
        public string? CredentialRef => null;
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit, McpSessions sessions, CredentialContext credentials)
        : IRequestHandler<Command, Result<ToolChanges>>
    {
        public async Task<Result<ToolChanges>> Handle(Command request, CancellationToken ct)
        {
            var server = await McpServer.FindAsync(session, request.Id, ct);
            if (server is null) return Error.NotFound("MCP server");
            var auth = McpServer.AuthFrom(credentials.Current, server.AuthHeader);
            if (!auth.IsSuccess) return auth.Error!;
            // No transaction stays open while the server is asked.
            await session.RollbackAsync();

            var described = await sessions.DescribeAsync(server.Endpoint(session.TenantId, auth.Value), ct);
            if (!described.IsSuccess) return described.Error!;

            // Concurrent discoveries of one server take turns on its row.
            if (await McpServer.FindAsync(session, request.Id, ct, forUpdate: true) is null) return Error.NotFound("MCP server");
            var stored = await ToolDiscovery.StoreAsync(session, sessions, request.Id, described.Value, ct);
            if (!stored.IsSuccess) return stored.Error!;
            var response = stored.Value;
            audit.Record(McpServer.SubjectType, request.Id.ToString(), new
            {
                Added = response.Added.Select(t => new { t.Name, t.RiskLevel, t.DefinitionHash }),
                Drifted = response.Drifted.Select(d => new { d.Tool.Name, d.Changed, d.Tool.ApprovedHash, d.Tool.DefinitionHash }),
                Removed = response.Removed.Select(t => t.Name),
                Restored = response.Restored.Select(t => t.Name),
                response.Unchanged,
                Credential = credentials.Current?.Reference ?? "none",
            });
            return response;
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/{id:guid}/discover", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("List the server's tools again and store the difference: new tools disabled, changed ones drifted, vanished ones removed.")
            .Produces<ToolChanges>()
            .ProducesProblem(StatusCodes.Status404NotFound)
            .ProducesProblem(StatusCodes.Status422UnprocessableEntity)
            .ProducesProblem(StatusCodes.Status502BadGateway)
            .ProducesProblem(StatusCodes.Status504GatewayTimeout);
}
