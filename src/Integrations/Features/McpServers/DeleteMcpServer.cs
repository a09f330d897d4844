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

public static class DeleteMcpServer
{
    public sealed record Command(Guid Id) : IOperation<Done>, IAudited
    {
        public static string Operation => "mcp_servers.delete";
        public static string Scope => Scopes.Write;
    }

    /// <summary>Soft delete: the server and its tools vanish from every read (and from invocation); its grants go; its session closes.</summary>
    internal sealed class Handler(TenantSession session, AuditTrail audit, McpSessions sessions, CredentialGrants grants)
        : IRequestHandler<Command, Result<Done>>
    {
        private const string Sql = """
            UPDATE mcp_servers SET deleted_at = now(), updated_at = now()
            WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL
            RETURNING name, url
            """;

        private sealed record Deleted(string Name, string Url);

        public async Task<Result<Done>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var deleted = await connection.QuerySingleOrDefaultAsync<Deleted>(new CommandDefinition(Sql, new { session.TenantId, request.Id }, cancellationToken: ct));
            if (deleted is null) return Error.NotFound("MCP server");
            await grants.DetachAllAsync(new CredentialAccessor(CredentialAccessor.McpServer, request.Id), ct);

            // Closed before the commit: should the commit fail, the next use of the server just opens a new session.
            sessions.Close(session.TenantId, request.Id);
            audit.Record(McpServer.SubjectType, request.Id.ToString(), new { deleted.Name, deleted.Url });
            return Done.Value;
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapDelete("/{id:guid}", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id), http.RequestAborted)).ToHttp(http, _ => TypedResults.NoContent()))
            .WithName(Command.Operation)
            .WithSummary("Delete an MCP server (soft): its tools can no longer be listed or invoked, its session is closed.")
            .Produces(StatusCodes.Status204NoContent)
            .ProducesProblem(StatusCodes.Status404NotFound);
}
