using Dapper;
using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Http;
using MediatR;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace Integrations.Features.LlmGateway;

/// <summary>
/// llm_prices.set: the tenant's own price for a model (its negotiated rate, or a model the list does not know), in US
/// cents per million tokens. It prices requests from now on; recorded rows keep the cost they were recorded with.
/// </summary>
public static class SetLlmPrice
{
    public sealed record Body(decimal InputCentsPerMtok, decimal OutputCentsPerMtok, decimal? CachedCentsPerMtok = null);

    public sealed record Command(string Model, decimal InputCentsPerMtok, decimal OutputCentsPerMtok, decimal? CachedCentsPerMtok = null)
        : IOperation<LlmPrice>, IAudited
    {
        public static string Operation => "llm_prices.set";
        public static string Scope => Scopes.Write;
    }

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator()
        {
            RuleFor(x => x.Model).NotEmpty().MaximumLength(200);
            RuleFor(x => x.InputCentsPerMtok).InclusiveBetween(0, 100_000_000);
            RuleFor(x => x.OutputCentsPerMtok).InclusiveBetween(0, 100_000_000);
            RuleFor(x => x.CachedCentsPerMtok).InclusiveBetween(0, 100_000_000).When(x => x.CachedCentsPerMtok is not null);
        }
    }

    internal sealed class Handler(TenantSession session, AuditTrail audit) : IRequestHandler<Command, Result<LlmPrice>>
    {
        private const string Sql = """
            INSERT INTO llm_prices (tenant_id, model, input_cents_per_mtok, output_cents_per_mtok, cached_cents_per_mtok)
            VALUES (@TenantId, @Model, @InputCentsPerMtok, @OutputCentsPerMtok, @CachedCentsPerMtok)
            ON CONFLICT (tenant_id, model) DO UPDATE SET input_cents_per_mtok = excluded.input_cents_per_mtok,
                output_cents_per_mtok = excluded.output_cents_per_mtok, cached_cents_per_mtok = excluded.cached_cents_per_mtok, updated_at = now()
            RETURNING model, input_cents_per_mtok, output_cents_per_mtok, cached_cents_per_mtok, 'tenant' AS source
            """;

        public async Task<Result<LlmPrice>> Handle(Command request, CancellationToken ct)
        {
            var connection = await session.ConnectionAsync(ct);
            var price = await connection.QuerySingleAsync<LlmPrice>(new CommandDefinition(Sql, new
            {
                session.TenantId,
                request.Model,
                request.InputCentsPerMtok,
                request.OutputCentsPerMtok,
                request.CachedCentsPerMtok,
            }, cancellationToken: ct));
            audit.Record("llm_price", request.Model, new { request.InputCentsPerMtok, request.OutputCentsPerMtok, request.CachedCentsPerMtok });
            return price;
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPut("/{model}", async (string model, Body body, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Command(model, body.InputCentsPerMtok, body.OutputCentsPerMtok, body.CachedCentsPerMtok), http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithSummary("Set the tenant's price for a model (US cents per million input, output and cached input tokens); it prices requests from now on.")
            .Produces<LlmPrice>()
            .ProducesValidationProblem();
}

/// <summary>A model's price in US cents per million tokens; <c>source</c> is <c>list</c> (published, seeded) or <c>tenant</c> (set by the tenant).</summary>
public sealed record LlmPrice(string Model, decimal InputCentsPerMtok, decimal OutputCentsPerMtok, decimal? CachedCentsPerMtok, string Source);
