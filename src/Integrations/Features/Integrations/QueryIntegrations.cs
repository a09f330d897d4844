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

namespace Integrations.Features.Integrations;

public static class QueryIntegrations
{
    public sealed record Query(
        string? Status = null,
        string? Provider = null,
        string? Health = null,
        string? NamePrefix = null,
        int Limit = 50,
        string? Cursor = null) : IOperation<Page<Integration.Response>>
    {
        public static string Operation => "integrations.query";
        public static string Scope => Scopes.Read;
    }

    internal sealed class Validator : AbstractValidator<Query>
    {
        public Validator()
        {
            RuleFor(x => x.Status).Must(s => s is null || Integration.Statuses.Contains(s))
                .WithMessage($"Status must be one of: {string.Join(", ", Integration.Statuses)}.");
            RuleFor(x => x.Provider).Must(p => p is null || Integration.Providers.Contains(p))
                .WithMessage($"Provider must be one of: {string.Join(", ", Integration.Providers)}.");
            RuleFor(x => x.Health).Must(h => h is null || Integration.Healths.Contains(h))
                .WithMessage($"Health must be one of: {string.Join(", ", Integration.Healths)}.");
            RuleFor(x => x.NamePrefix).MaximumLength(200);
            RuleFor(x => x.Limit).PageLimit();
            RuleFor(x => x.Cursor).IdCursor();
        }
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Page<Integration.Response>>>
    {
        public async Task<Result<Page<Integration.Response>>> Handle(Query request, CancellationToken ct)
        {
            Cursor.TryDecode(request.Cursor, out Guid after);
            // Only the filters given become predicates, so each shape gets its own plan on (tenant_id, id).
            var sql = new StringBuilder($"SELECT {Integration.Columns} FROM cus_integrations WHERE tenant_id = @TenantId AND deleted_at IS NULL");
            if (request.Cursor is not null) sql.Append(" AND id < @After");
            if (request.Status is not null) sql.Append(" AND status = @Status");
            if (request.Provider is not null) sql.Append(" AND provider = @Provider");
            if (request.Health is not null) sql.Append(" AND health = @Health");
            if (request.NamePrefix is not null) sql.Append(" AND starts_with(name, @NamePrefix)");
            sql.Append(" ORDER BY id DESC LIMIT @Take");

            var connection = await session.ConnectionAsync(ct);
            var rows = (await connection.QueryAsync<Integration.Row>(new CommandDefinition(sql.ToString(), new
            {
                session.TenantId,
                After = after,
                request.Status,
                request.Provider,
                request.Health,
                request.NamePrefix,
                Take = request.Limit + 1,
            }, cancellationToken: ct))).AsList();

            return Paging.ToPage(rows, request.Limit, r => r.ToResponse(), r => Cursor.Encode(r.Id));
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/", async (
                [FromQuery, OneOf(typeof(Integration), nameof(Integration.Statuses))] string? status,
                [FromQuery, OneOf(typeof(Integration), nameof(Integration.Providers))] string? provider,
                [FromQuery, OneOf(typeof(Integration), nameof(Integration.Healths))] string? health,
                [FromQuery(Name = "name_prefix")] string? namePrefix, [FromQuery] int? limit, [FromQuery] string? cursor,
                IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(status, provider, health, namePrefix, limit ?? 50, cursor), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("List integrations, newest first, with filters and keyset pagination (limit 1-200, cursor from next_cursor).")
            .Produces<Page<Integration.Response>>()
            .ProducesValidationProblem();
}
