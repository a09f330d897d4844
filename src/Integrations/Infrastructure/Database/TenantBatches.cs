using System.Collections.Concurrent;
using Integrations.Infrastructure.Audit;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Npgsql;

namespace Integrations.Infrastructure.Database;

/// <summary>
/// Short writes for a tenant, each committed by a batch that is its own transaction (<see cref="TenantSession.Batch"/>)
/// and sent in one round trip, for writes whose statements need no answer before they commit (audit appends, the
/// invocation row). Per tenant at most <c>batchesInFlight</c> batches (default one) are in flight at a time; writes
/// that arrive meanwhile go together in the next one. So a tenant's writers do not pile up on its audit chain head
/// row in PostgreSQL (each waiter there costs a backend woken at every commit), and under load one round trip commits
/// many writes. A write's statements are built by its caller before it joins the queue, so the lane itself only
/// sends and waits; the audit events of all the writes in a batch are appended by one statement at its end. A batch
/// that fails is retried write by write, so one write's failure (a changed row, a refused insert) is that write's alone.
/// <para>
/// Its connections come from a pool of their own that skips the session reset on return (one statement fewer per
/// round trip): nothing but these batches ever runs on them, and a batch changes no session state (its role and
/// tenant settings end with its transaction).
/// </para>
/// </summary>
public sealed class TenantBatches : IAsyncDisposable
{
    /// <summary>The most writes one batch carries.</summary>
    public const int MaxWritesPerBatch = 64;

    private readonly NpgsqlDataSource _dataSource;
    private readonly int _batchesInFlight;
    private readonly ILogger _logger;
    private readonly ConcurrentDictionary<string, Lane> _lanes = new(StringComparer.Ordinal);

    /// <param name="dataSource">A pool used for nothing else, opened with <c>No Reset On Close</c> (see <see cref="ConnectionString"/>); disposed with this.</param>
    /// <param name="batchesInFlight">
    /// How many of a tenant's batches may be under way at once (<c>Integrations:Database:BatchesInFlightPerTenant</c>).
    /// With more than one, a batch is sent while the one before it runs, and waits in PostgreSQL for the chain head
    /// that batch holds until it commits; commit order is then the order PostgreSQL grants that lock.
    /// </param>
    public TenantBatches(NpgsqlDataSource dataSource, int batchesInFlight = 1, ILogger<TenantBatches>? logger = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(batchesInFlight, 1);
        _dataSource = dataSource;
        _batchesInFlight = batchesInFlight;
        _logger = logger ?? NullLogger<TenantBatches>.Instance;
    }

    /// <summary>The connection string of this pool: the service's own, with the session reset on return turned off.</summary>
    public static string ConnectionString(string serviceConnectionString) =>
        new NpgsqlConnectionStringBuilder(serviceConnectionString) { NoResetOnClose = true }.ConnectionString;

    /// <summary>
    /// Commits the statements <paramref name="addCommands"/> adds (after the tenant is pinned) in one transaction,
    /// alone or together with other writes of the tenant. <paramref name="addCommands"/> runs at once, on the caller's
    /// thread, into a batch of its own whose statements are then queued. Completes when they are committed; throws what
    /// PostgreSQL refused them with, and then nothing of them was written.
    /// </summary>
    public Task WriteAsync(string tenantId, Action<NpgsqlBatch> addCommands) => WriteAsync(tenantId, (AuditWrite?)null, addCommands);

    /// <summary>
    /// Commits <paramref name="audit"/>'s events and the statements <paramref name="addCommands"/> adds in one
    /// transaction, alone or together with other writes of the tenant, as <see cref="WriteAsync(string, Action{NpgsqlBatch})"/>
    /// does. The events of every write in a batch are appended by one statement after the writes' own statements, in the
    /// order the writes arrived (see <see cref="AuditTrail.AddTo(NpgsqlBatch, string, IReadOnlyList{AuditWrite})"/>).
    /// </summary>
    public Task WriteAsync(string tenantId, AuditWrite? audit, Action<NpgsqlBatch>? addCommands = null) =>
        WriteAsync(tenantId, audit is null ? [] : [audit], addCommands);

    /// <summary>
    /// As <see cref="WriteAsync(string, AuditWrite?, Action{NpgsqlBatch}?)"/> with the events of several writes (each with its
    /// own correlation id), appended in the order given, all committed or none.
    /// </summary>
    public Task WriteAsync(string tenantId, IReadOnlyList<AuditWrite> audits, Action<NpgsqlBatch>? addCommands = null)
    {
        if (audits.Any(a => a.Caller.TenantId != tenantId))
        {
            throw new ArgumentException("The audit events belong to another tenant's chain.", nameof(audits));
        }
        var lane = _lanes.GetOrAdd(tenantId, id => new Lane(id));
        var write = new Write(addCommands is null ? [] : Staged(addCommands), audits);
        bool runs;
        lock (lane.Gate)
        {
            lane.Queue.Enqueue(write);
            runs = lane.Running < _batchesInFlight;
            if (runs) lane.Running++;
        }
        return runs ? RunAsync(lane, write) : write.Done.Task;
    }

    /// <summary>
    /// Sends the lane's batches until the one carrying <paramref name="own"/> has committed, then hands the rest of the
    /// queue to the thread pool, so a caller waits for its own write and the one before it, never for later ones.
    /// </summary>
    private async Task RunAsync(Lane lane, Write? own)
    {
        while (true)
        {
            List<Write> writes;
            lock (lane.Gate)
            {
                if (lane.Queue.Count == 0)
                {
                    lane.Running--;
                    break;
                }
                if (own is not null && own.Done.Task.IsCompleted)
                {
                    _ = Task.Run(() => RunAsync(lane, null));
                    break;
                }
                writes = new List<Write>(Math.Min(lane.Queue.Count, MaxWritesPerBatch));
                while (writes.Count < MaxWritesPerBatch && lane.Queue.TryDequeue(out var next)) writes.Add(next);
            }
            await SendAsync(lane.TenantId, writes);
        }
        if (own is not null) await own.Done.Task;
    }

    private async Task SendAsync(string tenantId, List<Write> writes)
    {
        try
        {
            await ExecuteAsync(tenantId, writes);
            foreach (var write in writes) write.Done.TrySetResult();
        }
        catch (Exception failure) when (writes.Count > 1)
        {
            _logger.LogWarning(failure, "A batch of {Count} writes of tenant {TenantId} failed; its writes are sent again one by one.", writes.Count, tenantId);
            foreach (var write in writes)
            {
                try
                {
                    await ExecuteAsync(tenantId, [write], again: true);
                    write.Done.TrySetResult();
                }
                catch (Exception e)
                {
                    write.Done.TrySetException(e);
                }
            }
        }
        catch (Exception e)
        {
            writes[0].Done.TrySetException(e);
        }
    }

    /// <param name="again">
    /// The writes' statements ran before, in a batch that failed: they go as copies, because a statement object that
    /// ran auto-prepared on one connection is executed on the next as that connection's prepared statement ("prepared
    /// statement _auto0 does not exist"; Npgsql 10.0.3, npgsql/npgsql#6432).
    /// </param>
    private async Task ExecuteAsync(string tenantId, List<Write> writes, bool again = false)
    {
        await using var connection = await _dataSource.OpenConnectionAsync();
        await using var batch = TenantSession.Batch(connection, tenantId);
        foreach (var write in writes)
        {
            foreach (var command in write.Commands) batch.BatchCommands.Add(again ? Copy(command) : command);
        }
        AuditTrail.AddTo(batch, tenantId, writes.SelectMany(w => w.Audits).ToList());
        try
        {
            await batch.ExecuteNonQueryAsync();
        }
        catch (PostgresException e) when (!RaisedByExecution(e))
        {
            await DiscardAsync(connection);
            throw;
        }
        finally
        {
            batch.BatchCommands.Clear(); // the statements may be sent again, write by write, in batches of their own
        }
    }

    /// <summary>
    /// Errors PostgreSQL raises while running a statement that was bound whole: a serialization failure (a changed
    /// target's unchanged-rows check, which fails every shared batch of a tenant whose cached target changed), a
    /// deadlock, a constraint violation. They leave the connection as good as it was, so it is kept.
    /// </summary>
    private static bool RaisedByExecution(PostgresException e) =>
        e.SqlState.StartsWith("40", StringComparison.Ordinal) || e.SqlState.StartsWith("23", StringComparison.Ordinal);

    /// <summary>
    /// Ends the physical connection <paramref name="connection"/> holds, so it never goes back to the pool. A statement
    /// that PostgreSQL refuses while binding its parameters (a NUL in a text value, say) in the execution in which Npgsql
    /// auto-prepares it leaves the statement marked prepared without its result description (Npgsql 10.0.0 to 10.0.3
    /// mark it prepared at ParseComplete and learn the description only after BindComplete); the next execution of that
    /// statement on the connection, by any tenant's batch, then fails with "Received unexpected backend message
    /// DataRow" (npgsql/npgsql#6391 reports the same corruption after a failed auto-prepared statement; it is open).
    /// Only the server's end of a connection can be closed through the public API, and only a failing batch pays for it.
    /// </summary>
    private async Task DiscardAsync(NpgsqlConnection connection)
    {
        try
        {
            await using var end = new NpgsqlCommand("SELECT pg_terminate_backend(pg_backend_pid())", connection);
            await end.ExecuteNonQueryAsync();
        }
        catch (Exception e) when (e is NpgsqlException or InvalidOperationException)
        {
            // the server ended the session, as asked: Npgsql now counts the connection as broken and drops it
        }
        if (connection.FullState is not (System.Data.ConnectionState.Broken or System.Data.ConnectionState.Closed))
        {
            _dataSource.Clear(); // the session outlived the request to end it: then no connection of the pool is used again
        }
    }

    private static NpgsqlBatchCommand Copy(NpgsqlBatchCommand command)
    {
        var copy = new NpgsqlBatchCommand(command.CommandText) { CommandType = command.CommandType, AppendErrorBarrier = command.AppendErrorBarrier };
        foreach (NpgsqlParameter parameter in command.Parameters) copy.Parameters.Add(parameter.Clone());
        return copy;
    }

    private static NpgsqlBatchCommand[] Staged(Action<NpgsqlBatch> addCommands)
    {
        using var staging = new NpgsqlBatch();
        addCommands(staging);
        var commands = staging.BatchCommands.Cast<NpgsqlBatchCommand>().ToArray();
        staging.BatchCommands.Clear();
        return commands;
    }

    public ValueTask DisposeAsync() => _dataSource.DisposeAsync();

    private sealed class Lane(string tenantId)
    {
        public readonly Lock Gate = new();
        public readonly Queue<Write> Queue = new();
        public readonly string TenantId = tenantId;
        /// <summary>How many callers (or thread-pool work items) are sending this lane's batches.</summary>
        public int Running;
    }

    private sealed class Write(NpgsqlBatchCommand[] commands, IReadOnlyList<AuditWrite> audits)
    {
        public NpgsqlBatchCommand[] Commands { get; } = commands;

        public IReadOnlyList<AuditWrite> Audits { get; } = audits;

        public TaskCompletionSource Done { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
    }
}
