using Dapper;
using Npgsql;

namespace Integrations.Benchmarks.Support;

/// <summary>
/// What the bench database's backends are doing while a load runs: <c>pg_stat_activity</c> sampled every 50 ms
/// (active backends by wait event, "CPU" when active and waiting on nothing), so a report can say whether the
/// service's requests were waiting on locks, on commits (WAL) or on nothing but the CPU.
/// </summary>
public sealed class PostgresWaits : IAsyncDisposable
{
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _sampling;
    private readonly Dictionary<string, long> _counts = [];
    private long _samples;

    private PostgresWaits(string connectionString) => _sampling = Task.Run(() => SampleAsync(connectionString));

    public static PostgresWaits Start(string connectionString) => new(connectionString);

    /// <summary>Average active backends per wait (type: event), most first; available after <see cref="DisposeAsync"/>.</summary>
    public IReadOnlyList<(string Wait, double Backends)> Averages =>
        _counts.OrderByDescending(c => c.Value).Select(c => (c.Key, (double)c.Value / Math.Max(1, _samples))).ToList();

    private async Task SampleAsync(string connectionString)
    {
        await using var connection = new NpgsqlConnection(connectionString);
        await connection.OpenAsync();
        while (!_stop.IsCancellationRequested)
        {
            var rows = await connection.QueryAsync<(string? Type, string? Event)>("""
                SELECT wait_event_type, wait_event FROM pg_stat_activity
                WHERE datname = current_database() AND pid <> pg_backend_pid() AND state = 'active'
                """);
            _samples++;
            foreach (var (type, name) in rows)
            {
                var key = type is null ? "CPU (no wait)" : $"{type}: {name}";
                _counts[key] = _counts.GetValueOrDefault(key) + 1;
            }
            try
            {
                await Task.Delay(50, _stop.Token);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _sampling;
        _stop.Dispose();
    }
}
