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

    /// <param name="Prefix">The start of the key (<c>ik_&lt;id&gt;</c>), enough to recognise it, useless to use it.</param>
    /// <param name="Status"><c>active</c>, <c>expired</c> or <c>revoked</c>.</param>
    public sealed record Response(
        Guid Id, string Name, string Prefix, [OneOf(typeof(Common.Scopes), nameof(Common.Scopes.All))] IReadOnlyList<string> Scopes,
        [OneOf(typeof(ApiKey), nameof(Statuses))] string Status,
        DateTimeOffset CreatedAt, DateTimeOffset? ExpiresAt, DateTimeOffset? LastUsedAt, DateTimeOffset? RevokedAt);

    internal const string Columns = "id, name, scopes, created_at, expires_at, last_used_at, revoked_at";

    internal sealed class Row
    {
        public Guid Id { get; init; }
        public required string Name { get; init; }
        public required string[] Scopes { get; init; }
        public DateTimeOffset CreatedAt { get; init; }
        public DateTimeOffset? ExpiresAt { get; init; }
        public DateTimeOffset? LastUsedAt { get; init; }
        public DateTimeOffset? RevokedAt { get; init; }

        public Response ToResponse(DateTimeOffset now, DateTimeOffset? pendingUse = null)
        {
            var lastUsed = pendingUse is { } pending && (LastUsedAt is null || pending > LastUsedAt) ? pending : LastUsedAt;
            var status = RevokedAt is not null ? Revoked : ExpiresAt <= now ? Expired : Active;
            return new Response(Id, Name, MintedApiKey.PrefixOf(Id), Scopes, status, CreatedAt, ExpiresAt, lastUsed, RevokedAt);
        }
    }
}
