using Integrations.Common;
using Npgsql;

namespace Integrations.Infrastructure.Database;

/// <summary>
/// The request's one connection and transaction. It opens lazily, switches to the unprivileged
/// <c>integrations_app</c> role and pins <c>app.tenant_id</c> for the transaction, so row-level security
/// stands behind every query's own <c>WHERE tenant_id</c>. Nothing commits unless <see cref="CommitAsync"/> is called.
/// </summary>
public sealed class TenantSession(NpgsqlDataSource dataSource, CallerContext caller) : IAsyncDisposable
{
    public const string AppRole = "integrations_app";

    private NpgsqlConnection? _connection;
    private NpgsqlTransaction? _transaction;
    private List<Action>? _afterCommit;

    public string TenantId => caller.TenantId;

    public async ValueTask<NpgsqlConnection> ConnectionAsync(CancellationToken ct)
    {
        if (_connection is not null) return _connection;

        var tenantId = caller.TenantId;
        var connection = await dataSource.OpenConnectionAsync(ct);
        try
        {
            _transaction = await connection.BeginTransactionAsync(ct);
            await using var command = new NpgsqlCommand(PinSql, connection, _transaction);
            command.Parameters.Add(new NpgsqlParameter { Value = tenantId });
            await command.ExecuteNonQueryAsync(ct);
        }
        catch
        {
            await connection.DisposeAsync();
            _transaction = null;
            throw;
        }
        _connection = connection;
        return connection;
    }

    /// <summary>
    /// A batch that is a transaction of its own, sent in one round trip: with no transaction open on
    /// <paramref name="connection"/>, PostgreSQL runs every command of a batch in one implicit transaction that
    /// commits when the batch ends and rolls back entirely when any command fails. Its first command switches to the
    /// app role and pins <paramref name="tenantId"/>, as <see cref="ConnectionAsync"/> does, for the commands added after it.
    /// Use it for short writes that need no answer before they commit: no lock taken by the batch is held while a
    /// client round trip is under way.
    /// </summary>
    public static NpgsqlBatch Batch(NpgsqlConnection connection, string tenantId)
    {
        if (connection.FullState != System.Data.ConnectionState.Open) throw new InvalidOperationException("The connection is not open.");
        var batch = new NpgsqlBatch(connection);
        var pin = new NpgsqlBatchCommand(PinSql);
        pin.Parameters.Add(new NpgsqlParameter { Value = tenantId });
        batch.BatchCommands.Add(pin);
        return batch;
    }

    /// <summary>Positional (<c>$1</c>), so Npgsql sends it as it is, without parsing it for named placeholders each time.</summary>
    private const string PinSql = $"SELECT set_config('role', '{AppRole}', true), set_config('app.tenant_id', $1, true)";

    /// <summary>Runs <paramref name="action"/> once the transaction has committed (never if it rolls back).</summary>
    public void AfterCommit(Action action) => (_afterCommit ??= []).Add(action);

    public async Task CommitAsync(CancellationToken ct)
    {
        if (_transaction is null) return;
        await _transaction.CommitAsync(ct);
        var actions = _afterCommit;
        await ReleaseAsync();
        actions?.ForEach(a => a());
    }

    /// <summary>
    /// Ends the transaction without committing: nothing it wrote stays, no after-commit action runs, and the
    /// connection goes back to the pool (no transaction stays open while, say, a remote server is asked).
    /// The next <see cref="ConnectionAsync"/> begins a new transaction.
    /// </summary>
    public async Task RollbackAsync()
    {
        _afterCommit = null;
        await ReleaseAsync();
    }

    /// <summary>A session disposed without <see cref="CommitAsync"/> rolls back.</summary>
    public async ValueTask DisposeAsync() => await RollbackAsync();

    // Disposing a transaction that was not committed rolls it back.
    private async Task ReleaseAsync()
    {
        if (_transaction is not null)
        {
            await _transaction.DisposeAsync();
            _transaction = null;
        }
        if (_connection is not null)
        {
            await _connection.DisposeAsync();
            _connection = null;
        }
    }
}
