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

namespace Integrations.Features.Telemetry;

/// <summary>
/// telemetry.summary: requests, errors, denials, tokens, cost and p50/p95 latency of all LLM usage (the gateway's and
/// reported), grouped by any of integration, model, API key, run and day or hour, over a range of whole UTC hours. It
/// reads the hour rollups the usage rows' trigger keeps (migrations 0024 and 0037; which one: <c>Source</c>), never the
/// rows: the cost of a summary grows with the hours and groups in the range, not with the requests. Latency percentiles
/// come from the rollups' fixed buckets (<see cref="LatencyBucketBounds"/>), interpolated within a bucket: exact to the
/// bucket, not to the millisecond.
/// </summary>
public static class SummarizeLlmUsage
{
    public static readonly string[] Groupings = ["integration", "model", "api_key", "run", "day", "hour"];

    /// <summary>Upper bounds (ms) of the rollups' latency buckets, as migration 0024's <c>llm_latency_bucket</c>; a 15th bucket is open.</summary>
    public static readonly double[] LatencyBucketBounds = [10, 25, 50, 100, 250, 500, 1000, 2000, 4000, 8000, 15000, 30000, 60000, 120000];

    public static readonly TimeSpan MaxRange = TimeSpan.FromDays(400);
    public const int MaxLimit = 1000;

    /// <param name="From">Start of the range, rounded down to the hour (default: 24 hours before <paramref name="To"/>).</param>
    /// <param name="To">End of the range (exclusive), rounded up to the hour (default: now).</param>
    public sealed record Query(
        DateTimeOffset? From = null, DateTimeOffset? To = null, IReadOnlyList<string>? GroupBy = null, Guid? IntegrationId = null,
        string? Model = null, Guid? ApiKeyId = null, string? RunId = null, int Limit = 100, string? Cursor = null) : IOperation<Response>
    {
        public static string Operation => "telemetry.summary";
        public static string Scope => Scopes.Read;
    }

    public sealed record Response(DateTimeOffset From, DateTimeOffset To, IReadOnlyList<string> GroupBy, IReadOnlyList<Group> Items, string? NextCursor);

    /// <param name="PeriodStart">The day or hour (when grouped by one).</param>
    /// <param name="Errors">Requests that failed or timed out (denied ones are counted in <paramref name="Denied"/>).</param>
    /// <param name="LatencyP50Ms">Of requests that were not denied; null when there are none.</param>
    public sealed record Group(
        Guid? IntegrationId, string? IntegrationName, string? Model, Guid? ApiKeyId, string? RunId, DateTimeOffset? PeriodStart,
        long Requests, long Errors, long Denied, long PromptTokens, long CompletionTokens, long TotalTokens, decimal CostCents,
        double? LatencyP50Ms, double? LatencyP95Ms);

    internal sealed class Validator : AbstractValidator<Query>
    {
        public Validator()
        {
            RuleFor(x => x.GroupBy).Must(g => g is null || g.All(Groupings.Contains))
                .WithMessage($"group_by takes any of: {string.Join(", ", Groupings)}.")
                .Must(g => g is null || !(g.Contains("day") && g.Contains("hour"))).WithMessage("Group by day or by hour, not both.");
            RuleFor(x => x).Must(x => (x.To ?? DateTimeOffset.UtcNow) > (x.From ?? (x.To ?? DateTimeOffset.UtcNow).AddDays(-1)))
                .WithMessage("'to' must be after 'from'.").OverridePropertyName("to")
                .Must(x => (x.To ?? DateTimeOffset.UtcNow) - (x.From ?? (x.To ?? DateTimeOffset.UtcNow).AddDays(-1)) <= MaxRange)
                .WithMessage($"The range is at most {MaxRange.TotalDays:0} days.").OverridePropertyName("from");
            RuleFor(x => x.Model).MaximumLength(400);
            RuleFor(x => x.RunId).MaximumLength(200);
            RuleFor(x => x.Limit).InclusiveBetween(1, MaxLimit).WithMessage($"Limit must be between 1 and {MaxLimit}.");
            RuleFor(x => x.Cursor).SeqCursor();
        }
    }

    internal sealed class Handler(TenantSession session, TimeProvider time) : IRequestHandler<Query, Result<Response>>
    {
        private static readonly Dictionary<string, (string Column, string Select)> Dimensions = new()
        {
            ["integration"] = ("integration_id", "integration_id"),
            ["model"] = ("model", "model"),
            ["api_key"] = ("api_key_id", "api_key_id"),
            ["run"] = ("run_id", "run_id"),
            ["day"] = ("period_start", "date_trunc('day', hour, 'UTC') AS period_start"),
            ["hour"] = ("period_start", "hour AS period_start"),
        };

        public async Task<Result<Response>> Handle(Query request, CancellationToken ct)
        {
            var to = CeilHour(request.To ?? time.GetUtcNow());
            var from = FloorHour(request.From ?? to.AddDays(-1));
            var groupBy = (request.GroupBy ?? []).Distinct().OrderBy(g => Array.IndexOf(Groupings, g)).ToList();
            Cursor.TryDecode(request.Cursor, out long offset);
            if (offset == long.MaxValue) offset = 0;

            var source = Source(groupBy, request);
            var dims = groupBy.Select(g => Dimensions[g]).ToList();
            var sql = new StringBuilder("WITH g AS (SELECT ");
            foreach (var (_, select) in dims) sql.Append(select).Append(", ");
            sql.Append("sum(requests) AS requests, sum(errors) AS errors, sum(denied) AS denied, sum(prompt_tokens) AS prompt_tokens, ");
            sql.Append("sum(completion_tokens) AS completion_tokens, sum(cost_cents) AS cost_cents, ARRAY[");
            sql.AppendJoin(", ", Enumerable.Range(1, LatencyBucketBounds.Length + 1).Select(i => $"COALESCE(sum(latency[{i}]), 0)"));
            sql.Append("]::bigint[] AS latency FROM ").Append(source);
            sql.Append(" WHERE tenant_id = @TenantId AND hour >= @From AND hour < @To");
            if (request.IntegrationId is not null) sql.Append(" AND integration_id = @IntegrationId");
            if (request.Model is not null) sql.Append(" AND model = @Model");
            if (request.ApiKeyId is not null) sql.Append(" AND api_key_id = @ApiKeyId");
            if (request.RunId is not null) sql.Append(" AND run_id = @RunId");
            if (dims.Count > 0) sql.Append(" GROUP BY ").AppendJoin(", ", Enumerable.Range(1, dims.Count));
            sql.Append(") SELECT g.*");
            if (groupBy.Contains("integration")) sql.Append(", i.name AS integration_name");
            sql.Append(" FROM g");
            if (groupBy.Contains("integration")) sql.Append(" LEFT JOIN cus_integrations i ON i.tenant_id = @TenantId AND i.id = g.integration_id");
            // Time ascending, then the most expensive first; the columns settle ties so pages never overlap.
            var order = new List<string>();
            if (groupBy.Contains("day") || groupBy.Contains("hour")) order.Add("g.period_start");
            order.Add("g.cost_cents DESC");
            order.AddRange(dims.Where(d => d.Column != "period_start").Select(d => $"g.{d.Column} NULLS FIRST"));
            sql.Append(" ORDER BY ").AppendJoin(", ", order).Append(" LIMIT @Take OFFSET @Offset");

            var connection = await session.ConnectionAsync(ct);
            var rows = (await connection.QueryAsync<Row>(new CommandDefinition(sql.ToString(), new
            {
                session.TenantId,
                From = from.UtcDateTime,
                To = to.UtcDateTime,
                request.IntegrationId,
                request.Model,
                request.ApiKeyId,
                request.RunId,
                Take = request.Limit + 1,
                Offset = offset,
            }, cancellationToken: ct))).AsList();
            // Without a grouping the answer is one row, of zeros for an empty range (an aggregate without GROUP BY).
            var more = rows.Count > request.Limit;
            if (more) rows.RemoveAt(rows.Count - 1);
            var items = rows.ConvertAll(r => r.ToGroup());
            return new Response(from, to, groupBy, items, more ? Cursor.Encode(offset + request.Limit) : null);
        }

        /// <summary>
        /// The smallest rollup that answers: usage with a run is in the run rollups too, and only asking about runs needs
        /// them. <c>llm_run_hours</c> (one cell per run and hour) answers unless the integration, model or key is asked
        /// about too; <c>llm_usage_run_hours</c> keeps them apart, at many more cells. Until the backfill of migration
        /// 0037 reaches a tenant (<c>llm_run_hours_pending</c>), its cells are in the latter only. The outer conditions
        /// reach into both branches; the one whose gate fails is never run.
        /// </summary>
        private static string Source(List<string> groupBy, Query request)
        {
            if (!groupBy.Contains("run") && request.RunId is null) return "llm_usage_hours";
            if (groupBy.Contains("integration") || groupBy.Contains("model") || groupBy.Contains("api_key")
                || request.IntegrationId is not null || request.Model is not null || request.ApiKeyId is not null)
            {
                return "llm_usage_run_hours";
            }
            const string pending = "EXISTS (SELECT FROM llm_run_hours_pending WHERE tenant_id = @TenantId)";
            return $"""
                (SELECT tenant_id, hour, run_id, requests, errors, denied, prompt_tokens, completion_tokens, cost_cents, latency
                 FROM llm_run_hours WHERE NOT {pending}
                 UNION ALL
                 SELECT tenant_id, hour, run_id, requests, errors, denied, prompt_tokens, completion_tokens, cost_cents, latency
                 FROM llm_usage_run_hours WHERE {pending}) AS cells
                """;
        }

        private static DateTimeOffset FloorHour(DateTimeOffset t) => new(t.UtcDateTime.Date.AddHours(t.UtcDateTime.Hour), TimeSpan.Zero);

        private static DateTimeOffset CeilHour(DateTimeOffset t)
        {
            var floor = FloorHour(t);
            return floor == t.ToUniversalTime() ? floor : floor.AddHours(1);
        }
    }

    /// <summary>The <paramref name="quantile"/> of the counts in the rollup's buckets, interpolated within its bucket (the open one answers its lower bound).</summary>
    public static double? Percentile(long[] buckets, double quantile)
    {
        var total = buckets.Sum();
        if (total == 0) return null;
        var rank = quantile * total;
        long seen = 0;
        for (var i = 0; i < buckets.Length; i++)
        {
            if (buckets[i] == 0 || seen + buckets[i] < rank)
            {
                seen += buckets[i];
                continue;
            }
            var lower = i == 0 ? 0 : LatencyBucketBounds[i - 1];
            if (i >= LatencyBucketBounds.Length) return lower;
            return lower + (LatencyBucketBounds[i] - lower) * (rank - seen) / buckets[i];
        }
        return LatencyBucketBounds[^1];
    }

    private sealed class Row
    {
        public Guid? IntegrationId { get; init; }
        public string? IntegrationName { get; init; }
        public string? Model { get; init; }
        public Guid? ApiKeyId { get; init; }
        public string? RunId { get; init; }
        public DateTime? PeriodStart { get; init; }
        public long? Requests { get; init; }
        public long? Errors { get; init; }
        public long? Denied { get; init; }
        public long? PromptTokens { get; init; }
        public long? CompletionTokens { get; init; }
        public decimal? CostCents { get; init; }
        public long[] Latency { get; init; } = [];

        public Group ToGroup()
        {
            var buckets = Latency;
            var prompt = PromptTokens ?? 0;
            var completion = CompletionTokens ?? 0;
            return new Group(IntegrationId, IntegrationName, Model, ApiKeyId, RunId,
                PeriodStart is { } p ? new DateTimeOffset(DateTime.SpecifyKind(p, DateTimeKind.Utc)) : null,
                Requests ?? 0, Errors ?? 0, Denied ?? 0, prompt, completion, prompt + completion, CostCents ?? 0,
                Percentile(buckets, 0.5), Percentile(buckets, 0.95));
        }
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/summary", async ([FromQuery] DateTimeOffset? from, [FromQuery] DateTimeOffset? to, [FromQuery(Name = "group_by")] string? groupBy,
                [FromQuery(Name = "integration_id")] Guid? integrationId, [FromQuery] string? model, [FromQuery(Name = "api_key_id")] Guid? apiKeyId,
                [FromQuery(Name = "run_id")] string? runId, [FromQuery] int? limit, [FromQuery] string? cursor, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(from, to,
                    groupBy?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries),
                    integrationId, model, apiKeyId, runId, limit ?? 100, cursor), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("Summarize LLM usage (gateway and reported) over whole UTC hours: requests, errors, tokens, cost, p50/p95 latency; group_by any of integration, model, api_key, run, day|hour (comma-separated).")
            .Produces<Response>()
            .ProducesValidationProblem();
}
