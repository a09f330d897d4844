using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Integrations.Pipeline.Governance;

/// <summary>
/// Every call counted against a limit leaves a row per key and minute in <c>rate_limit_counters</c>; this drops the
/// windows that ended more than <see cref="Retention"/> ago, every <c>Integrations:Governance:RateLimitPruneInterval</c>
/// (default 5 minutes; <c>00:00:00</c> turns it off), so the table holds about an hour of windows whatever the traffic.
/// Any replica may run it: a delete of rows nobody counts against any more is safe to repeat.
/// </summary>
internal sealed class RateLimitCounterPruning(NpgsqlDataSource dataSource, IConfiguration configuration, ILogger<RateLimitCounterPruning> logger)
    : BackgroundService
{
    public static readonly TimeSpan Retention = TimeSpan.FromHours(1);

    private readonly TimeSpan _interval = configuration.GetValue("Integrations:Governance:RateLimitPruneInterval", TimeSpan.FromMinutes(5));

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (_interval <= TimeSpan.Zero) return;
        using var timer = new PeriodicTimer(_interval);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            try
            {
                await PruneOnceAsync(stoppingToken);
            }
            catch (Exception e) when (e is NpgsqlException or TimeoutException)
            {
                logger.LogWarning(e, "Pruning old rate-limit windows failed; the next pass tries again.");
            }
        }
    }

    /// <summary>One pass: the number of windows dropped.</summary>
    public async Task<int> PruneOnceAsync(CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        var pruned = await RateLimiter.PruneAsync(connection, Retention, ct);
        if (pruned > 0) logger.LogInformation("Dropped {Count} rate-limit windows older than {Retention}.", pruned, Retention);
        return pruned;
    }
}
