using Dapper;
using Npgsql;

namespace Integrations.Pipeline.Governance;

public readonly record struct RateLimitDecision(bool Allowed, int Count, int Limit, TimeSpan RetryAfter)
{
    /// <summary>Calls left in the current window.</summary>
    public int Remaining => Math.Max(0, Limit - Count);
}

/// <summary>
/// Per-minute limits counted in PostgreSQL with one atomic statement per call, so every replica sees the
/// same count. Windows are fixed minutes; the answer says how long until the current one ends.
/// </summary>
public sealed class RateLimiter
{
    /// <summary>The key of the tenant-wide budget every governed call counts against (the tool policy's <c>tenant_rate_limit_per_minute</c>).</summary>
    public const string TenantKey = "tenant";

    /// <summary>The rule a call refused by the tenant-wide budget is denied by.</summary>
    public const string TenantRule = "tenant_rate_limit";

    private const string AcquireSql = """
        INSERT INTO rate_limit_counters AS c (tenant_id, key, window_start, count)
        VALUES (@TenantId, @Key, date_trunc('minute', clock_timestamp()), 1)
        ON CONFLICT (tenant_id, key, window_start) DO UPDATE SET count = c.count + 1
        RETURNING count, extract(epoch FROM (window_start + interval '1 minute' - clock_timestamp()))::float8 AS seconds_left
        """;

    /// <summary>Counts one call against <paramref name="key"/> on the caller's connection (tenant session or not).</summary>
    public async Task<RateLimitDecision> AcquireAsync(NpgsqlConnection connection, string tenantId, string key, int limitPerMinute, CancellationToken ct)
    {
        var (count, secondsLeft) = await connection.QuerySingleAsync<(int, double)>(
            new CommandDefinition(AcquireSql, new { TenantId = tenantId, Key = key }, cancellationToken: ct));
        var retryAfter = TimeSpan.FromSeconds(Math.Max(1, Math.Ceiling(secondsLeft)));
        return new RateLimitDecision(count <= limitPerMinute, count, limitPerMinute, retryAfter);
    }

    /// <summary>Drops every tenant's windows that ended more than <paramref name="olderThan"/> ago (see <c>ExpiredRowsPruning</c>).</summary>
    public static Task<int> PruneAsync(NpgsqlConnection connection, TimeSpan olderThan, CancellationToken ct) =>
        connection.ExecuteScalarAsync<int>(new CommandDefinition(
            "SELECT prune_rate_limit_counters(@OlderThan)", new { OlderThan = olderThan }, cancellationToken: ct)); // across tenants (migration 0015)
}
