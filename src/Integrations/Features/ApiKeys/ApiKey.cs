using Integrations.Infrastructure.Security;

namespace Integrations.Features.ApiKeys;

/// <summary>An API key as its tenant sees it: never the secret, nor its hash.</summary>
public static class ApiKey
{
    public const string SubjectType = "api_key";

    public const string Active = "active";
    public const string Expired = "expired";
    public const string Revoked = "revoked";

    /// <param name="Prefix">The start of the key (<c>ik_&lt;id&gt;</c>), enough to recognise it, useless to use it.</param>
    /// <param name="Status"><c>active</c>, <c>expired</c> or <c>revoked</c>.</param>
    public sealed record Response(
        Guid Id, string Name, string Prefix, IReadOnlyList<string> Scopes, string Status,
        DateTimeOffset CreatedAt, DateTimeOffset? ExpiresAt, DateTimeOffset? LastUsedAt, DateTimeOffset? RevokedAt);

    internal const string Columns = "id, name, scopes, created_at, expires_at, last_used_at, revoked_at";

    internal sealed class Row
    {
        public Guid Id { get; init; }
        public required string Name { get; init; }
        public required string[] Scopes { get; init; }
        public DateTime CreatedAt { get; init; }
        public DateTime? ExpiresAt { get; init; }
        public DateTime? LastUsedAt { get; init; }
        public DateTime? RevokedAt { get; init; }

        public Response ToResponse(DateTime now, DateTime? pendingUse = null)
        {
            var lastUsed = pendingUse is { } pending && (LastUsedAt is null || pending > Utc(LastUsedAt.Value)) ? pending : LastUsedAt;
            var status = RevokedAt is not null ? Revoked : ExpiresAt is { } expires && Utc(expires) <= now ? Expired : Active;
            return new Response(Id, Name, MintedApiKey.PrefixOf(Id), Scopes, status, At(CreatedAt), At(ExpiresAt), At(lastUsed), At(RevokedAt));
        }
    }

    private static DateTime Utc(DateTime value) => DateTime.SpecifyKind(value, DateTimeKind.Utc);

    private static DateTimeOffset At(DateTime value) => new(Utc(value));

    private static DateTimeOffset? At(DateTime? value) => value is { } v ? At(v) : null;
}
