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
/// <see cref="RateLimitRetention"/> ago (every counted call leaves one per key and minute), idempotency keys older than
/// <see cref="IdempotencyKeys.Lifetime"/>, and call evidence past its policy's retention (<c>call_evidence.expires_at</c>). Any replica may run it: dropping rows nobody uses any more is safe to repeat.
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
        workers.RunEveryAsync(WorkerName, "Drops ended rate-limit windows, expired idempotency keys and call evidence past its retention, of every tenant.", _interval,
            async ct =>
            {
                var (windows, keys, evidence) = await PruneOnceAsync(ct);
                return $"{windows} rate-limit windows, {keys} idempotency keys and {evidence} evidence rows dropped";
            }, stoppingToken);

    /// <summary>One pass: the rate-limit windows, the idempotency keys and the evidence rows dropped.</summary>
    public async Task<(int Windows, int IdempotencyKeys, int Evidence)> PruneOnceAsync(CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        var windows = await RateLimiter.PruneAsync(connection, RateLimitRetention, ct);
        var keys = await connection.ExecuteScalarAsync<int>(new CommandDefinition(
            "SELECT prune_idempotency_keys(@Lifetime)", new { IdempotencyKeys.Lifetime }, cancellationToken: ct));
        var evidence = await connection.ExecuteScalarAsync<int>(new CommandDefinition("SELECT prune_expired_evidence()", cancellationToken: ct));
        if (windows + keys + evidence > 0)
        {
            logger.LogInformation("Dropped {Windows} rate-limit windows, {Keys} idempotency keys and {Evidence} evidence rows.", windows, keys, evidence);
        }
        return (windows, keys, evidence);
    }
}
