using System.Text.Json.Serialization;
using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.LlmGateway;

/// <summary>
/// llm.models (<c>GET /v1/models</c>, OpenAI's list shape): the models the caller may ask for — every model an enabled
/// integration allows, as <c>&lt;integration&gt;/&lt;model&gt;</c>, and the plain name too when only one enabled
/// integration allows it (a plain name allowed by several would be refused as ambiguous). An integration with no
/// <c>allowed_models</c> accepts any model by its name's prefix and lists none.
/// </summary>
public static class ListLlmModels
{
    public sealed record Query : IOperation<Response>
    {
        public static string Operation => "llm.models";
        public static string Scope => Scopes.LlmInvoke;
    }

    public sealed record Model(string Id, [property: JsonPropertyName("object")] string Kind, long Created, string OwnedBy);

    public sealed record Response([property: JsonPropertyName("object")] string Kind, IReadOnlyList<Model> Data);

    /// <summary>A class: Dapper maps text[] columns onto properties, not constructor parameters.</summary>
    private sealed class Row
    {
        public string Name { get; init; } = "";
        public string[] AllowedModels { get; init; } = [];
        public DateTimeOffset CreatedAt { get; init; }
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Response>>
    {
        // Bounded by the integrations' own limits: at most 100 allowed models each.
        private const string Sql = """
            SELECT name, allowed_models, created_at FROM cus_integrations
            WHERE tenant_id = @TenantId AND deleted_at IS NULL AND status = 'enabled' AND provider = ANY(@Providers)
            ORDER BY name
            LIMIT 1000
            """;

        public async Task<Result<Response>> Handle(Query request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var rows = (await connection.QueryAsync<Row>(new CommandDefinition(Sql,
                new { session.TenantId, Providers = LlmCall.ServedProviders }, cancellationToken: ct))).AsList();
            var owners = rows.SelectMany(r => r.AllowedModels.Select(m => (Model: m, r.Name))).ToLookup(x => x.Model, x => x.Name);
            var models = new List<Model>();
            foreach (var row in rows)
            {
                foreach (var model in row.AllowedModels)
                {
                    models.Add(new Model($"{row.Name}/{model}", "model", row.CreatedAt.ToUnixTimeSeconds(), row.Name));
                }
            }
            foreach (var owned in owners.Where(o => o.Count() == 1))
            {
                var row = rows.First(r => r.Name == owned.First());
                models.Add(new Model(owned.Key, "model", row.CreatedAt.ToUnixTimeSeconds(), row.Name));
            }
            return new Response("list", models);
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/models", async (IMediator mediator, HttpContext http) => (await mediator.Send(new Query(), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("The models the caller may ask for through /v1, in OpenAI's list shape.")
            .Produces<Response>();
}
