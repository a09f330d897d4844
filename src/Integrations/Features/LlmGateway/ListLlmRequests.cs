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

namespace Integrations.Features.LlmGateway;

/// <summary>llm_requests.list: the tenant's LLM usage rows, newest first, with filters and keyset pages. Rows hold counts, never text.</summary>
public static class ListLlmRequests
{
    public static readonly string[] Statuses = ["completed", "failed", "timeout", "denied"];

    public sealed record Query(
        Guid? IntegrationId = null,
        string? Status = null,
        string? Model = null,
        string? RunId = null,
        Guid? ApiKeyId = null,
        DateTimeOffset? From = null,
        DateTimeOffset? To = null,
        int Limit = 50,
        string? Cursor = null) : IOperation<Page<LlmRequest>>
    {
        public static string Operation => "llm_requests.list";
        public static string Scope => Scopes.Read;
    }

    public sealed record LlmRequest(
        Guid Id, Guid? IntegrationId, string? IntegrationName, Guid? ApiKeyId, string Caller, string? RunId, string Endpoint,
        string RequestedModel, string? ServedModel, string? Provider, bool Streaming, long PromptTokens, long CompletionTokens,
        long CachedTokens, bool TokensEstimated, decimal? CostCents, string Status, string? ErrorCode, string? Error, int? UpstreamStatus,
        double LatencyMs, double? FirstTokenMs, int Attempts, Guid? IncidentId, DateTimeOffset StartedAt, DateTimeOffset FinishedAt,
        Guid? FallbackOf, [OneOf(typeof(ListLlmRequests), nameof(Sources))] string Source, string? IdempotencyId);

    /// <summary>Where a row came from: the gateway, or telemetry.ingest (usage reported from outside).</summary>
    public static readonly string[] Sources = ["gateway", "telemetry"];

    internal sealed class Validator : AbstractValidator<Query>
    {
        public Validator()
        {
            RuleFor(x => x.Status).Must(s => s is null || Statuses.Contains(s)).WithMessage($"Status must be one of: {string.Join(", ", Statuses)}.");
            RuleFor(x => x.Model).MaximumLength(400);
            RuleFor(x => x.RunId).MaximumLength(200);
            RuleFor(x => x.To).GreaterThan(x => x.From).When(x => x.From is not null && x.To is not null).WithMessage("'to' must be after 'from'.");
            RuleFor(x => x.Limit).PageLimit();
            RuleFor(x => x.Cursor).IdCursor();
        }
    }

    internal sealed class Handler(TenantSession session) : IRequestHandler<Query, Result<Page<LlmRequest>>>
    {
        public async Task<Result<Page<LlmRequest>>> Handle(Query request, CancellationToken ct)
        {
            Cursor.TryDecode(request.Cursor, out Guid after);
            var sql = new StringBuilder("""
                SELECT id, integration_id, integration_name, api_key_id, caller, run_id, endpoint, requested_model, served_model, provider,
                       streaming, prompt_tokens, completion_tokens, cached_tokens, tokens_estimated, cost_cents, status, error_code, error,
                       upstream_status, latency_ms, first_token_ms, attempts, incident_id, started_at, finished_at, fallback_of, source, idempotency_id
                FROM llm_requests WHERE tenant_id = @TenantId
                """);
            if (request.Cursor is not null) sql.Append(" AND id < @After");
            if (request.IntegrationId is not null) sql.Append(" AND integration_id = @IntegrationId");
            if (request.Status is not null) sql.Append(" AND status = @Status");
            if (request.Model is not null) sql.Append(" AND (requested_model = @Model OR served_model = @Model)");
            if (request.RunId is not null) sql.Append(" AND run_id = @RunId");
            if (request.ApiKeyId is not null) sql.Append(" AND api_key_id = @ApiKeyId");
            if (request.From is not null) sql.Append(" AND started_at >= @From");
            if (request.To is not null) sql.Append(" AND started_at < @To");
            sql.Append(" ORDER BY id DESC LIMIT @Take");

            var connection = await session.ConnectionAsync(ct);
            var rows = (await connection.QueryAsync<Row>(new CommandDefinition(sql.ToString(), new
            {
                session.TenantId,
                After = after,
                request.IntegrationId,
                request.Status,
                request.Model,
                request.RunId,
                request.ApiKeyId,
                From = request.From?.UtcDateTime,
                To = request.To?.UtcDateTime,
                Take = request.Limit + 1,
            }, cancellationToken: ct))).AsList();
            return Paging.ToPage(rows, request.Limit, r => r.ToRequest(), r => Cursor.Encode(r.Id));
        }
    }

    private sealed class Row
    {
        public Guid Id { get; init; }
        public Guid? IntegrationId { get; init; }
        public string? IntegrationName { get; init; }
        public Guid? ApiKeyId { get; init; }
        public string Caller { get; init; } = "";
        public string? RunId { get; init; }
        public string Endpoint { get; init; } = "";
        public string RequestedModel { get; init; } = "";
        public string? ServedModel { get; init; }
        public string? Provider { get; init; }
        public bool Streaming { get; init; }
        public long PromptTokens { get; init; }
        public long CompletionTokens { get; init; }
        public long CachedTokens { get; init; }
        public bool TokensEstimated { get; init; }
        public decimal? CostCents { get; init; }
        public string Status { get; init; } = "";
        public string? ErrorCode { get; init; }
        public string? Error { get; init; }
        public int? UpstreamStatus { get; init; }
        public double LatencyMs { get; init; }
        public double? FirstTokenMs { get; init; }
        public int Attempts { get; init; }
        public Guid? IncidentId { get; init; }
        public DateTimeOffset StartedAt { get; init; }
        public DateTimeOffset FinishedAt { get; init; }
        public Guid? FallbackOf { get; init; }
        public string Source { get; init; } = "";
        public string? IdempotencyId { get; init; }

        public LlmRequest ToRequest() => new(Id, IntegrationId, IntegrationName, ApiKeyId, Caller, RunId, Endpoint, RequestedModel, ServedModel,
            Provider, Streaming, PromptTokens, CompletionTokens, CachedTokens, TokensEstimated, CostCents, Status, ErrorCode, Error, UpstreamStatus,
            LatencyMs, FirstTokenMs, Attempts, IncidentId, StartedAt, FinishedAt, FallbackOf, Source, IdempotencyId);
    }

    internal static void Map(RouteGroupBuilder group) =>
        group.MapGet("/", async ([FromQuery(Name = "integration_id")] Guid? integrationId, [FromQuery] string? status, [FromQuery] string? model,
                [FromQuery(Name = "run_id")] string? runId, [FromQuery(Name = "api_key_id")] Guid? apiKeyId, [FromQuery] DateTimeOffset? from,
                [FromQuery] DateTimeOffset? to, [FromQuery] int? limit, [FromQuery] string? cursor, IMediator mediator, HttpContext http) =>
                (await mediator.Send(new Query(integrationId, status, model, runId, apiKeyId, from, to, limit ?? 50, cursor), http.RequestAborted)).ToHttp(http))
            .WithName(Query.Operation)
            .WithSummary("LLM usage rows, newest first: filters integration_id, status, model, run_id, api_key_id and time range; keyset pagination.")
            .Produces<Page<LlmRequest>>()
            .ProducesValidationProblem();
}
