using Dapper;
using Integrations.Infrastructure.Workers;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Integrations.Features.Telemetry;

/// <summary>
/// Fills the run rollup <c>llm_run_hours</c> (migration 0037) for the tenants that had usage with a run before it
/// existed, one tenant a transaction, every <c>Integrations:Spend:RunHoursBackfillInterval</c> (default 1 minute, first
/// at start; zero turns it off) until none is left; afterwards a pass is one empty read. A tenant's usage writes wait
/// while its own cells are copied (see <c>llm_run_hours_backfill</c>), other tenants' never; its by-run summaries read
/// <c>llm_usage_run_hours</c> until its batch commits. Any replica may run it: batches skip the tenant another one holds.
/// </summary>
public sealed class RunHoursBackfill(NpgsqlDataSource dataSource, IConfiguration configuration, WorkerRegistry workers, ILogger<RunHoursBackfill> logger)
    : BackgroundService
{
    public const string WorkerName = "spend.run_hours_backfill";
    public const int TenantsPerBatch = 1;

    private readonly TimeSpan _interval = configuration.GetValue("Integrations:Spend:RunHoursBackfillInterval", TimeSpan.FromMinutes(1));

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        workers.RunEveryAsync(WorkerName, "Fills the by-run rollup for tenants whose usage predates it, one tenant a transaction.",
            _interval, async ct => $"{await RunOnceAsync(ct)} tenants backfilled", stoppingToken, startAtOnce: true);

    /// <summary>Batches until no tenant is pending (or the host stops); answers how many tenants were completed.</summary>
    public async Task<int> RunOnceAsync(CancellationToken ct)
    {
        await using var connection = await dataSource.OpenConnectionAsync(ct);
        var total = 0;
        while (true)
        {
            var done = await connection.ExecuteScalarAsync<int>(new CommandDefinition(
                "SELECT llm_run_hours_backfill(@TenantsPerBatch)", new { TenantsPerBatch }, cancellationToken: ct));
            if (done == 0) break;
            total += done;
            logger.LogInformation("Run rollup filled for {Count} more tenants ({Total} this pass).", done, total);
        }
        return total;
    }
}
