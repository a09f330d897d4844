using FluentValidation;
using Integrations.Common;
using Integrations.Infrastructure.Security;

namespace Integrations.Features.ApiKeys;

/// <summary>An API key as its tenant sees it: never the secret, nor its hash.</summary>
public static class ApiKey
{
    public const string SubjectType = "api_key";

    public const string Active = "active";
    public const string Expired = "expired";
    public const string Revoked = "revoked";

    public static readonly string[] Statuses = [Active, Expired, Revoked];

    /// <summary>
    /// What the LLM gateway lets this key spend (LiteLLM's "virtual keys"), beside the integration's own limits: both
    /// hold, so the stricter wins. Null: no limit of the key's own. Months are UTC calendar months.
    /// </summary>
    public sealed record Limits(int? RequestsPerMinute = null, long? TokensPerMonth = null, long? BudgetCentsPerMonth = null);

    /// <param name="Prefix">The start of the key (<c>ik_&lt;id&gt;</c>), enough to recognise it, useless to use it.</param>
    /// <param name="Status"><c>active</c>, <c>expired</c> or <c>revoked</c>.</param>
    public sealed record Response(
        Guid Id, string Name, string Prefix, [OneOf(typeof(Common.Scopes), nameof(Common.Scopes.All))] IReadOnlyList<string> Scopes,
        [OneOf(typeof(ApiKey), nameof(Statuses))] string Status,
        DateTimeOffset CreatedAt, DateTimeOffset? ExpiresAt, DateTimeOffset? LastUsedAt, DateTimeOffset? RevokedAt,
        Limits Limits, IReadOnlyList<string> AllowedModels);

    internal const string Columns =
        "id, name, scopes, created_at, expires_at, last_used_at, revoked_at, requests_per_minute, tokens_per_month, budget_cents_per_month, allowed_models";

    // One model-level rule (see Integration.ValidLimits for why not a member chain per limit).
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

    internal sealed class Row
    {
        public Guid Id { get; init; }
        public required string Name { get; init; }
        public required string[] Scopes { get; init; }
        public DateTimeOffset CreatedAt { get; init; }
        public DateTimeOffset? ExpiresAt { get; init; }
        public DateTimeOffset? LastUsedAt { get; init; }
        public DateTimeOffset? RevokedAt { get; init; }
        public int? RequestsPerMinute { get; init; }
        public long? TokensPerMonth { get; init; }
        public long? BudgetCentsPerMonth { get; init; }
        public string[] AllowedModels { get; init; } = [];

        public Response ToResponse(DateTimeOffset now, DateTimeOffset? pendingUse = null)
        {
            var lastUsed = pendingUse is { } pending && (LastUsedAt is null || pending > LastUsedAt) ? pending : LastUsedAt;
            var status = RevokedAt is not null ? Revoked : ExpiresAt <= now ? Expired : Active;
            return new Response(Id, Name, MintedApiKey.PrefixOf(Id), Scopes, status, CreatedAt, ExpiresAt, lastUsed, RevokedAt,
                new Limits(RequestsPerMinute, TokensPerMonth, BudgetCentsPerMonth), AllowedModels);
        }
    }
}
