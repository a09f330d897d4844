using System.Buffers.Text;
using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using Dapper;
using Integrations.Common;
using Integrations.Infrastructure.Database;
using Npgsql;

namespace Integrations.Infrastructure.Security;

public sealed record CreatedApiKey(Guid Id, string TenantId, IReadOnlyList<string> Scopes, string Key);

/// <summary>A new key before it is stored: its id, the key as shown once, and the SHA-256 of its secret (all that is kept).</summary>
public sealed record MintedApiKey(Guid Id, string Key, byte[] SecretHash)
{
    /// <summary>The part of a key that names it without revealing it: <c>ik_&lt;id&gt;</c>.</summary>
    public static string PrefixOf(Guid id) => $"ik_{id:N}";
}

/// <summary>Who a presented key stands for, or why it is refused (unknown, revoked, expired) in words a caller can act on.</summary>
public sealed record ApiKeyCheck(Caller? Caller, string? Refusal);

/// <summary>
/// API keys look like <c>ik_&lt;id&gt;_&lt;secret&gt;</c>: the id finds the row, and only the SHA-256 of the
/// 32-byte secret is stored. The key itself exists once, in the answer to <see cref="CreateAsync"/>.
/// Key management is a system operation: it runs as the owner role, outside any tenant's transaction.
/// A key's row is cached for <see cref="CacheFor"/> while the change listener runs (every request presents a key, and
/// reading it was one more round trip per request). A revoked or deleted key's row announces itself on the change
/// channel (a trigger, however the row was changed), every replica drops its copy, and the revoking replica drops its
/// own at once; while the listener is down, every lookup reads through.
/// </summary>
public sealed class ApiKeys
{
    public const string ChangeKeyPrefix = "api_key:";

    /// <summary>How long a looked-up key is trusted without reading its row again, even if no change was heard.</summary>
    public static readonly TimeSpan CacheFor = TimeSpan.FromSeconds(30);

    private const string Prefix = "ik_";
    private const int MaxCached = 10_000;

    private readonly NpgsqlDataSource _dataSource;
    private readonly NpgsqlDataSource _ownerDataSource;
    private readonly ChangeNotifications _changes;
    private readonly TimeProvider _time;
    private readonly ApiKeyUsage _usage;
    private readonly ConcurrentDictionary<Guid, Cached> _cache = new();
    private long _generation;

    /// <param name="owner">Creating and revoking keys from the command line writes across tenants: as the owner (the service's role only looks keys up).</param>
    public ApiKeys(NpgsqlDataSource dataSource, ChangeNotifications changes, ApiKeyUsage usage, TimeProvider? time = null, OwnerDatabase? owner = null)
    {
        _dataSource = dataSource;
        _ownerDataSource = owner?.DataSource ?? dataSource;
        _usage = usage;
        _changes = changes;
        _time = time ?? TimeProvider.System;
        changes.Changed += key =>
        {
            if (!key.StartsWith(ChangeKeyPrefix, StringComparison.Ordinal)) return;
            Interlocked.Increment(ref _generation);
            if (Guid.TryParse(key.AsSpan(ChangeKeyPrefix.Length), out var id)) _cache.TryRemove(id, out _);
            else _cache.Clear();
        };
        changes.Reset += () =>
        {
            Interlocked.Increment(ref _generation);
            _cache.Clear();
        };
    }

    private sealed record Cached(string TenantId, byte[] KeyHash, IReadOnlySet<string> Scopes, DateTimeOffset? ExpiresAt, long ReadAt);

    /// <summary>A new key: a fresh id and 32 random bytes of secret, of which only the hash is ever stored.</summary>
    public static MintedApiKey Mint()
    {
        var id = Ids.New();
        var secret = RandomNumberGenerator.GetBytes(32);
        return new MintedApiKey(id, $"{MintedApiKey.PrefixOf(id)}_{Base64Url.EncodeToString(secret)}", SHA256.HashData(secret));
    }

    public async Task<CreatedApiKey> CreateAsync(string tenantId, string name, IReadOnlyList<string> scopes, CancellationToken ct)
    {
        if (!TenantIds.IsValid(tenantId)) throw new ArgumentException($"'{tenantId}' is not a valid tenant id: {TenantIds.Rule}");
        var unknown = scopes.Except(Scopes.All).ToList();
        if (unknown.Count > 0) throw new ArgumentException($"Unknown scope(s): {string.Join(", ", unknown)}. Known: {string.Join(", ", Scopes.All)}.");
        if (scopes.Count == 0) throw new ArgumentException("A key needs at least one scope.");

        var minted = Mint();
        await using var connection = await _ownerDataSource.OpenConnectionAsync(ct);
        await connection.ExecuteAsync(new CommandDefinition(
            "INSERT INTO api_keys (id, tenant_id, name, key_hash, scopes) VALUES (@Id, @tenantId, @name, @SecretHash, @scopes)",
            new { minted.Id, tenantId, name, minted.SecretHash, scopes = scopes.ToArray() }, cancellationToken: ct));
        return new CreatedApiKey(minted.Id, tenantId, scopes, minted.Key);
    }

    /// <summary>Drops this replica's copy of a key at once (the others hear of the change when it commits).</summary>
    public void Forget(Guid id)
    {
        Interlocked.Increment(ref _generation);
        _cache.TryRemove(id, out _);
    }

    /// <summary>Revokes the key; every replica hears of it when this commits (the row's trigger), this one at once.</summary>
    public async Task<bool> RevokeAsync(Guid id, CancellationToken ct)
    {
        await using var connection = await _ownerDataSource.OpenConnectionAsync(ct);
        var revoked = await connection.ExecuteAsync(new CommandDefinition(
            "UPDATE api_keys SET revoked_at = now() WHERE id = @id AND revoked_at IS NULL", new { id }, cancellationToken: ct)) == 1;
        _changes.Publish(ChangeKeyPrefix + id);
        return revoked;
    }

    /// <summary>The caller a key stands for, or null when the key is malformed, unknown, revoked or expired.</summary>
    public async Task<Caller?> AuthenticateAsync(string key, CancellationToken ct) => (await CheckAsync(key, ct)).Caller;

    /// <summary>The caller a key stands for, or why it is refused. A key that is accepted counts as used now (<see cref="ApiKeyUsage"/>).</summary>
    public async Task<ApiKeyCheck> CheckAsync(string key, CancellationToken ct)
    {
        if (!TryParse(key, out var id, out var secret)) return new ApiKeyCheck(null, InvalidKey);
        var cached = await LookUpAsync(id, ct);
        if (cached is null || !CryptographicOperations.FixedTimeEquals(SHA256.HashData(secret), cached.KeyHash)) return new ApiKeyCheck(null, InvalidKey);
        return Accept(id, cached);
    }

    /// <summary>
    /// The caller a key proven earlier stands for now, by its id alone: the console's session holds the id (never the key)
    /// and asks on every request, so a revoked or expired key, or one whose scopes changed, is seen at the next page.
    /// </summary>
    public async Task<ApiKeyCheck> CheckIdAsync(Guid id, CancellationToken ct)
    {
        var cached = await LookUpAsync(id, ct);
        return cached is null ? new ApiKeyCheck(null, InvalidKey) : Accept(id, cached);
    }

    private const string InvalidKey = "The API key is not valid or was revoked.";

    private ApiKeyCheck Accept(Guid id, Cached cached)
    {
        if (cached.ExpiresAt is { } expiresAt && expiresAt <= _time.GetUtcNow())
        {
            return new ApiKeyCheck(null, $"The API key expired at {expiresAt:yyyy-MM-ddTHH:mm:ssZ}; create a new one (POST /api-keys).");
        }
        _usage.Touch(id, _time.GetUtcNow().UtcDateTime);
        return new ApiKeyCheck(new Caller(cached.TenantId, ActorOf(id), cached.Scopes), null);
    }

    /// <summary>The key's row (cached), or null when it is unknown or revoked.</summary>
    private async Task<Cached?> LookUpAsync(Guid id, CancellationToken ct)
    {
        var listening = _changes.IsListening;
        if (listening && _cache.TryGetValue(id, out var cached) && _time.GetElapsedTime(cached.ReadAt) <= CacheFor) return cached;

        var generation = Interlocked.Read(ref _generation);
        await using var connection = await _dataSource.OpenConnectionAsync(ct);
        var row = await connection.QuerySingleOrDefaultAsync<KeyRow>(new CommandDefinition(
            "SELECT tenant_id, key_hash, scopes, expires_at FROM api_key_for_authentication(@id)",
            new { id }, cancellationToken: ct));
        if (row is null)
        {
            _cache.TryRemove(id, out _);
            return null;
        }
        cached = new Cached(row.TenantId, row.KeyHash, row.Scopes.ToHashSet(StringComparer.Ordinal), row.ExpiresAt, _time.GetTimestamp());
        // Keep what was read only if no change was heard meanwhile; an unknown or revoked key is never kept.
        if (listening && Interlocked.Read(ref _generation) == generation)
        {
            if (_cache.Count >= MaxCached) _cache.Clear();
            _cache[id] = cached;
        }
        return cached;
    }

    /// <summary>How a key is named as an actor in the audit trail.</summary>
    public static string ActorOf(Guid id) => $"api_key:{id:N}";

    /// <summary>The key id an actor name of <see cref="ActorOf"/> carries, if it is one.</summary>
    public static Guid? KeyIdOf(string actor) =>
        actor.StartsWith("api_key:", StringComparison.Ordinal) && Guid.TryParseExact(actor.AsSpan("api_key:".Length), "N", out var id) ? id : null;

    private static bool TryParse(string key, out Guid id, out byte[] secret)
    {
        id = Guid.Empty;
        secret = [];
        // ik_ + 32 hex + _ + 43 base64url characters
        if (key.Length != Prefix.Length + 32 + 1 + 43 || !key.StartsWith(Prefix, StringComparison.Ordinal) || key[Prefix.Length + 32] != '_')
        {
            return false;
        }
        if (!Guid.TryParseExact(key.AsSpan(Prefix.Length, 32), "N", out id)) return false;
        var buffer = new byte[32];
        if (!Base64Url.TryDecodeFromChars(key.AsSpan(Prefix.Length + 33), buffer, out var written) || written != 32) return false;
        secret = buffer;
        return true;
    }

    private sealed class KeyRow
    {
        public required string TenantId { get; init; }
        public required byte[] KeyHash { get; init; }
        public required string[] Scopes { get; init; }
        public DateTimeOffset? ExpiresAt { get; init; }
    }
}

public static class TenantIds
{
    public const string Rule = "1-64 characters: letters, digits, '-', '_' or '.'.";

    public static bool IsValid(string? tenantId) =>
        tenantId is { Length: > 0 and <= 64 } && tenantId.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');
}
