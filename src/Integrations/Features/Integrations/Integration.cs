using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Infrastructure.Network;
using Integrations.Infrastructure.Vault;

namespace Integrations.Features.Integrations;

/// <summary>What the integrations.* slices share: the shape they answer with, the row they read, and the field rules.</summary>
public static class Integration
{
    public const string SubjectType = "integration";

    public static readonly string[] Providers = ["openai", "anthropic", "azure_openai", "google", "openai_compatible"];
    public static readonly string[] Statuses = ["created", "enabled", "disabled", "error"];
    public static readonly string[] Healths = ["unknown", "healthy", "degraded", "failing"];

    /// <summary>created → enabled ⇄ disabled; an integration in <c>error</c> may be enabled again or disabled.</summary>
    internal static readonly StatusTransition Enabling = new(SubjectType, ["created", "disabled", "error"], "enabled", "enabled");

    internal static readonly StatusTransition Disabling = new(SubjectType, ["enabled", "error"], "disabled", "disabled");

    private const string MoveSql = $"""
        UPDATE cus_integrations SET status = @To, updated_at = now()
        WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL AND status = ANY(@From)
        RETURNING {Columns}
        """;

    private const string StatusSql = "SELECT status FROM cus_integrations WHERE tenant_id = @TenantId AND id = @Id AND deleted_at IS NULL";

    internal static async Task<Result<Response>> MoveAsync(
        TenantSession session, AuditTrail audit, StatusTransition transition, Guid id, CancellationToken ct)
    {
        var moved = await transition.RunAsync<Row>(session, id, MoveSql, StatusSql, null, ct);
        if (!moved.IsSuccess) return moved.Error!;
        audit.Record(SubjectType, id.ToString(), new { Status = transition.To, AllowedFrom = transition.From });
        return moved.Value.ToResponse();
    }

    public sealed record Limits(int? RequestsPerMinute = null, long? TokensPerMonth = null, long? BudgetCentsPerMonth = null);

    public sealed record Response(
        Guid Id,
        string Name,
        [OneOf(typeof(Integration), nameof(Integration.Providers))] string Provider,
        string? BaseUrl,
        string? CredentialRef,
        [OneOf(typeof(Integration), nameof(Integration.Statuses))] string Status,
        [OneOf(typeof(Integration), nameof(Integration.Healths))] string Health,
        DateTimeOffset? HealthCheckedAt,
        string? HealthMessage,
        Limits Limits,
        IReadOnlyList<string> AllowedModels,
        DateTimeOffset CreatedAt,
        DateTimeOffset UpdatedAt,
        IReadOnlyList<string> Fallbacks);

    internal const string Columns = """
        id, name, provider, base_url, credential_ref, status, health, health_checked_at, health_message,
        requests_per_minute, tokens_per_month, budget_cents_per_month, allowed_models, created_at, updated_at, fallbacks
        """;

    /// <summary>A class rather than a positional record: Dapper maps text[] columns onto properties, not constructor parameters.</summary>
    internal sealed class Row
    {
        public Guid Id { get; init; }
        public required string Name { get; init; }
        public required string Provider { get; init; }
        public string? BaseUrl { get; init; }
        public string? CredentialRef { get; init; }
        public required string Status { get; init; }
        public required string Health { get; init; }
        public DateTimeOffset? HealthCheckedAt { get; init; }
        public string? HealthMessage { get; init; }
        public int? RequestsPerMinute { get; init; }
        public long? TokensPerMonth { get; init; }
        public long? BudgetCentsPerMonth { get; init; }
        public string[] AllowedModels { get; init; } = [];
        public DateTimeOffset CreatedAt { get; init; }
        public DateTimeOffset UpdatedAt { get; init; }
        public string[] Fallbacks { get; init; } = [];

        public Response ToResponse() => new(
            Id, Name, Provider, BaseUrl, CredentialRef, Status, Health, HealthCheckedAt, HealthMessage,
            new Limits(RequestsPerMinute, TokensPerMonth, BudgetCentsPerMonth), AllowedModels, CreatedAt, UpdatedAt, Fallbacks);
    }

    internal static IRuleBuilderOptions<T, string?> ValidName<T>(this IRuleBuilder<T, string?> rule) =>
        rule.NotEmpty().WithMessage("Name is required.")
            .MaximumLength(200).WithMessage("Name may be at most 200 characters.")
            .Must(n => n is null || n.Trim() == n).WithMessage("Name may not start or end with whitespace.");

    internal static IRuleBuilderOptions<T, string?> ValidBaseUrl<T>(this IRuleBuilder<T, string?> rule, EgressAllowList allowList) =>
        rule.Must(url => IsAcceptableBaseUrl(url, allowList))
            .WithMessage("Base URL must be an absolute https URL (http only for hosts on the egress allow-list), without user info or fragment.");

    internal static IRuleBuilderOptions<T, string?> ValidCredentialRef<T>(this IRuleBuilder<T, string?> rule, Func<string> tenantId) =>
        rule.Must((owner, value, context) =>
        {
            if (CredentialReference.TryParse(value, tenantId(), systemScope: false, out _, out var error)) return true;
            context.MessageFormatter.AppendArgument("Reason", error);
            return false;
        }).WithMessage("{Reason}");

    // One model-level rule rather than RuleFor(x => limits(x)!.RequestsPerMinute): FluentValidation caches the
    // compiled accessor of a plain member chain (or of x => x) but compiles any other expression again each time a
    // validator is constructed, and validators are constructed per request. Those three compilations were the
    // largest CPU cost of integrations.create under load (bench/README.md, benchmark 2).
    internal static void ValidLimits<T>(this AbstractValidator<T> validator, Func<T, Limits?> limits) =>
        validator.RuleFor(x => x).Custom((x, context) =>
        {
            if (limits(x) is not { } value) return;
            if (value.RequestsPerMinute < 0) context.AddFailure("Limits.RequestsPerMinute", "Requests per minute must be zero or more.");
            if (value.TokensPerMonth < 0) context.AddFailure("Limits.TokensPerMonth", "Tokens per month must be zero or more.");
            if (value.BudgetCentsPerMonth < 0) context.AddFailure("Limits.BudgetCentsPerMonth", "Budget cents per month must be zero or more.");
        });

    internal static IRuleBuilderOptions<T, IReadOnlyList<string>?> ValidModels<T>(this IRuleBuilder<T, IReadOnlyList<string>?> rule) =>
        rule.Must(models => models is null || (models.Count <= 100 && models.All(m => !string.IsNullOrWhiteSpace(m) && m.Length <= 200)))
            .WithMessage("Allowed models: at most 100 names of 1-200 characters each.");

    /// <summary>
    /// Fallbacks: at most 5 entries, each <c>&lt;integration name&gt;</c> (the same model) or <c>&lt;integration
    /// name&gt;/&lt;model&gt;</c>, never the integration itself. Whether the named integration exists is decided when
    /// it is needed (it may be created, renamed or deleted in between): a fallback that is not there is skipped as denied.
    /// </summary>
    internal static IRuleBuilderOptions<T, IReadOnlyList<string>?> ValidFallbacks<T>(this IRuleBuilder<T, IReadOnlyList<string>?> rule, Func<T, string?> ownName) =>
        rule.Must((owner, fallbacks) => fallbacks is null || (fallbacks.Count <= 5 && fallbacks.All(f =>
                !string.IsNullOrWhiteSpace(f) && f.Length <= 400 && f.Trim() == f && !f.StartsWith('/') && !f.EndsWith('/')
                && (ownName(owner) is not { } name || (f != name && !f.StartsWith(name + "/", StringComparison.Ordinal))))))
            .WithMessage("Fallbacks: at most 5 entries, each '<integration name>' or '<integration name>/<model>', other than this integration.");

    private static bool IsAcceptableBaseUrl(string? url, EgressAllowList allowList)
    {
        if (url is null) return true;
        if (EgressUrl.Problem(url) is not null) return false;
        var uri = new Uri(url);
        return uri.Scheme == Uri.UriSchemeHttps || (uri.Scheme == Uri.UriSchemeHttp && allowList.AllowsPlaintext(uri.IdnHost));
    }
}
