using Microsoft.Extensions.Logging;
using Npgsql;

namespace Integrations.Infrastructure.Database;

/// <summary>
/// Hears the PostgreSQL <c>NOTIFY integrations_changes</c> that transactions send when they change cached rows
/// (policies, tool definitions), so every replica drops its copy. Caches ask <see cref="IsListening"/> first:
/// while the listener is down (not started yet, or reconnecting) they must read through; after a reconnect
/// <see cref="Reset"/> tells them to forget everything, since notifications may have been missed.
/// </summary>
public sealed class ChangeNotifications(NpgsqlDataSource dataSource, ILogger<ChangeNotifications> logger) : IAsyncDisposable
{
    public const string Channel = "integrations_changes";

    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _gate = new();
    private Task? _loop;
    private volatile bool _listening;

    public event Action<string>? Changed;

    public event Action? Reset;

    public bool IsListening
    {
        get
        {
            EnsureStarted();
            return _listening;
        }
    }

    /// <summary>The SQL a changing transaction runs; the notification is delivered when it commits.</summary>
    public static string NotifySql(string keyExpression) => $"SELECT pg_notify('{Channel}', {keyExpression})";

    /// <summary>Drops a key in this process at once (the writer's own replica need not wait for the round trip).</summary>
    public void Publish(string key) => Changed?.Invoke(key);

    private void EnsureStarted()
    {
        if (_loop is not null) return;
        lock (_gate)
        {
            _loop ??= Task.Run(() => ListenAsync(_stop.Token));
        }
    }

    private async Task ListenAsync(CancellationToken ct)
    {
        while (!ct.IsCancellationRequested)
        {
            try
            {
                await using var connection = await dataSource.OpenConnectionAsync(ct);
                connection.Notification += (_, e) => Changed?.Invoke(e.Payload);
                await using (var listen = new NpgsqlCommand($"LISTEN {Channel}", connection))
                {
                    await listen.ExecuteNonQueryAsync(ct);
                }
                Reset?.Invoke();
                _listening = true;
                while (!ct.IsCancellationRequested) await connection.WaitAsync(ct);
            }
            catch (OperationCanceledException) when (ct.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e) when (e is NpgsqlException or System.IO.IOException or TimeoutException)
            {
                logger.LogWarning("Change notifications interrupted ({Reason}); caches read through until reconnected.", e.Message);
            }
            finally
            {
                _listening = false;
                Reset?.Invoke();
            }
            try
            {
                await Task.Delay(TimeSpan.FromSeconds(1), ct);
            }
            catch (OperationCanceledException)
            {
                break;
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        if (_loop is not null)
        {
            try
            {
                await _loop;
            }
            catch (OperationCanceledException)
            {
            }
        }
        _stop.Dispose();
    }
}
