using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Datasources;

public static class DeleteQuery
{
    public sealed record Command(Guid DatasourceId, string Name) : IOperation<Done>, IAudited
    {
        public static string Operation => "datasources.delete_query";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit) : IRequestHandler<Command, Result<Done>>
    {
        private const string Sql = """
            UPDATE datasource_queries SET deleted_at = now(), updated_at = now()
            WHERE tenant_id = @TenantId AND datasource_id = @DatasourceId AND name = @Name AND deleted_at IS NULL
            RETURNING id
            """;

        public async Task<Result<Done>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var id = await connection.QuerySingleOrDefaultAsync<Guid?>(
                new CommandDefinition(Sql, new { session.TenantId, request.DatasourceId, request.Name }, cancellationToken: ct));
            if (id is null) return Error.NotFound("query template");
            audit.Record(Datasource.QuerySubjectType, id.Value.ToString(), new { request.DatasourceId, request.Name });
            return Done.Value;
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapDelete("/{id:guid}/queries/{name}", async (Guid id, string name, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(id, name), http.RequestAborted)).ToHttp(http, _ => TypedResults.NoContent()))
            .WithName(Command.Operation)
            .WithSummary("Delete a query template (soft); it can no longer run, and its name can be defined again.")
            .Produces(StatusCodes.Status204NoContent)
            .ProducesProblem(StatusCodes.Status404NotFound);
}
