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

    public bool IsOpen => _transaction is not null;

    public async ValueTask<NpgsqlConnection> ConnectionAsync(CancellationToken ct)
    {
        if (_connection is not null) return _connection;

        var tenantId = caller.TenantId;
        var connection = await dataSource.OpenConnectionAsync(ct);
        try
        {
            _transaction = await connection.BeginTransactionAsync(ct);
            await using var command = new NpgsqlCommand(
                "SELECT set_config('role', @role, true), set_config('app.tenant_id', @tenant, true)", connection, _transaction);
            command.Parameters.AddWithValue("role", AppRole);
            command.Parameters.AddWithValue("tenant", tenantId);
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

    /// <summary>Runs <paramref name="action"/> once the transaction has committed (never if it rolls back).</summary>
    public void AfterCommit(Action action) => (_afterCommit ??= []).Add(action);

    public async Task CommitAsync(CancellationToken ct)
    {
        if (_transaction is null) return;
        await _transaction.CommitAsync(ct);
        var actions = _afterCommit;
        await DisposeAsync();
        actions?.ForEach(a => a());
    }

    public async ValueTask DisposeAsync()
    {
        _afterCommit = null;
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
