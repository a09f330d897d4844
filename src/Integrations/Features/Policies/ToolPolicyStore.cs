using System.Collections.Concurrent;
using Dapper;
using Integrations.Infrastructure.Database;
using Npgsql;

namespace Integrations.Features.Policies;

/// <summary>
/// Reads a tenant's <see cref="ToolPolicy"/> (the defaults when it has none), cached in memory while the
/// change listener runs; a policy update notifies every replica, and the cache drops the tenant.
/// </summary>
public sealed class ToolPolicyStore
{
    public const string ChangeKeyPrefix = "policy:";

    private const string Sql = """
        SELECT risk_ceiling, allow_list, deny_list, default_rate_limit_per_minute, tenant_rate_limit_per_minute, updated_at
        FROM tool_policies WHERE tenant_id = @TenantId
        """;

    private readonly ConcurrentDictionary<string, ToolPolicy> _cache = new(StringComparer.Ordinal);
    private readonly ChangeNotifications _changes;
    private long _generation;

    public ToolPolicyStore(ChangeNotifications changes)
    {
        _changes = changes;
        changes.Changed += key =>
        {
            if (!key.StartsWith(ChangeKeyPrefix, StringComparison.Ordinal)) return;
            Interlocked.Increment(ref _generation);
            _cache.TryRemove(key[ChangeKeyPrefix.Length..], out _);
        };
        changes.Reset += () =>
        {
            Interlocked.Increment(ref _generation);
            _cache.Clear();
        };
    }

    /// <summary>The tenant's policy when this replica holds a current copy (the listener runs), without a round trip.</summary>
    public bool TryGetCached(string tenantId, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out ToolPolicy? policy)
    {
        policy = null;
        return _changes.IsListening && _cache.TryGetValue(tenantId, out policy);
    }

    public async Task<ToolPolicy> GetAsync(NpgsqlConnection connection, string tenantId, CancellationToken ct)
    {
        var listening = _changes.IsListening;
        if (listening && _cache.TryGetValue(tenantId, out var cached)) return cached;

        var generation = Interlocked.Read(ref _generation);
        var row = await connection.QuerySingleOrDefaultAsync<Row>(new CommandDefinition(Sql, new { TenantId = tenantId }, cancellationToken: ct));
        var policy = row?.ToPolicy() ?? ToolPolicy.Default;
        // Only keep what was read if no change arrived meanwhile; otherwise the next call reads again.
        if (listening && Interlocked.Read(ref _generation) == generation) _cache[tenantId] = policy;
        return policy;
    }

    internal sealed class Row
    {
        public required string RiskCeiling { get; init; }
        public string[] AllowList { get; init; } = [];
        public string[] DenyList { get; init; } = [];
        public int? DefaultRateLimitPerMinute { get; init; }
        public int? TenantRateLimitPerMinute { get; init; }
        public DateTimeOffset UpdatedAt { get; init; }

        public ToolPolicy ToPolicy() => new(RiskCeiling, AllowList, DenyList, DefaultRateLimitPerMinute, TenantRateLimitPerMinute, UpdatedAt);
    }
}
