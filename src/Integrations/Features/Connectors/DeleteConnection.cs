using Dapper;
using Integrations.Common;
using Integrations.Features.Connectors.Adapters;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Vault;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Connectors;

/// <summary>
/// connections.delete (the contract's <i>revoke</i>): the connection is gone (soft delete; its invocations stay), its
/// credential grants are dropped so the secret can no longer be resolved for it, its actions leave the MCP gateway and
/// the adapter forgets what it pooled for it.
/// </summary>
public static class DeleteConnection
{
    public sealed record Command(Guid Id) : IOperation<Done>, IAudited
    {
        public static string Operation => "connections.delete";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit, CredentialGrants grants, ConnectorAdapters adapters, ConnectorCatalog catalog)
        : IRequestHandler<Command, Result<Done>>
    {
        private const string Sql = """
            UPDATE connections SET deleted_at = now(), updated_at = now()
            WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL
            RETURNING name, connector
            """;

        public async Task<Result<Done>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var row = await connection.QuerySingleOrDefaultAsync<(string Name, string Connector)?>(new CommandDefinition(Sql, new { session.TenantId, request.Id }, cancellationToken: ct));
            if (row is not { } deleted) return Error.NotFound("connection");
            await grants.DetachAllAsync(Connection.AccessorOf(request.Id), ct);
            audit.Record(Connection.SubjectType, request.Id.ToString(), new { deleted.Name, deleted.Connector });
            var implementation = catalog.FindBuiltIn(deleted.Connector)?.Connector ?? Connector.Http;
            if (adapters.Has(implementation)) await adapters.For(implementation).ForgetAsync(request.Id);
            return Done.Value;
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapDelete("/{id:guid}", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id), http.RequestAborted)).ToHttp(http, _ => TypedResults.NoContent()))
            .WithName(Command.Operation)
            .WithSummary("Revoke a connection: grants on its credential removed, pooled clients closed, its actions gone from /mcp; its invocation records stay.")
            .Produces(StatusCodes.Status204NoContent)
            .ProducesProblem(StatusCodes.Status404NotFound);
}
