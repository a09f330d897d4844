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

namespace Integrations.Features.LlmGateway;

/// <summary>
/// llm_requests.by_day: the gateway's usage per UTC day over the last <c>days</c> days (today included), one entry per
/// day, days without a request as zeros, so a chart of them has no gaps. Summed from the hour rollups that migration
/// 0024's trigger keeps as requests are recorded (<c>llm_usage_hours</c>, as telemetry.summary reads them), never from
/// the request rows: a day is at most 24 cells per integration, model and key however busy it was. The console's usage
/// charts and the overview read it.
/// </summary>
public static class ListLlmUsageByDay
{
    public const int MaxDays = 92;

    public sealed record Query(int Days = 30, Guid? IntegrationId = null) : IOperation<Response>
    {
        public static string Operation => "llm_requests.by_day";
        public static string Scope => Scopes.Read;
    }

    /// <param name="Days">Oldest first, today last.</param>
    public sealed record Response(IReadOnlyList<Day> Days);

    /// <param name="Errors">Requests that did not complete (failed, timeout, denied).</param>
    public sealed record Day(DateOnly Date, long Requests, long Errors, long PromptTokens, long CompletionTokens, decimal CostCents);

    internal sealed class Validator : AbstractValidator<Query>
    {
        public Validator() => RuleFor(x => x.Days).InclusiveBetween(1, MaxDays).WithMessage($"days must be between 1 and {MaxDays}.");
    }

    internal sealed class Handler(TenantSession session, TimeProvider time) : IRequestHandler<Query, Result<Response>>
    {
        // A request that did not complete is an error (failed, timeout) or denied in the rollup.
        private const string Sql = """
            SELECT d AS day, coalesce(sum(h.requests), 0)::bigint AS requests, coalesce(sum(h.errors + h.denied), 0)::bigint AS errors,
                   coalesce(sum(h.prompt_tokens), 0)::bigint AS prompt_tokens, coalesce(sum(h.completion_tokens), 0)::bigint AS completion_tokens,
                   coalesce(sum(h.cost_cents), 0) AS cost_cents
            FROM generate_series(@First, @Last, interval '1 day') AS d
            LEFT JOIN llm_usage_hours h ON h.tenant_id = @TenantId AND h.hour >= d AND h.hour < d + interval '1 day'
                AND (@IntegrationId::uuid IS NULL OR h.integration_id = @IntegrationId)
            GROUP BY d ORDER BY d
            """;

        private sealed class Row
        {
            public DateTime Day { get; init; }
            public long Requests { get; init; }
            public long Errors { get; init; }
            public long PromptTokens { get; init; }
            public long CompletionTokens { get; init; }
            public decimal CostCents { get; init; }
        }

        public async Task<Result<Response>> Handle(Query request, CancellationToken ct)
        {
            var today = time.GetUtcNow().UtcDateTime.Date;
            var connection = await session.ConnectionAsync(ct);
            var rows = await connection.QueryAsync<Row>(new CommandDefinition(Sql, new
            {
                session.TenantId,
                First = DateTime.SpecifyKind(today.AddDays(1 - request.Days), DateTimeKind.Utc),
                Last = DateTime.SpecifyKind(today, DateTimeKind.Utc),
                request.IntegrationId,
            }, cancellationToken: ct));
            return new Response(rows.Select(r =>
                new Day(DateOnly.FromDateTime(r.Day.ToUniversalTime()), r.Requests, r.Errors, r.PromptTokens, r.CompletionTokens, r.CostCents)).ToList());
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/by-day", async ([FromQuery] int? days, [FromQuery(Name = "integration_id")] Guid? integrationId, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(days ?? 30, integrationId), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("LLM usage per UTC day over the last days (1-92, default 30): requests, errors, tokens and cost, zeros for quiet days.")
            .Produces<Response>()
            .ProducesValidationProblem();
}
