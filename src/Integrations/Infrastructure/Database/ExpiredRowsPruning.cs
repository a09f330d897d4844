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
/// <see cref="IdempotencyKeys.Lifetime"/>, call evidence past its policy's retention (<c>call_evidence.expires_at</c>)
/// and the rows of processes swept (or stopped cleanly) more than <see cref="ServiceInstanceRetention"/> ago
/// (<see cref="OutcomeRecovery"/>). Any replica may run it: dropping rows nobody uses any more is safe to repeat.
/// The service's role sees one tenant at a time, so each tenant's drop is a function that runs with the owner's rights.
/// </summary>
internal sealed class ExpiredRowsPruning(
    NpgsqlDataSource dataSource, IConfiguration configuration, WorkerRegistry workers, ILogger<ExpiredRowsPruning> logger)
    : BackgroundService
{
    public const string WorkerName = "database.expired_rows_pruning";

    public static readonly TimeSpan RateLimitRetention = TimeSpan.FromHours(1);

    /// <summary>How long the row of a process that is gone is kept for whoever looks.</summary>
    public static readonly TimeSpan ServiceInstanceRetention = TimeSpan.FromDays(30);

    private readonly TimeSpan _interval = configuration.GetValue("Integrations:Database:PruneInterval", TimeSpan.FromMinutes(5));

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        workers.RunEveryAsync(WorkerName, "Drops ended rate-limit windows, expired idempotency keys and call evidence past its retention, of every tenant, and the rows of processes long gone.", _interval,
            async ct =>
            {
                var pruned = await PruneOnceAsync(ct);
                return $"{pruned.RateLimitWindows} rate-limit windows, {pruned.IdempotencyKeys} idempotency keys, {pruned.Evidence} evidence rows and {pruned.ServiceInstances} process rows dropped";
            }, stoppingToken);

    /// <summary>One pass: what it dropped of each kind.</summary>
    public async Task<PrunedRows> PruneOnceAsync(CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        var pruned = new PrunedRows(
            await RateLimiter.PruneAsync(connection, RateLimitRetention, ct),
            await connection.ExecuteScalarAsync<int>(new CommandDefinition(
                "SELECT prune_idempotency_keys(@Lifetime)", new { IdempotencyKeys.Lifetime }, cancellationToken: ct)),
            await connection.ExecuteScalarAsync<int>(new CommandDefinition("SELECT prune_expired_evidence()", cancellationToken: ct)),
            await connection.ExecuteAsync(new CommandDefinition("DELETE FROM service_instances WHERE swept_at < now() - @Retention",
                new { Retention = ServiceInstanceRetention }, cancellationToken: ct)));
        if (pruned.Total > 0)
        {
            logger.LogInformation("Dropped {Windows} rate-limit windows, {Keys} idempotency keys, {Evidence} evidence rows and {Instances} process rows.",
                pruned.RateLimitWindows, pruned.IdempotencyKeys, pruned.Evidence, pruned.ServiceInstances);
        }
        return pruned;
    }
}

/// <summary>What one pass of <see cref="ExpiredRowsPruning"/> dropped.</summary>
public sealed record PrunedRows(int RateLimitWindows, int IdempotencyKeys, int Evidence, int ServiceInstances)
{
    public int Total => RateLimitWindows + IdempotencyKeys + Evidence + ServiceInstances;
}
