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

namespace Integrations.Features.Incidents;

public static class ListIncidents
{
    public sealed record Query(string? Status = null, string? Kind = null, int Limit = 50, string? Cursor = null)
        : IOperation<Page<Incident.Response>>
    {
        public static string Operation => "incidents.list";
        public static string Scope => Scopes.Read;
    }

    internal sealed class Validator : AbstractValidator<Query>
    {
        public Validator()
        {
            RuleFor(x => x.Status).Must(s => s is null || Incident.Statuses.Contains(s))
                .WithMessage($"Status must be one of: {string.Join(", ", Incident.Statuses)}.");
            RuleFor(x => x.Kind).Must(k => k is null || Incident.Kinds.Contains(k))
                .WithMessage($"Kind must be one of: {string.Join(", ", Incident.Kinds)}.");
            RuleFor(x => x.Limit).PageLimit();
            RuleFor(x => x.Cursor).IdCursor();
        }
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Page<Incident.Response>>>
    {
        public async Task<Result<Page<Incident.Response>>> Handle(Query request, CancellationToken ct)
        {
            Cursor.TryDecode(request.Cursor, out Guid after);
            var sql = new StringBuilder($"SELECT {Incident.Columns} FROM incidents WHERE tenant_id = @TenantId");
            if (request.Cursor is not null) sql.Append(" AND id < @After");
            if (request.Status is not null) sql.Append(" AND status = @Status");
            if (request.Kind is not null) sql.Append(" AND kind = @Kind");
            sql.Append(" ORDER BY id DESC LIMIT @Take");

            var connection = await session.ConnectionAsync(ct);
            var rows = (await connection.QueryAsync<Incident.Row>(new CommandDefinition(sql.ToString(), new
            {
                session.TenantId,
                After = after,
                request.Status,
                request.Kind,
                Take = request.Limit + 1,
            }, cancellationToken: ct))).AsList();
            return Paging.ToPage(rows, request.Limit, r => r.ToResponse(), r => Cursor.Encode(r.Id));
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/", async ([FromQuery, OneOf(typeof(Incident), nameof(Incident.Statuses))] string? status, [FromQuery, OneOf(typeof(Incident), nameof(Incident.Kinds))] string? kind, [FromQuery] int? limit, [FromQuery] string? cursor,
                IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(status, kind, limit ?? 50, cursor), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("Incidents (tool failures, health failures), newest first, with status and kind filters.")
            .Produces<Page<Incident.Response>>()
            .ProducesValidationProblem();
}
