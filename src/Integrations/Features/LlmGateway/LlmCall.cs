using Dapper;
using Integrations.Common;
using Integrations.Features.Incidents;
using Integrations.Features.Integrations;
using Integrations.Features.Policies;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Vault;
using Integrations.Pipeline.Governance;
using Npgsql;
using NpgsqlTypes;

namespace Integrations.Features.LlmGateway;

/// <summary>
/// An LLM request through the gateway as a kind of governed call. The target is the integration the model routes to
/// (<c>&lt;integration&gt;/&lt;model&gt;</c>, a plain model through the integrations whose <c>allowed_models</c> list it,
/// or the integration the pin header names), read together with its month's recorded usage and the model's price. The
/// rules: a model that routes to several integrations (400 naming them), the integration enabled, the provider served,
/// the month's token and cent budgets, the model allowed, and <c>requests_per_minute</c>. The credential is the
/// integration's key. Every call, denied ones included, leaves one immutable <c>llm_requests</c> row.
/// </summary>
public sealed class LlmCall : GovernedCallKind<InvokeLlm.Command, LlmCall.Target, InvokeLlm.Response>
{
    public const string EventPrefixName = "llm.request";

    /// <summary>Providers the gateway forwards to: the OpenAI-style ones at chat completions and embeddings, anthropic at messages.</summary>
    public static readonly string[] ServedProviders = ["openai", "openai_compatible", "azure_openai", "google", "anthropic"];

    /// <summary>Errors that are the provider's fault, not the caller's: they open or bump the integration's incident.</summary>
    private static readonly HashSet<string> ProviderFailures =
        ["upstream_error", "upstream_unreachable", "upstream_timeout", "upstream_auth_failed", "ssrf_blocked"];

    /// <summary>The failures an integration's fallbacks are tried after: the provider's, and its own rate limit.</summary>
    private static readonly HashSet<string> FallbackFailures = [.. ProviderFailures, "upstream_rate_limited"];

    public sealed class Target : IGovernedTarget
    {
        public Guid Id { get; init; }
        public string Name { get; init; } = "";
        public string Provider { get; init; } = "";
        public string? BaseUrl { get; init; }
        public string? CredentialRef { get; init; }
        public string Status { get; init; } = "";
        public int? RequestsPerMinute { get; init; }
        public long? TokensPerMonth { get; init; }
        public long? BudgetCentsPerMonth { get; init; }
        public string[] AllowedModels { get; init; } = [];
        public string[] Fallbacks { get; init; } = [];
        public bool ByName { get; init; }

        /// <summary>The model as the provider is asked for it: the request's, without the integration's name.</summary>
        public string UpstreamModel { get; init; } = "";

        public long TokensThisMonth { get; init; }
        public decimal CentsThisMonth { get; init; }
        public decimal? InputPrice { get; init; }
        public decimal? OutputPrice { get; init; }
        public decimal? CachedPrice { get; init; }

        /// <summary>The calling key's own limits (null: none) and its month so far, across integrations.</summary>
        public Guid? KeyId { get; init; }
        public int? KeyRequestsPerMinute { get; init; }
        public long? KeyTokensPerMonth { get; init; }
        public long? KeyBudgetCentsPerMonth { get; init; }
        public string[] KeyAllowedModels { get; init; } = [];
        public long KeyTokensThisMonth { get; init; }
        public decimal KeyCentsThisMonth { get; init; }

        /// <summary>Set when a plain model routes to more than one integration: their names; the call is refused.</summary>
        public IReadOnlyList<string>? Candidates { get; init; }

        public string SubjectId => Candidates is null ? Id.ToString() : UpstreamModel;
        public CredentialAccessor CredentialAccessor => new(CredentialAccessor.Integration, Id);
        string? IGovernedTarget.CredentialRef => Candidates is null ? CredentialRef : null;

        /// <summary>US cents for the tokens at this model's price; null, not known, when the model has no price.</summary>
        public decimal? CostCents(long prompt, long completion, long cached) =>
            InputPrice is null && OutputPrice is null
                ? null
                : ((prompt - cached) * (InputPrice ?? 0) + cached * (CachedPrice ?? InputPrice ?? 0) + completion * (OutputPrice ?? 0)) / 1_000_000m;
    }

    // The candidates for a model: with a pin, the pinned integration; otherwise the one named by the model's prefix and
    // those listing the model. With each, its month's usage so far and the price of the model it would be asked for.
    private const string TargetSql = """
        SELECT c.*, COALESCE(u.tokens, 0) AS tokens_this_month, COALESCE(u.cost_cents, 0) AS cents_this_month,
               p.input_cents_per_mtok AS input_price, p.output_cents_per_mtok AS output_price, p.cached_cents_per_mtok AS cached_price,
               k.id AS key_id, k.requests_per_minute AS key_requests_per_minute, k.tokens_per_month AS key_tokens_per_month,
               k.budget_cents_per_month AS key_budget_cents_per_month, COALESCE(k.allowed_models, '{}') AS key_allowed_models,
               COALESCE(ku.tokens, 0) AS key_tokens_this_month, COALESCE(ku.cost_cents, 0) AS key_cents_this_month
        FROM (
            SELECT i.id, i.name, i.provider, i.base_url, i.credential_ref, i.status, i.requests_per_minute, i.tokens_per_month,
                   i.budget_cents_per_month, i.allowed_models, i.fallbacks, COALESCE(i.name = @Prefix, false) AS by_name,
                   CASE WHEN i.name = @Prefix THEN @Rest ELSE @Model END AS upstream_model
            FROM cus_integrations i
            WHERE i.tenant_id = @TenantId AND i.deleted_at IS NULL
              AND CASE WHEN @Pin::text IS NOT NULL THEN i.name = @Pin OR i.id::text = @Pin
                       ELSE COALESCE(i.name = @Prefix, false) OR @Model = ANY(i.allowed_models) END
        ) c
        LEFT JOIN llm_usage_months u
               ON u.tenant_id = @TenantId AND u.integration_id = c.id AND u.month = date_trunc('month', now() AT TIME ZONE 'UTC')::date
        LEFT JOIN LATERAL (
            SELECT input_cents_per_mtok, output_cents_per_mtok, cached_cents_per_mtok
            FROM (SELECT 0 AS rank, input_cents_per_mtok, output_cents_per_mtok, cached_cents_per_mtok
                  FROM llm_prices WHERE tenant_id = @TenantId AND model = c.upstream_model
                  UNION ALL
                  SELECT 1, input_cents_per_mtok, output_cents_per_mtok, cached_cents_per_mtok
                  FROM llm_list_prices WHERE model = c.upstream_model) prices
            ORDER BY rank LIMIT 1
        ) p ON true
        LEFT JOIN api_keys k ON k.tenant_id = @TenantId AND k.id = @KeyId
        LEFT JOIN llm_key_usage_months ku
               ON ku.tenant_id = @TenantId AND ku.api_key_id = @KeyId AND ku.month = date_trunc('month', now() AT TIME ZONE 'UTC')::date
        ORDER BY c.name
        """;

    private const string RecordSql = """
        INSERT INTO llm_requests (id, tenant_id, integration_id, integration_name, api_key_id, caller, run_id, endpoint, requested_model,
            served_model, provider, streaming, prompt_tokens, completion_tokens, cached_tokens, tokens_estimated, cost_cents, status,
            error_code, error, upstream_status, latency_ms, first_token_ms, attempts, incident_id, started_at, finished_at, fallback_of)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23, $24, $25, $26, $27, $28)
        """;

    public override string EventPrefix => EventPrefixName;
    public override string SubjectType => Integration.SubjectType;
    public override string TargetName => "model (no integration of this tenant serves it; use '<integration>/<model>' or list it in allowed_models)";

    public override string SubjectOf(InvokeLlm.Command request) => request.Model;

    public override async Task<Target?> FindAsync(NpgsqlConnection connection, string tenantId, InvokeLlm.Command request, CancellationToken ct)
    {
        var slash = request.Model.IndexOf('/');
        var rows = (await connection.QueryAsync<Target>(new CommandDefinition(TargetSql, new
        {
            TenantId = tenantId,
            request.Model,
            Prefix = slash > 0 ? request.Model[..slash] : null,
            Rest = slash > 0 ? request.Model[(slash + 1)..] : null,
            Pin = request.Integration,
            KeyId = request.ApiKeyId,
        }, cancellationToken: ct))).AsList();
        if (rows.Count == 0) return null;
        if (request.Integration is not null) return rows.FirstOrDefault(r => r.Name == request.Integration) ?? rows[0];
        if (rows.FirstOrDefault(r => r.ByName) is { } named) return named;

        var enabled = rows.Where(r => r.Status == "enabled").ToList();
        if (enabled.Count == 1) return enabled[0];
        if (rows.Count == 1) return rows[0];
        var ambiguous = enabled.Count > 1 ? enabled : rows;
        return new Target { UpstreamModel = request.Model, Candidates = ambiguous.ConvertAll(r => r.Name) };
    }

    public override CallDenial? CheckState(Target target)
    {
        if (target.Candidates is { } names)
        {
            return new CallDenial("model_ambiguous", new Error("model_ambiguous", 400, "Model is ambiguous.",
                $"The model '{target.UpstreamModel}' is served by several integrations: {string.Join(", ", names)}. " +
                $"Ask for '<integration>/{target.UpstreamModel}' or pin one with the {InvokeLlm.IntegrationHeader} header.",
                Extensions: new Dictionary<string, object?> { ["candidates"] = names }));
        }
        if (target.Status != "enabled")
        {
            return CallDenial.Policy("integration_disabled", $"The integration '{target.Name}' is {target.Status}, not enabled.");
        }
        if (!ServedProviders.Contains(target.Provider))
        {
            return new CallDenial("provider_not_served", new Error("provider_not_served", 400, "Provider not served.",
                $"The gateway does not serve '{target.Provider}' integrations at /v1 yet; served: {string.Join(", ", ServedProviders)}."));
        }
        var resetAt = NextMonth(DateTimeOffset.UtcNow);
        if (target.TokensPerMonth is { } tokens && target.TokensThisMonth >= tokens)
        {
            return new CallDenial("token_limit_exceeded", LimitReached("token_limit_exceeded", "Token limit exceeded.",
                $"The integration '{target.Name}' has used {target.TokensThisMonth} of its {tokens} tokens this month.", resetAt));
        }
        if (target.BudgetCentsPerMonth is { } cents && target.CentsThisMonth >= cents)
        {
            return new CallDenial("budget_exceeded", LimitReached("budget_exceeded", "Budget exceeded.",
                $"The integration '{target.Name}' has spent {target.CentsThisMonth:0.####} of its {cents} cents this month.", resetAt));
        }
        // The key's own limits hold beside the integration's: whichever is reached first refuses.
        if (target.KeyTokensPerMonth is { } keyTokens && target.KeyTokensThisMonth >= keyTokens)
        {
            return new CallDenial("key_token_limit_exceeded", LimitReached("key_token_limit_exceeded", "Token limit of the API key exceeded.",
                $"This API key has used {target.KeyTokensThisMonth} of its {keyTokens} tokens this month.", resetAt));
        }
        if (target.KeyBudgetCentsPerMonth is { } keyCents && target.KeyCentsThisMonth >= keyCents)
        {
            return new CallDenial("key_budget_exceeded", LimitReached("key_budget_exceeded", "Budget of the API key exceeded.",
                $"This API key has spent {target.KeyCentsThisMonth:0.####} of its {keyCents} cents this month.", resetAt));
        }
        return null;
    }

    public override PolicySubject PolicySubjectOf(Target target) => new(target.Name, target.Id, target.UpstreamModel, "low");

    // Chat completions reach every provider (an anthropic one through the translation); embeddings only the OpenAI-style
    // ones; Anthropic's Messages API only anthropic ones.
    public override ValueTask<CallDenial?> CheckInputAsync(InvokeLlm.Command request, Target target) =>
        ValueTask.FromResult(request.Endpoint != InvokeLlm.ChatCompletions && (target.Provider == "anthropic") != (request.Endpoint == InvokeLlm.Messages)
            ? new CallDenial("endpoint_not_served", new Error("endpoint_not_served", 400, "Endpoint not served by this provider.",
                target.Provider == "anthropic"
                    ? $"The integration '{target.Name}' is an anthropic one: call it at /v1/chat/completions or /v1/messages (Anthropic's Messages API)."
                    : $"The integration '{target.Name}' is an {target.Provider} one: call it at /v1/chat/completions or /v1/embeddings."))
            : target.AllowedModels.Length > 0 && !target.AllowedModels.Contains(target.UpstreamModel)
            ? CallDenial.Policy("model_not_allowed", $"The integration '{target.Name}' does not allow the model '{target.UpstreamModel}'.")
            : target.KeyAllowedModels.Length > 0 && !target.KeyAllowedModels.Contains(target.UpstreamModel)
                && !target.KeyAllowedModels.Contains($"{target.Name}/{target.UpstreamModel}")
            ? CallDenial.Policy("model_not_allowed_for_key", $"This API key does not allow the model '{target.UpstreamModel}'.")
            : null);

    public override IEnumerable<TargetRateLimit> RateLimitsOf(Target target, ToolPolicy policy)
    {
        if (target.RequestsPerMinute is { } perMinute)
        {
            yield return new TargetRateLimit($"llm:{target.Id}", perMinute, "llm_rate_limit", $"The integration '{target.Name}' allows {perMinute} requests per minute.");
        }
        if (target.KeyRequestsPerMinute is { } keyPerMinute && target.KeyId is { } keyId)
        {
            yield return new TargetRateLimit($"llm-key:{keyId}", keyPerMinute, "key_rate_limit", $"This API key allows {keyPerMinute} LLM requests per minute.");
        }
    }

    public override Error? CheckCredential(Target target, ResolvedCredential credential) =>
        credential.Token is { Length: > 0 }
            ? null
            : new Error("credential_unusable", 422, "Credential not usable.", $"The credential of '{target.Name}' (type {credential.Type}) carries no API key or token.");

    public override void AddFacts(InvokeLlm.Command request, Target? target, IDictionary<string, object?> facts)
    {
        facts["endpoint"] = request.Endpoint;
        facts["requested_model"] = request.Model;
        facts["streaming"] = request.Streaming;
        facts["run_id"] = request.RunId;
        if (request.Fallback is { } step) facts["fallback_of"] = step.Of;
        if (target is { Candidates: null })
        {
            facts["integration_id"] = target.Id;
            facts["integration"] = target.Name;
            facts["provider"] = target.Provider;
            facts["model"] = target.UpstreamModel;
        }
    }

    public override void AddRecord(NpgsqlBatch batch, CallRecord<InvokeLlm.Command, Target> record)
    {
        var call = record.Call;
        var observed = call.Output?.Facts ?? new Dictionary<string, object?>();
        T Observed<T>(string key, T fallback) => observed.TryGetValue(key, out var value) && value is T typed ? typed : fallback;
        var routed = record.Target.Candidates is null;
        batch.BatchCommands.Add(PositionalCommand.Of(RecordSql, call.Id, call.Caller.TenantId,
            PositionalCommand.Uuid(routed ? record.Target.Id : null), PositionalCommand.Text(routed ? record.Target.Name : null),
            PositionalCommand.Uuid(Infrastructure.Security.ApiKeys.KeyIdOf(call.Caller.Actor)), call.Caller.Actor, PositionalCommand.Text(record.Request.RunId),
            record.Request.Endpoint, record.Request.Model, PositionalCommand.Text(Observed<string?>(LlmFacts.ServedModel, null)),
            PositionalCommand.Text(routed ? record.Target.Provider : null), record.Request.Streaming,
            Observed(LlmFacts.PromptTokens, 0L), Observed(LlmFacts.CompletionTokens, 0L), Observed(LlmFacts.CachedTokens, 0L),
            Observed(LlmFacts.TokensEstimated, false),
            // A call that reported nothing consumed nothing (0); one that did reports null for a model with no price.
            Nullable(NpgsqlDbType.Numeric, observed.TryGetValue(LlmFacts.CostCents, out var cost) ? cost : 0m), record.Outcome,
            PositionalCommand.Text(record.ErrorCode), PositionalCommand.Text(record.Error is { Length: > 2000 } e ? e[..2000] : record.Error),
            Nullable(NpgsqlDbType.Integer, observed.GetValueOrDefault(LlmFacts.UpstreamStatus)), record.DurationMs,
            Nullable(NpgsqlDbType.Double, observed.GetValueOrDefault(LlmFacts.FirstTokenMs)), Observed(LlmFacts.Attempts, 0),
            PositionalCommand.Uuid(record.IncidentId), call.StartedAt, DateTime.UtcNow, PositionalCommand.Uuid(record.Request.Fallback?.Of)));
    }

    /// <summary>
    /// The integration's fallbacks, in order, after a failure of its provider (or its 429) before the first byte reached
    /// the client; each next one after any end of the one before (denied, not found or failed), while the client has
    /// still received nothing. Each is asked for the model its entry names, or the same model; only the first
    /// integration's list is followed.
    /// </summary>
    public override InvokeLlm.Command? FallbackFor(InvokeLlm.Command request, Target? target, Error error, Guid invocationId)
    {
        if (request.Stream is { Started: true }) return null;
        IReadOnlyList<string> remaining;
        string model;
        if (request.Fallback is { } step)
        {
            (remaining, model) = (step.Remaining, step.FirstModel);
        }
        else
        {
            if (target is not { Candidates: null } || !FallbackFailures.Contains(error.Code)) return null;
            (remaining, model) = (target.Fallbacks, target.UpstreamModel);
        }
        if (remaining.Count == 0) return null;
        var entry = remaining[0];
        var slash = entry.IndexOf('/');
        return request with
        {
            Integration = slash > 0 ? entry[..slash] : entry,
            Fallback = new InvokeLlm.FallbackStep(request.Fallback?.Of ?? invocationId, model, slash > 0 ? entry[(slash + 1)..] : model, remaining.Skip(1).ToArray()),
        };
    }

    public override IncidentReport? IncidentFor(CallRecord<InvokeLlm.Command, Target> record) =>
        record.ErrorCode is { } code && ProviderFailures.Contains(code) && record.Target.Candidates is null
            ? new IncidentReport("llm_failure", record.Outcome == CallOutcomes.Timeout ? "medium" : "high", Integration.SubjectType,
                record.Target.Id.ToString(), $"llm_failure:{record.Target.Id}", $"{record.Target.Name}: {record.Error}")
            : null;

    /// <summary>The first instant of the next UTC month, when the month's budgets start again.</summary>
    public static DateTimeOffset NextMonth(DateTimeOffset now) => new DateTimeOffset(now.Year, now.Month, 1, 0, 0, 0, TimeSpan.Zero).AddMonths(1);

    private static Error LimitReached(string code, string title, string detail, DateTimeOffset resetAt) =>
        new(code, 429, title, $"{detail} It resets at {resetAt:yyyy-MM-ddTHH:mm:ssZ}.", Extensions: new Dictionary<string, object?>
        {
            ["retry_after_seconds"] = (int)Math.Ceiling((resetAt - DateTimeOffset.UtcNow).TotalSeconds),
            ["reset_at"] = resetAt,
        });

    private static NpgsqlParameter Nullable(NpgsqlDbType type, object? value) => new() { NpgsqlDbType = type, Value = value ?? DBNull.Value };
}

/// <summary>The names of what an LLM call observed (<see cref="CallOutput.Facts"/>): its outcome event's details and its usage row's columns.</summary>
public static class LlmFacts
{
    public const string ServedModel = "served_model";
    public const string PromptTokens = "prompt_tokens";
    public const string CompletionTokens = "completion_tokens";
    public const string CachedTokens = "cached_tokens";
    public const string TokensEstimated = "tokens_estimated";
    public const string CostCents = "cost_cents";
    public const string UpstreamStatus = "upstream_status";
    public const string FirstTokenMs = "first_token_ms";
    public const string Attempts = "attempts";
}
