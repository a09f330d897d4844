using System.Collections.Concurrent;
using Dapper;
using Integrations.Infrastructure.Workers;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace Integrations.Infrastructure.Security;

/// <summary>
/// When each API key was last used, collected in memory as requests authenticate and written for all keys in one
/// statement every <c>Integrations:ApiKeys:LastUsedFlushInterval</c> (default 30 s), never a write per request. A
/// list of keys shows the later of the stored time and this replica's pending one.
/// </summary>
public sealed class ApiKeyUsage(NpgsqlDataSource dataSource, IConfiguration configuration, WorkerRegistry workers, ILogger<ApiKeyUsage> logger)
    : BackgroundService
{
    public const string WorkerName = "api_keys.last_used_flush";

    private readonly TimeSpan _interval = configuration.GetValue("Integrations:ApiKeys:LastUsedFlushInterval", TimeSpan.FromSeconds(30));
    private ConcurrentDictionary<Guid, DateTime> _pending = new();

    public void Touch(Guid keyId, DateTime usedAt) => _pending[keyId] = usedAt;

    /// <summary>This replica's last use of the key that is not yet written, if any.</summary>
    public DateTime? PendingFor(Guid keyId) => _pending.TryGetValue(keyId, out var used) ? used : null;

    protected override Task ExecuteAsync(CancellationToken stoppingToken) =>
        workers.RunEveryAsync(WorkerName, "Writes when each API key was last used, for all keys used since the last flush, in one statement.",
            _interval, async ct => $"{await FlushAsync(ct)} keys' last use written", stoppingToken);

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        await base.StopAsync(cancellationToken);
        await FlushOnceAsync(cancellationToken);
    }

    /// <summary>Writes what was collected since the last flush; the number of keys whose time moved (0 when the write failed: the next flush tries again).</summary>
    public async Task<int> FlushOnceAsync(CancellationToken ct)
    {
        try
        {
            return await FlushAsync(ct);
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException or OperationCanceledException)
        {
            return 0;
        }
    }

    private async Task<int> FlushAsync(CancellationToken ct)
    {
        var taken = Interlocked.Exchange(ref _pending, new ConcurrentDictionary<Guid, DateTime>());
        if (taken.IsEmpty) return 0;
        try
        {
            await using var connection = await dataSource.OpenConnectionAsync(ct);
            return await connection.ExecuteScalarAsync<int>(new CommandDefinition("SELECT api_keys_touch(@Ids, @Used)",
                new { Ids = taken.Keys.ToArray(), Used = taken.Values.ToArray() }, cancellationToken: ct));
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException or OperationCanceledException)
        {
            // Put them back (a later use wins) so the next flush tries again.
            foreach (var (id, used) in taken) _pending.AddOrUpdate(id, used, (_, newer) => newer > used ? newer : used);
            logger.LogWarning(e, "Recording when {Count} API keys were last used failed; the next flush tries again.", taken.Count);
            throw;
        }
    }
}
