using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Datasources;

public static class GetDatasource
{
    public sealed record Query(Guid Id) : IOperation<Datasource.Response>
    {
        public static string Operation => "datasources.get";
        public static string Scope => Scopes.Read;
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Datasource.Response>>
    {
        private const string Sql = $"""
            SELECT {Datasource.Columns} FROM datasources
            WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL
            """;

        public async Task<Result<Datasource.Response>> Handle(Query request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var row = await connection.QuerySingleOrDefaultAsync<Datasource.Row>(
                new CommandDefinition(Sql, new { session.TenantId, request.Id }, cancellationToken: ct));
            return row is null ? Error.NotFound(Datasource.SubjectType) : row.ToResponse();
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/{id:guid}", async (Guid id, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(id), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("Get one datasource, with the status and message of its last test.")
            .Produces<Datasource.Response>()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
