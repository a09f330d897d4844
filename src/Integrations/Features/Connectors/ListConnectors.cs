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

namespace Integrations.Features.Connectors;

/// <summary>connectors.list: the built-in connectors and the tenant's registered ones, in name order; keyset pagination by name.</summary>
public static class ListConnectors
{
    public sealed record Query(int Limit = 50, string? Cursor = null) : IOperation<Page<Connector.Response>>
    {
        public static string Operation => "connectors.list";
        public static string Scope => Scopes.Read;
    }

    internal sealed class Validator : AbstractValidator<Query>
    {
        public Validator()
        {
            RuleFor(x => x.Limit).PageLimit();
            RuleFor(x => x.Cursor).NameCursor();
        }
    }

    internal sealed class Handler(TenantSession session, ConnectorCatalog catalog) : IRequestHandler<Query, Result<Page<Connector.Response>>>
    {
        private const string Sql = $"""
            SELECT {ConnectorCatalog.RegisteredColumns} FROM connector_manifests
            WHERE tenant_id = @TenantId AND (@After::text IS NULL OR name > @After)
            ORDER BY name LIMIT @Take
            """;

        public async Task<Result<Page<Connector.Response>>> Handle(Query request, CancellationToken ct)
        {
            Cursor.TryDecodeName(request.Cursor, out var after);
            var connection = await session.ConnectionAsync(ct);
            var registered = await connection.QueryAsync<ConnectorCatalog.Registered>(new CommandDefinition(Sql,
                new { session.TenantId, After = after, Take = request.Limit + 1 }, cancellationToken: ct));
            var merged = catalog.BuiltIn.Where(m => after is null || string.CompareOrdinal(m.Name, after) > 0).Select(Connector.ToResponse)
                .Concat(registered.Select(Connector.ToResponse))
                .OrderBy(c => c.Name, StringComparer.Ordinal)
                .Take(request.Limit + 1)
                .ToList();
            return Paging.ToPage(merged, request.Limit, c => c, c => Cursor.EncodeName(c.Name));
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/", async ([FromQuery] int? limit, [FromQuery] string? cursor, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(limit ?? 50, cursor), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("The connector catalog: built-in connectors and the tenant's registered http manifests, with their actions; keyset pagination by name.")
            .Produces<Page<Connector.Response>>()
            .ProducesValidationProblem();
}
