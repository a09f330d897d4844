using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.LlmGateway;

/// <summary>llm_prices.list: the prices the tenant's requests are costed at — its own where it set one, else the published list price.</summary>
public static class ListLlmPrices
{
    public sealed record Query : IOperation<Response>
    {
        public static string Operation => "llm_prices.list";
        public static string Scope => Scopes.Read;
    }

    public sealed record Response(IReadOnlyList<LlmPrice> Items);

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Response>>
    {
        // Bounded: the list is the seeded table, and a tenant sets a price per model it uses.
        private const string Sql = """
            SELECT model, input_cents_per_mtok, output_cents_per_mtok, cached_cents_per_mtok, 'tenant' AS source
            FROM llm_prices WHERE tenant_id = @TenantId
            UNION ALL
            SELECT model, input_cents_per_mtok, output_cents_per_mtok, cached_cents_per_mtok, 'list'
            FROM llm_list_prices l WHERE NOT EXISTS (SELECT FROM llm_prices p WHERE p.tenant_id = @TenantId AND p.model = l.model)
            ORDER BY model
            LIMIT 5000
            """;

        public async Task<Result<Response>> Handle(Query request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var prices = await connection.QueryAsync<LlmPrice>(new CommandDefinition(Sql, new { session.TenantId }, cancellationToken: ct));
            return new Response(prices.AsList());
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/", async (IMediator mediator, HttpContext http) => (await mediator.Send(new Query(), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("The prices LLM requests are costed at (US cents per million tokens): the tenant's own, else the published list.")
            .Produces<Response>();
}
