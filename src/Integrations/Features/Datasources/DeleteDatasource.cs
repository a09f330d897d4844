using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Datasources;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Vault;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Datasources;

public static class DeleteDatasource
{
    public sealed record Command(Guid Id) : IOperation<Done>, IAudited
    {
        public static string Operation => "datasources.delete";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit, DatasourceConnections connections, CredentialGrants grants)
        : IRequestHandler<Command, Result<Done>>
    {
        // Its templates go with it, so no template outlives the datasource it was checked against.
        private const string Sql = """
            WITH gone AS (
                UPDATE datasources SET deleted_at = now(), updated_at = now()
                WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL
                RETURNING id, name),
            templates AS (
                UPDATE datasource_queries SET deleted_at = now(), updated_at = now()
                WHERE tenant_id = @TenantId AND datasource_id IN (SELECT id FROM gone) AND deleted_at IS NULL
                RETURNING id)
            SELECT name, (SELECT count(*) FROM templates) AS templates FROM gone
            """;

        public async Task<Result<Done>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var deleted = await connection.QuerySingleOrDefaultAsync<Deleted>(
                new CommandDefinition(Sql, new { session.TenantId, request.Id }, cancellationToken: ct));
            if (deleted is null) return Error.NotFound(Datasource.SubjectType);

            await grants.DetachAllAsync(new CredentialAccessor(CredentialAccessor.Datasource, request.Id), ct);
            connections.Forget(request.Id);
            audit.Record(Datasource.SubjectType, request.Id.ToString(), new { deleted.Name, TemplatesDeleted = deleted.Templates });
            return Done.Value;
        }
    }

    private sealed record Deleted(string Name, long Templates);

    internal static void Map(RouteGroupBuilder group) =>
        group.MapDelete("/{id:guid}", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id), http.RequestAborted)).ToHttp(http, _ => TypedResults.NoContent()))
            .WithName(Command.Operation)
            .WithSummary("Delete a datasource and its query templates (soft: they disappear from every read; the audit trail stays).")
            .Produces(StatusCodes.Status204NoContent)
            .ProducesProblem(StatusCodes.Status404NotFound);
}
