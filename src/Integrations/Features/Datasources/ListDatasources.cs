using System.Text;
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

public static class ListDatasources
{
    public sealed record Query(string? Kind = null, string? Status = null, int Limit = 50, string? Cursor = null)
        : IOperation<Page<Datasource.Response>>
    {
        public static string Operation => "datasources.list";
        public static string Scope => Scopes.Read;
    }

    internal sealed class Validator : AbstractValidator<Query>
    {
        public Validator()
        {
            RuleFor(x => x.Kind).Must(k => k is null || Datasource.Kinds.Contains(k))
                .WithMessage($"Kind must be one of: {string.Join(", ", Datasource.Kinds)}.");
            RuleFor(x => x.Status).Must(s => s is null || Datasource.Statuses.Contains(s))
                .WithMessage($"Status must be one of: {string.Join(", ", Datasource.Statuses)}.");
            RuleFor(x => x.Limit).PageLimit();
            RuleFor(x => x.Cursor).IdCursor();
        }
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Page<Datasource.Response>>>
    {
        public async Task<Result<Page<Datasource.Response>>> Handle(Query request, CancellationToken ct)
        {
            Cursor.TryDecode(request.Cursor, out Guid after);
            var sql = new StringBuilder($"SELECT {Datasource.Columns} FROM datasources WHERE tenant_id = @TenantId AND deleted_at IS NULL");
            if (request.Cursor is not null) sql.Append(" AND id < @After");
            if (request.Kind is not null) sql.Append(" AND kind = @Kind");
            if (request.Status is not null) sql.Append(" AND status = @Status");
            sql.Append(" ORDER BY id DESC LIMIT @Take");

            var connection = await session.ConnectionAsync(ct);
            var rows = (await connection.QueryAsync<Datasource.Row>(new CommandDefinition(sql.ToString(), new
            {
                session.TenantId,
                After = after,
                request.Kind,
                request.Status,
                Take = request.Limit + 1,
            }, cancellationToken: ct))).AsList();

            return Paging.ToPage(rows, request.Limit, r => r.ToResponse(), r => Cursor.Encode(r.Id));
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/", async ([FromQuery, OneOf(typeof(Datasource), nameof(Datasource.Kinds))] string? kind, [FromQuery, OneOf(typeof(Datasource), nameof(Datasource.Statuses))] string? status, [FromQuery] int? limit, [FromQuery] string? cursor,
                IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(kind, status, limit ?? 50, cursor), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("List datasources, newest first, filtered by kind and status, with keyset pagination (limit 1-200, cursor from next_cursor).")
            .Produces<Page<Datasource.Response>>()
            .ProducesValidationProblem();
}
