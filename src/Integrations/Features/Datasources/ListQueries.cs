using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Mvc;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.Datasources;

public static class ListQueries
{
    public sealed record Query(Guid DatasourceId, int Limit = 50, string? Cursor = null) : IOperation<Page<Datasource.QueryResponse>>
    {
        public static string Operation => "datasources.queries";
        public static string Scope => Scopes.Read;
    }

    internal sealed class Validator : AbstractValidator<Query>
    {
        public Validator()
        {
            RuleFor(x => x.Limit).PageLimit();
            RuleFor(x => x.Cursor).IdCursor();
        }
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Page<Datasource.QueryResponse>>>
    {
        private const string ExistsSql = """
            SELECT EXISTS (SELECT 1 FROM datasources WHERE tenant_id = @TenantId AND id = @DatasourceId AND deleted_at IS NULL)
            """;

        private const string Sql = $"""
            SELECT {Datasource.QueryColumns} FROM datasource_queries
            WHERE tenant_id = @TenantId AND datasource_id = @DatasourceId AND deleted_at IS NULL AND (@First OR id < @After)
            ORDER BY id DESC LIMIT @Take
            """;

        public async Task<Result<Page<Datasource.QueryResponse>>> Handle(Query request, CancellationToken ct)
        {
            Cursor.TryDecode(request.Cursor, out Guid after);
            var connection = await session.ConnectionAsync(ct);
            if (!await connection.ExecuteScalarAsync<bool>(new CommandDefinition(ExistsSql, new { session.TenantId, request.DatasourceId }, cancellationToken: ct)))
            {
                return Error.NotFound(Datasource.SubjectType);
            }
            var rows = (await connection.QueryAsync<Datasource.QueryRow>(new CommandDefinition(Sql, new
            {
                session.TenantId,
                request.DatasourceId,
                First = request.Cursor is null,
                After = after,
                Take = request.Limit + 1,
            }, cancellationToken: ct))).AsList();

            return Paging.ToPage(rows, request.Limit, r => r.ToResponse(), r => Cursor.Encode(r.Id));
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/{id:guid}/queries", async (Guid id, [FromQuery] int? limit, [FromQuery] string? cursor, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(id, limit ?? 50, cursor), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("List a datasource's query templates, newest first, with keyset pagination (limit 1-200, cursor from next_cursor).")
            .Produces<Page<Datasource.QueryResponse>>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status404NotFound);
}
