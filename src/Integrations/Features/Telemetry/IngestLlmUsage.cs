using System.Text.Json;
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

namespace Integrations.Features.Telemetry;

/// <summary>
/// telemetry.ingest: LLM usage made outside the gateway, up to <see cref="MaxRecords"/> records a batch, stored beside the
/// gateway's own rows (<c>llm_requests</c>, <c>source = 'telemetry'</c>) so budgets, summaries and anomaly detection see
/// all of it. Each record is checked on its own: a bad one is reported by its index and the good ones are kept. A record
/// whose idempotency id this tenant already sent is counted once (a retried batch adds nothing). Without a cost, the cost
/// comes from the price table (the tenant's price, else the list price; 0 for a model with neither). The records are
/// attributed to the sending API key, so they count against its budget.
/// </summary>
public static class IngestLlmUsage
{
    public const int MaxRecords = 1000;
    public const string Source = "telemetry";

    public static readonly string[] Statuses = ["completed", "failed", "timeout"];
    public static readonly string[] Endpoints = ["chat.completions", "embeddings", "messages"];

    /// <summary>How far ahead of the server's clock a record may start (clock skew), and how far back.</summary>
    public static readonly TimeSpan FutureSkew = TimeSpan.FromMinutes(5);
    public static readonly TimeSpan MaxAge = TimeSpan.FromDays(400);

    public sealed record Command(IReadOnlyList<UsageRecord> Records) : IOperation<Response>, IAudited
    {
        public static string Operation => "telemetry.ingest";
        public static string Scope => Scopes.Write;
    }

    /// <param name="IdempotencyId">The caller's id for this record: a record sent again with it is counted once.</param>
    /// <param name="IntegrationId">The tenant's integration the call used, by id; or <paramref name="Integration"/> by name; or neither, with <paramref name="Provider"/>.</param>
    /// <param name="CostCents">US cents, when the caller knows them; otherwise from the price table.</param>
    /// <param name="LatencyMs">Defaults to <paramref name="FinishedAt"/> − <paramref name="StartedAt"/>, or 0.</param>
    public sealed record UsageRecord(
        string? IdempotencyId, string? Model, DateTimeOffset? StartedAt, Guid? IntegrationId = null, string? Integration = null,
        string? Provider = null, long PromptTokens = 0, long CompletionTokens = 0, long CachedTokens = 0, decimal? CostCents = null,
        DateTimeOffset? FinishedAt = null, double? LatencyMs = null, string? RunId = null,
        [OneOf(typeof(IngestLlmUsage), nameof(Statuses))] string? Status = null, string? ErrorCode = null,
        [OneOf(typeof(IngestLlmUsage), nameof(Endpoints))] string? Endpoint = null);

    /// <param name="Stored">Records stored now.</param>
    /// <param name="Duplicates">Valid records whose idempotency id was already stored (or repeated in this batch): counted once.</param>
    /// <param name="Rejected">The records not stored, by their index in the batch, with why.</param>
    public sealed record Response(int Received, int Stored, int Duplicates, IReadOnlyList<Rejection> Rejected);

    /// <param name="Index">The record's position in <c>records</c>, from 0.</param>
    /// <param name="Errors">Field (snake_case) → messages.</param>
    public sealed record Rejection(int Index, string? IdempotencyId, string Code, IReadOnlyDictionary<string, string[]> Errors);

    internal sealed class Validator : AbstractValidator<Command>
    {
        public Validator()
        {
            RuleFor(x => x.Records).NotNull().Must(r => r is { Count: > 0 and <= MaxRecords })
                .WithMessage($"A batch holds 1 to {MaxRecords} records.");
        }
    }

    /// <summary>One record's rules; applied by the handler so a bad record costs only itself.</summary>
    internal sealed class RecordRules : AbstractValidator<UsageRecord>
    {
        public RecordRules(TimeProvider time)
        {
            RuleFor(x => x.IdempotencyId).NotEmpty().MaximumLength(200).OverridePropertyName("idempotency_id");
            RuleFor(x => x.Model).NotEmpty().MaximumLength(400).OverridePropertyName("model");
            RuleFor(x => x.StartedAt).NotNull().Must(s => s is null || (s <= time.GetUtcNow() + FutureSkew && s >= time.GetUtcNow() - MaxAge))
                .WithMessage($"started_at must be at most {FutureSkew.TotalMinutes:0} minutes ahead and {MaxAge.TotalDays:0} days back.")
                .OverridePropertyName("started_at");
            RuleFor(x => x.FinishedAt).Must((r, f) => f is null || r.StartedAt is null || f >= r.StartedAt)
                .WithMessage("finished_at must not be before started_at.").OverridePropertyName("finished_at");
            RuleFor(x => x).Must(r => r.IntegrationId is not null || r.Integration is not null || !string.IsNullOrWhiteSpace(r.Provider))
                .WithMessage("Name the integration (integration_id or integration) or the provider.").OverridePropertyName("integration");
            RuleFor(x => x.Integration).MaximumLength(100).OverridePropertyName("integration");
            RuleFor(x => x.Provider).MaximumLength(100).OverridePropertyName("provider");
            RuleFor(x => x.PromptTokens).InclusiveBetween(0, 100_000_000).OverridePropertyName("prompt_tokens");
            RuleFor(x => x.CompletionTokens).InclusiveBetween(0, 100_000_000).OverridePropertyName("completion_tokens");
            RuleFor(x => x.CachedTokens).InclusiveBetween(0, 100_000_000).Must((r, c) => r.PromptTokens < 0 || c <= r.PromptTokens)
                .WithMessage("cached_tokens are part of prompt_tokens: at most as many.").OverridePropertyName("cached_tokens");
            RuleFor(x => x.CostCents).InclusiveBetween(0m, 100_000_000m).OverridePropertyName("cost_cents");
            RuleFor(x => x.LatencyMs).InclusiveBetween(0, 86_400_000).OverridePropertyName("latency_ms");
            RuleFor(x => x.RunId).MaximumLength(200).OverridePropertyName("run_id");
            RuleFor(x => x.Status).Must(s => s is null || Statuses.Contains(s))
                .WithMessage($"status must be one of: {string.Join(", ", Statuses)}.").OverridePropertyName("status");
            RuleFor(x => x.Endpoint).Must(e => e is null || Endpoints.Contains(e))
                .WithMessage($"endpoint must be one of: {string.Join(", ", Endpoints)}.").OverridePropertyName("endpoint");
            RuleFor(x => x.ErrorCode).MaximumLength(100).OverridePropertyName("error_code");
        }
    }

    internal sealed class Handler(TenantSession session, CallerContext caller, AuditTrail audit, RecordRules rules)
        : IRequestHandler<Command, Result<Response>>
    {
        private sealed record KnownIntegration(Guid Id, string Name, string Provider);

        private const string IntegrationsSql = """
            SELECT id, name, provider FROM cus_integrations
            WHERE tenant_id = @TenantId AND deleted_at IS NULL AND (id = ANY(@Ids) OR name = ANY(@Names))
            """;

        // Cost: the record's own, else the tenant's price for the model, else the list price, else 0 (as the gateway does).
        private const string InsertSql = """
            INSERT INTO llm_requests (id, tenant_id, source, idempotency_id, integration_id, integration_name, api_key_id, caller, run_id,
                endpoint, requested_model, served_model, provider, prompt_tokens, completion_tokens, cached_tokens, cost_cents, status,
                error_code, latency_ms, attempts, started_at, finished_at)
            SELECT r.id, @TenantId, 'telemetry', r.idempotency_id, r.integration_id, r.integration_name, @ApiKeyId, @Caller, r.run_id,
                r.endpoint, r.model, r.model, r.provider, r.prompt_tokens, r.completion_tokens, r.cached_tokens,
                COALESCE(r.cost_cents, ((r.prompt_tokens - r.cached_tokens) * p.input_cents_per_mtok
                    + r.cached_tokens * COALESCE(p.cached_cents_per_mtok, p.input_cents_per_mtok)
                    + r.completion_tokens * p.output_cents_per_mtok) / 1000000, 0),
                r.status, r.error_code, r.latency_ms, 1, r.started_at, r.finished_at
            FROM jsonb_to_recordset(@Records::jsonb) AS r(id uuid, idempotency_id text, integration_id uuid, integration_name text,
                run_id text, endpoint text, model text, provider text, prompt_tokens bigint, completion_tokens bigint, cached_tokens bigint,
                cost_cents numeric, status text, error_code text, latency_ms double precision, started_at timestamptz, finished_at timestamptz)
            LEFT JOIN LATERAL (
                SELECT input_cents_per_mtok, output_cents_per_mtok, cached_cents_per_mtok
                FROM (SELECT 0 AS rank, input_cents_per_mtok, output_cents_per_mtok, cached_cents_per_mtok
                      FROM llm_prices WHERE tenant_id = @TenantId AND model = r.model
                      UNION ALL
                      SELECT 1, input_cents_per_mtok, output_cents_per_mtok, cached_cents_per_mtok
                      FROM llm_list_prices WHERE model = r.model) prices
                ORDER BY rank LIMIT 1
            ) p ON true
            ORDER BY r.idempotency_id
            ON CONFLICT (tenant_id, idempotency_id) WHERE idempotency_id IS NOT NULL DO NOTHING
            RETURNING idempotency_id
            """;

        public async Task<Result<Response>> Handle(Command request, CancellationToken ct)
        {
            var rejected = new List<Rejection>();
            var valid = new List<(int Index, UsageRecord Record)>();
            for (var i = 0; i < request.Records.Count; i++)
            {
                var record = request.Records[i];
                if (record is null)
                {
                    rejected.Add(new Rejection(i, null, "validation_failed", new Dictionary<string, string[]> { ["record"] = ["The record is null."] }));
                    continue;
                }
                var checkedRecord = rules.Validate(record);
                if (checkedRecord.IsValid) valid.Add((i, record));
                else rejected.Add(new Rejection(i, record.IdempotencyId, "validation_failed", checkedRecord.Errors
                    .GroupBy(e => e.PropertyName).ToDictionary(g => g.Key, g => g.Select(e => e.ErrorMessage).ToArray())));
            }

            var connection = await session.ConnectionAsync(ct);
            var known = valid.Count == 0 ? [] : (await connection.QueryAsync<KnownIntegration>(new CommandDefinition(IntegrationsSql, new
            {
                session.TenantId,
                Ids = valid.Where(v => v.Record.IntegrationId is not null).Select(v => v.Record.IntegrationId!.Value).Distinct().ToArray(),
                Names = valid.Where(v => v.Record.Integration is not null).Select(v => v.Record.Integration!).Distinct().ToArray(),
            }, cancellationToken: ct))).AsList();

            var rows = new List<Row>();
            var seen = new HashSet<string>(StringComparer.Ordinal);
            var repeated = 0;
            foreach (var (index, record) in valid)
            {
                KnownIntegration? integration = null;
                if (record.IntegrationId is not null || record.Integration is not null)
                {
                    integration = known.FirstOrDefault(k => (record.IntegrationId is null || k.Id == record.IntegrationId)
                        && (record.Integration is null || k.Name == record.Integration));
                    if (integration is null)
                    {
                        rejected.Add(new Rejection(index, record.IdempotencyId, "integration_not_found", new Dictionary<string, string[]>
                        {
                            [record.IntegrationId is null ? "integration" : "integration_id"] = ["No integration of this tenant has this id or name."],
                        }));
                        continue;
                    }
                }
                if (!seen.Add(record.IdempotencyId!))
                {
                    repeated++;
                    continue;
                }
                var started = record.StartedAt!.Value;
                var finished = record.FinishedAt ?? started;
                rows.Add(new Row(Ids.New(), record.IdempotencyId!, integration?.Id, integration?.Name, record.RunId,
                    record.Endpoint ?? Endpoints[0], record.Model!, integration?.Provider ?? record.Provider!.Trim().ToLowerInvariant(),
                    record.PromptTokens, record.CompletionTokens, record.CachedTokens, record.CostCents, record.Status ?? Statuses[0],
                    record.ErrorCode, record.LatencyMs ?? (finished - started).TotalMilliseconds, started.UtcDateTime, finished.UtcDateTime));
            }

            var stored = rows.Count == 0 ? 0 : (await connection.QueryAsync<string>(new CommandDefinition(InsertSql, new
            {
                session.TenantId,
                ApiKeyId = Infrastructure.Security.ApiKeys.KeyIdOf(caller.Required.Actor),
                Caller = caller.Required.Actor,
                Records = JsonSerializer.Serialize(rows, RowJson),
            }, cancellationToken: ct))).Count();

            var response = new Response(request.Records.Count, stored, rows.Count - stored + repeated, rejected.OrderBy(r => r.Index).ToList());
            audit.Record("llm_usage", Source, new { response.Received, response.Stored, response.Duplicates, Rejected = rejected.Count });
            return response;
        }
    }

    private sealed record Row(
        Guid Id, string IdempotencyId, Guid? IntegrationId, string? IntegrationName, string? RunId, string Endpoint, string Model,
        string Provider, long PromptTokens, long CompletionTokens, long CachedTokens, decimal? CostCents, string Status,
        string? ErrorCode, double LatencyMs, DateTime StartedAt, DateTime FinishedAt);

    private static readonly JsonSerializerOptions RowJson = new() { PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower };

    internal static void Map(RouteGroupBuilder group) =>
        group.MapPost("/llm-usage", async (Command command, IMediator mediator, HttpContext http) =>
                (await mediator.Send(command, http.RequestAborted)).ToHttp(http))
            .WithName(Command.Operation)
            .WithRequestExample(new Command([
                new UsageRecord("job-4711-call-1", "gpt-4o", new DateTimeOffset(2026, 11, 30, 9, 15, 0, TimeSpan.Zero), Integration: "openai-prod",
                    PromptTokens: 1200, CompletionTokens: 340, FinishedAt: new DateTimeOffset(2026, 11, 30, 9, 15, 2, TimeSpan.Zero), RunId: "run-42"),
                new UsageRecord("job-4711-call-2", "claude-haiku-4-5", new DateTimeOffset(2026, 11, 30, 9, 16, 0, TimeSpan.Zero), Provider: "anthropic",
                    PromptTokens: 800, CompletionTokens: 120, CostCents: 0.14m, LatencyMs: 950, RunId: "run-42"),
            ]))
            .WithSummary($"Report LLM usage made outside the gateway (scope integrations:write): 1 to {MaxRecords} records; bad records are reported by index, the good ones kept; a repeated idempotency_id counts once.")
            .Produces<Response>()
            .ProducesValidationProblem()
            .ProducesProblem(StatusCodes.Status403Forbidden);
}
