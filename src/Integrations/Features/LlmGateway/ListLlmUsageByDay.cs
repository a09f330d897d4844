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
/// day, days without a request as zeros, so a chart of them has no gaps. Summed from the request rows (the console's
/// usage charts read it).
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
        private const string Sql = """
            SELECT d AS day, count(r.id) AS requests, count(r.id) FILTER (WHERE r.status <> 'completed') AS errors,
                   coalesce(sum(r.prompt_tokens), 0)::bigint AS prompt_tokens, coalesce(sum(r.completion_tokens), 0)::bigint AS completion_tokens,
                   coalesce(sum(r.cost_cents), 0) AS cost_cents
            FROM generate_series(@First, @Last, interval '1 day') AS d
            LEFT JOIN llm_requests r ON r.tenant_id = @TenantId AND r.started_at >= d AND r.started_at < d + interval '1 day'
                AND (@IntegrationId::uuid IS NULL OR r.integration_id = @IntegrationId)
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
