using System.Buffers.Text;
using System.Security.Cryptography;
using System.Text;
using Dapper;
using Integrations.Common;
using Npgsql;

namespace Integrations.Infrastructure.Security;

public sealed record CreatedApiKey(Guid Id, string TenantId, IReadOnlyList<string> Scopes, string Key);

/// <summary>
/// API keys look like <c>ik_&lt;id&gt;_&lt;secret&gt;</c>: the id finds the row, and only the SHA-256 of the
/// 32-byte secret is stored. The key itself exists once, in the answer to <see cref="CreateAsync"/>.
/// Key management is a system operation: it runs as the owner role, outside any tenant's transaction.
/// </summary>
public sealed class ApiKeys(NpgsqlDataSource dataSource)
{
    private const string Prefix = "ik_";

    public async Task<CreatedApiKey> CreateAsync(string tenantId, string name, IReadOnlyList<string> scopes, CancellationToken ct)
    {
        if (!TenantIds.IsValid(tenantId)) throw new ArgumentException($"'{tenantId}' is not a valid tenant id: {TenantIds.Rule}");
        var unknown = scopes.Except(Scopes.All).ToList();
        if (unknown.Count > 0) throw new ArgumentException($"Unknown scope(s): {string.Join(", ", unknown)}. Known: {string.Join(", ", Scopes.All)}.");
        if (scopes.Count == 0) throw new ArgumentException("A key needs at least one scope.");

        var id = Ids.New();
        var secret = RandomNumberGenerator.GetBytes(32);
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        await connection.ExecuteAsync(new CommandDefinition(
            "INSERT INTO api_keys (id, tenant_id, name, key_hash, scopes) VALUES (@id, @tenantId, @name, @hash, @scopes)",
            new { id, tenantId, name, hash = SHA256.HashData(secret), scopes = scopes.ToArray() }, cancellationToken: ct));
        return new CreatedApiKey(id, tenantId, scopes, $"{Prefix}{id:N}_{Base64Url.EncodeToString(secret)}");
    }

    public async Task<bool> RevokeAsync(Guid id, CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        return await connection.ExecuteAsync(new CommandDefinition(
            "UPDATE api_keys SET revoked_at = now() WHERE id = @id AND revoked_at IS NULL", new { id }, cancellationToken: ct)) == 1;
    }

    /// <summary>The caller a key stands for, or null when the key is malformed, unknown or revoked.</summary>
    public async Task<Caller?> AuthenticateAsync(string key, CancellationToken ct)
    {
        if (!TryParse(key, out var id, out var secret)) return null;
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        var row = await connection.QuerySingleOrDefaultAsync<KeyRow>(new CommandDefinition(
            "SELECT tenant_id, key_hash, scopes FROM api_keys WHERE id = @id AND revoked_at IS NULL",
            new { id }, cancellationToken: ct));
        if (row is null || !CryptographicOperations.FixedTimeEquals(SHA256.HashData(secret), row.KeyHash)) return null;
        return new Caller(row.TenantId, $"api_key:{id:N}", row.Scopes.ToHashSet(StringComparer.Ordinal));
    }

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
    }
}

public static class TenantIds
{
    public const string Rule = "1-64 characters: letters, digits, '-', '_' or '.'.";

    public static bool IsValid(string? tenantId) =>
        tenantId is { Length: > 0 and <= 64 } && tenantId.All(c => char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.');
}
