using Dapper;
using Integrations.Infrastructure.Http;
using Integrations.Infrastructure.Workers;
using Integrations.Pipeline.Governance;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Integrations.Infrastructure.Database;

/// <summary>
/// Rows that only matter for a while, dropped for every tenant every <c>Integrations:Database:PruneInterval</c>
/// (default 5 minutes; <c>00:00:00</c> turns it off): rate-limit windows that ended more than
/// <see cref="RateLimitRetention"/> ago (every counted call leaves one per key and minute) and idempotency keys older than
/// <see cref="IdempotencyKeys.Lifetime"/>. Any replica may run it: dropping rows nobody uses any more is safe to repeat.
/// The service's role sees one tenant at a time, so each drop is a function that runs with the owner's rights.
/// </summary>
internal sealed class ExpiredRowsPruning(
    NpgsqlDataSource dataSource, IConfiguration configuration, WorkerRegistry workers, ILogger<ExpiredRowsPruning> logger)
    : BackgroundService
{
    public const string WorkerName = "database.expired_rows_pruning";

    public static readonly TimeSpan RateLimitRetention = TimeSpan.FromHours(1);

    private readonly TimeSpan _interval = configuration.GetValue("Integrations:Database:PruneInterval", TimeSpan.FromMinutes(5));

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        workers.RunEveryAsync(WorkerName, "Drops ended rate-limit windows and expired idempotency keys of every tenant.", _interval,
            async ct =>
            {
                var (windows, keys) = await PruneOnceAsync(ct);
                return $"{windows} rate-limit windows and {keys} idempotency keys dropped";
            }, stoppingToken);

    /// <summary>One pass: the rate-limit windows and the idempotency keys dropped.</summary>
    public async Task<(int Windows, int IdempotencyKeys)> PruneOnceAsync(CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        var windows = await RateLimiter.PruneAsync(connection, RateLimitRetention, ct);
        var keys = await connection.ExecuteScalarAsync<int>(new CommandDefinition(
            "SELECT prune_idempotency_keys(@Lifetime)", new { IdempotencyKeys.Lifetime }, cancellationToken: ct));
        if (windows + keys > 0) logger.LogInformation("Dropped {Windows} rate-limit windows and {Keys} idempotency keys.", windows, keys);
        return (windows, keys);
    }
}
