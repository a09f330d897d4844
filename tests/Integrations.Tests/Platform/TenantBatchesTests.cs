using Integrations.Features.Audit;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Integrations.Tests.Platform;

/// <summary>
/// <see cref="TenantBatches"/>: a tenant's writes that arrive while one of its batches is in flight commit together in
/// the next, in arrival order; a write that fails fails alone.
/// </summary>
public sealed class TenantBatchesTests(ServiceFixture fixture) : IClassFixture<ServiceFixture>
{
    private ServiceHost Host => fixture.Host;

    private TenantBatches Batches => Host.Services.GetRequiredService<TenantBatches>();

    private static Action<NpgsqlBatch> Append(string tenant, string action) =>
        batch => AuditTrail.AddTo(batch, TestEnvironment.CallerFor(tenant), [new AuditEvent(action, "test", "1", null)], action);

    /// <summary>
    /// Starts a write that waits in PostgreSQL for the tenant's chain head, which another connection holds locked until
    /// the returned lock is disposed, keeping the tenant's lane busy meanwhile.
    /// </summary>
    private async Task<(Task First, IAsyncDisposable HeadLock)> BlockingAsync(string tenant)
    {
        var headLock = await LockChainHeadAsync(tenant);
        var first = Batches.WriteAsync(tenant, Append(tenant, "test.first"));
        await Task.Delay(100);
        Assert.False(first.IsCompleted);
        return (first, headLock);
    }

    /// <summary>Creates the tenant's chain head and holds it locked from another connection until disposed.</summary>
    private async Task<IAsyncDisposable> LockChainHeadAsync(string tenant)
    {
        var connection = new NpgsqlConnection(Host.ConnectionString);
        await connection.OpenAsync();
        await using (var head = new NpgsqlCommand("INSERT INTO audit_chain_heads (tenant_id) VALUES ($1)", connection))
        {
            head.Parameters.Add(new NpgsqlParameter { Value = tenant });
            await head.ExecuteNonQueryAsync();
        }
        var transaction = await connection.BeginTransactionAsync();
        await using (var locking = new NpgsqlCommand("SELECT FROM audit_chain_heads WHERE tenant_id = $1 FOR UPDATE", connection, transaction))
        {
            locking.Parameters.Add(new NpgsqlParameter { Value = tenant });
            await locking.ExecuteNonQueryAsync();
        }
        return new HeadLock(connection, transaction);
    }

    private sealed class HeadLock(NpgsqlConnection connection, NpgsqlTransaction transaction) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            await transaction.RollbackAsync();
            await connection.DisposeAsync();
        }
    }

    private async Task<List<(long Seq, string Action, string Transaction)>> EventsAsync(string tenant) =>
        await OwnerSql.QueryAsync<(long, string, string)>(Host.ConnectionString,
            "SELECT seq, action, xmin::text FROM audit_events WHERE tenant_id = @tenant ORDER BY seq", new { tenant });

    [Fact]
    public async Task Writes_that_arrive_during_a_batch_commit_together_in_the_next_in_arrival_order()
    {
        using var signing = Host.SigningAuditEvents();
        var tenant = TestEnvironment.NewTenant();
        var (first, headLock) = await BlockingAsync(tenant);
        var queued = new List<Task>();
        for (var i = 0; i < 5; i++) queued.Add(Batches.WriteAsync(tenant, Append(tenant, $"test.queued.{i}")));
        await Task.Delay(50);
        Assert.DoesNotContain(queued, t => t.IsCompleted);

        await headLock.DisposeAsync();
        await first;
        await Task.WhenAll(queued);

        var events = await EventsAsync(tenant);
        Assert.Equal(["test.first", "test.queued.0", "test.queued.1", "test.queued.2", "test.queued.3", "test.queued.4"], events.Select(e => e.Action));
        Assert.Single(events.Skip(1).Select(e => e.Transaction).Distinct()); // one transaction
        Assert.NotEqual(events[0].Transaction, events[1].Transaction);
        Assert.True((await Host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value.Valid);
    }

    [Fact]
    public async Task A_write_that_fails_in_a_shared_batch_fails_alone()
    {
        using var signing = Host.SigningAuditEvents();
        var tenant = TestEnvironment.NewTenant();
        var (first, headLock) = await BlockingAsync(tenant);
        var before = Batches.WriteAsync(tenant, Append(tenant, "test.before"));
        var failing = Batches.WriteAsync(tenant, batch =>
        {
            Append(tenant, "test.failing")(batch);
            batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT 1 / 0"));
        });
        var after = Batches.WriteAsync(tenant, Append(tenant, "test.after"));

        await headLock.DisposeAsync();
        await first;
        await before;
        await after;
        var error = await Assert.ThrowsAsync<PostgresException>(() => failing);

        Assert.Equal(PostgresErrorCodes.DivisionByZero, error.SqlState);
        Assert.Equal(["test.first", "test.before", "test.after"], (await EventsAsync(tenant)).Select(e => e.Action));
        Assert.True((await Host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value.Valid);
    }

    [Fact]
    public async Task Tenants_do_not_wait_for_each_other()
    {
        using var signing = Host.SigningAuditEvents();
        var busy = TestEnvironment.NewTenant();
        var other = TestEnvironment.NewTenant();
        var (first, headLock) = await BlockingAsync(busy);

        await Batches.WriteAsync(other, Append(other, "test.other")).WaitAsync(TimeSpan.FromSeconds(5));

        await headLock.DisposeAsync();
        await first;
        Assert.Single(await EventsAsync(other));
    }

    [Fact]
    public async Task The_audit_events_of_a_batchs_writes_go_in_together_in_arrival_order_each_with_its_own_actor_and_correlation()
    {
        using var signing = Host.SigningAuditEvents();
        var tenant = TestEnvironment.NewTenant();
        var (first, headLock) = await BlockingAsync(tenant);
        var alice = TestEnvironment.CallerFor(tenant) with { Actor = "key:alice" };
        var bob = TestEnvironment.CallerFor(tenant) with { Actor = "key:bob" };
        var queued = new List<Task>
        {
            Batches.WriteAsync(tenant, new AuditWrite(alice, [new AuditEvent("test.a1", "test", "1", null), new AuditEvent("test.a2", "test", "1", new { n = 2 })], "call-a")),
            Batches.WriteAsync(tenant, new AuditWrite(bob, [new AuditEvent("test.b1", "test", "2", null)], "call-b")),
            Batches.WriteAsync(tenant, new AuditWrite(alice, [new AuditEvent("test.a3", "test", "3", null)], "call-c"),
                batch => batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT 1"))),
        };

        await headLock.DisposeAsync();
        await first;
        await Task.WhenAll(queued);

        var events = await OwnerSql.QueryAsync<(string Action, string Actor, string CorrelationId, string Transaction)>(Host.ConnectionString,
            "SELECT action, actor, correlation_id, xmin::text FROM audit_events WHERE tenant_id = @tenant AND seq > 1 ORDER BY seq", new { tenant });
        Assert.Equal([("test.a1", "key:alice", "call-a"), ("test.a2", "key:alice", "call-a"), ("test.b1", "key:bob", "call-b"), ("test.a3", "key:alice", "call-c")],
            events.Select(e => (e.Action, e.Actor, e.CorrelationId)));
        Assert.Single(events.Select(e => e.Transaction).Distinct()); // one transaction
        Assert.True((await Host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value.Valid);
    }

    [Fact]
    public async Task A_write_that_fails_in_a_shared_batch_takes_none_of_its_audit_events_with_it_and_leaves_the_others()
    {
        using var signing = Host.SigningAuditEvents();
        var tenant = TestEnvironment.NewTenant();
        var caller = TestEnvironment.CallerFor(tenant);
        var (first, headLock) = await BlockingAsync(tenant);
        var before = Batches.WriteAsync(tenant, new AuditWrite(caller, [new AuditEvent("test.before", "test", "1", null)]));
        var failing = Batches.WriteAsync(tenant, new AuditWrite(caller, [new AuditEvent("test.failing", "test", "2", null)]),
            batch => batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT 1 / 0")));
        var after = Batches.WriteAsync(tenant, new AuditWrite(caller, [new AuditEvent("test.after", "test", "3", null)]));

        await headLock.DisposeAsync();
        await first;
        await before;
        await after;
        Assert.Equal(PostgresErrorCodes.DivisionByZero, (await Assert.ThrowsAsync<PostgresException>(() => failing)).SqlState);
        Assert.Equal(["test.first", "test.before", "test.after"], (await EventsAsync(tenant)).Select(e => e.Action));
        Assert.True((await Host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value.Valid);
    }

    [Fact]
    public async Task An_audit_write_for_another_tenant_is_refused_before_it_is_queued()
    {
        using var signing = Host.SigningAuditEvents();
        var tenant = TestEnvironment.NewTenant();
        var other = TestEnvironment.CallerFor(TestEnvironment.NewTenant());

        await Assert.ThrowsAsync<ArgumentException>(() => Batches.WriteAsync(tenant, new AuditWrite(other, [new AuditEvent("test.misplaced", "test", "1", null)])));

        await Batches.WriteAsync(tenant, Append(tenant, "test.next")); // the lane was left as it was
        Assert.Equal(["test.next"], (await EventsAsync(tenant)).Select(e => e.Action));
    }

    /// <summary>
    /// A write whose statements ran, auto-prepared, in a batch that failed because of another write is sent again on
    /// another connection (the failing batch's is discarded): its statements must not be taken there for the first
    /// connection's prepared statements ("prepared statement _auto0 does not exist", seen when a changed target's
    /// unchanged-rows check failed a shared batch in the benchmark).
    /// </summary>
    [Fact]
    public async Task A_write_sent_again_after_its_shared_batch_failed_runs_on_the_next_connection()
    {
        using var signing = Host.SigningAuditEvents();
        var tenant = TestEnvironment.NewTenant();
        var connectionString = new NpgsqlConnectionStringBuilder(Host.ConnectionString)
        {
            MaxPoolSize = 1,
            MaxAutoPrepare = 8,
            AutoPrepareMinUsages = 1,
            NoResetOnClose = true,
        }.ConnectionString;
        await using var batches = new TenantBatches(NpgsqlDataSource.Create(connectionString));
        void Checked(NpgsqlBatch batch, int value) =>
            batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT $1::int") { Parameters = { new NpgsqlParameter { Value = value } } });
        for (var i = 0; i < 3; i++) await batches.WriteAsync(tenant, batch => Checked(batch, i)); // prepared on the pool's one connection

        var headLock = await LockChainHeadAsync(tenant);
        var first = batches.WriteAsync(tenant, Append(tenant, "test.first"));
        await Task.Delay(100);
        var good = batches.WriteAsync(tenant, batch =>
        {
            Checked(batch, 7);
            Append(tenant, "test.good")(batch);
        });
        var failing = batches.WriteAsync(tenant, batch => batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT 1 / 0")));
        await headLock.DisposeAsync();

        await first;
        await good;
        Assert.Equal(PostgresErrorCodes.DivisionByZero, (await Assert.ThrowsAsync<PostgresException>(() => failing)).SqlState);
        Assert.Equal(["test.first", "test.good"], (await EventsAsync(tenant)).Select(e => e.Action));
        Assert.True((await Host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value.Valid);
    }

    [Fact]
    public async Task A_batch_that_fails_while_running_keeps_its_connection_and_one_refused_while_binding_ends_it()
    {
        using var signing = Host.SigningAuditEvents();
        var tenant = TestEnvironment.NewTenant();
        var application = $"batches-{Guid.NewGuid():N}";
        var connectionString = new NpgsqlConnectionStringBuilder(Host.ConnectionString) { ApplicationName = application, MaxPoolSize = 1 }.ConnectionString;
        await using var batches = new TenantBatches(NpgsqlDataSource.Create(connectionString));
        Task<List<int>> BackendsAsync() => OwnerSql.QueryAsync<int>(Host.ConnectionString,
            "SELECT pid FROM pg_stat_activity WHERE application_name = @application", new { application });
        Action<NpgsqlBatch> Raising(string sqlState) =>
            batch => batch.BatchCommands.Add(new NpgsqlBatchCommand($"DO $$ BEGIN RAISE EXCEPTION 'refused' USING ERRCODE = '{sqlState}'; END $$"));
        await batches.WriteAsync(tenant, Append(tenant, "test.first"));
        var backend = Assert.Single(await BackendsAsync());

        foreach (var sqlState in new[] { PostgresErrorCodes.SerializationFailure, PostgresErrorCodes.UniqueViolation })
        {
            Assert.Equal(sqlState, (await Assert.ThrowsAsync<PostgresException>(() => batches.WriteAsync(tenant, Raising(sqlState)))).SqlState);
        }
        await batches.WriteAsync(tenant, Append(tenant, "test.second"));
        Assert.Equal([backend], await BackendsAsync());

        var refused = await Assert.ThrowsAsync<PostgresException>(() => batches.WriteAsync(tenant, batch =>
            batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT $1::text") { Parameters = { new NpgsqlParameter { Value = "a\0b" } } })));
        Assert.Equal(PostgresErrorCodes.CharacterNotInRepertoire, refused.SqlState);
        await batches.WriteAsync(tenant, Append(tenant, "test.third"));
        Assert.DoesNotContain(backend, await BackendsAsync());
        Assert.Equal(["test.first", "test.second", "test.third"], (await EventsAsync(tenant)).Select(e => e.Action));
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    public async Task At_most_the_configured_number_of_a_tenants_batches_are_under_way_and_the_chain_stays_whole(int batchesInFlight)
    {
        using var signing = Host.SigningAuditEvents();
        var tenant = TestEnvironment.NewTenant();
        var application = $"batches-{Guid.NewGuid():N}";
        var connectionString = new NpgsqlConnectionStringBuilder(Host.ConnectionString) { ApplicationName = application }.ConnectionString;
        await using var batches = new TenantBatches(NpgsqlDataSource.Create(connectionString), batchesInFlight);
        var headLock = await LockChainHeadAsync(tenant);

        var writes = Enumerable.Range(0, 6).Select(i => batches.WriteAsync(tenant, Append(tenant, $"test.{i}"))).ToList();
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (await WaitingForLocksAsync(application) < batchesInFlight && DateTime.UtcNow < deadline) await Task.Delay(20);
        await Task.Delay(200);
        Assert.Equal(batchesInFlight, await WaitingForLocksAsync(application)); // the other writes queue in the service, not in PostgreSQL
        Assert.DoesNotContain(writes, w => w.IsCompleted);

        await headLock.DisposeAsync();
        await Task.WhenAll(writes).WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(6, (await EventsAsync(tenant)).Count);
        Assert.True((await Host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value.Valid);
    }

    [Fact]
    public async Task Another_tenants_failing_writes_leave_no_connection_that_breaks_a_tenants_writes()
    {
        using var signing = Host.SigningAuditEvents();
        var victim = TestEnvironment.NewTenant();
        var attacker = TestEnvironment.NewTenant();
        var victimCaller = TestEnvironment.CallerFor(victim);
        var attackerCaller = TestEnvironment.CallerFor(attacker);
        var victimErrors = new System.Collections.Concurrent.ConcurrentBag<Exception>();
        var victimWrites = 0;
        var attackerFailures = 0;
        // until both sides have done enough (a busy machine is slow), within a minute
        var deadline = DateTime.UtcNow.AddSeconds(60);
        bool Running() => DateTime.UtcNow < deadline && (Volatile.Read(ref victimWrites) < 2000 || Volatile.Read(ref attackerFailures) < 100);

        async Task VictimAsync()
        {
            while (Running())
            {
                try
                {
                    await Batches.WriteAsync(victim, new AuditWrite(victimCaller, [new AuditEvent("test.victim", "test", "1", new { n = 1 })], "run-ok"));
                    Interlocked.Increment(ref victimWrites);
                }
                catch (Exception e)
                {
                    victimErrors.Add(e);
                }
            }
        }

        async Task AttackerAsync(int i)
        {
            while (Running())
            {
                // a good write and a bad one share the attacker's batch; the bad one fails while PostgreSQL binds its parameters
                var good = Batches.WriteAsync(attacker, new AuditWrite(attackerCaller, [new AuditEvent("test.good", "test", "1", null)], "run-ok"));
                var bad = Batches.WriteAsync(attacker, new AuditWrite(attackerCaller, [new AuditEvent("test.bad", "test", "1", null)], $"run\0{i}"));
                try
                {
                    await good;
                }
                catch (Exception e)
                {
                    victimErrors.Add(e); // the tenant's own good writes must not suffer either
                }
                var refused = await Assert.ThrowsAnyAsync<Exception>(() => bad);
                if (refused is PostgresException { SqlState: PostgresErrorCodes.CharacterNotInRepertoire }) Interlocked.Increment(ref attackerFailures);
                else victimErrors.Add(refused);
            }
        }

        await Task.WhenAll(Enumerable.Range(0, 16).Select(_ => Task.Run(VictimAsync)).Concat(Enumerable.Range(0, 4).Select(i => Task.Run(() => AttackerAsync(i)))));

        Assert.True(attackerFailures >= 100 && victimWrites >= 2000, $"{victimWrites} writes, {attackerFailures} failing writes");
        Assert.Empty(victimErrors.Select(e => e.Message).Distinct());
        Assert.True((await Host.SendAsync(new VerifyAuditChain.Query(), victim)).Value.Valid);
        Assert.Equal(victimWrites, (await EventsAsync(victim)).Count);
    }

    /// <summary>
    /// The Npgsql defect <see cref="TenantBatches"/> works around: a statement refused while PostgreSQL binds its
    /// parameters, in the execution that auto-prepares it, stays marked prepared without its result description. When
    /// this test fails, the Npgsql in use has fixed it, and discarding a failing batch's connection can go.
    /// </summary>
    [Fact]
    public async Task Npgsql_still_breaks_a_statement_refused_in_the_execution_that_auto_prepares_it()
    {
        var connectionString = new NpgsqlConnectionStringBuilder(Host.ConnectionString) { MaxPoolSize = 1, MaxAutoPrepare = 8, AutoPrepareMinUsages = 5 }.ConnectionString;
        await using var dataSource = NpgsqlDataSource.Create(connectionString);
        async Task<int> CardinalityAsync(string value)
        {
            await using var command = dataSource.CreateCommand("SELECT cardinality($1)");
            command.Parameters.Add(new NpgsqlParameter { NpgsqlDbType = NpgsqlTypes.NpgsqlDbType.Array | NpgsqlTypes.NpgsqlDbType.Text, Value = new[] { value } });
            return (int)(await command.ExecuteScalarAsync())!;
        }

        for (var i = 0; i < 4; i++) Assert.Equal(1, await CardinalityAsync("x"));
        Assert.Equal(PostgresErrorCodes.CharacterNotInRepertoire, (await Assert.ThrowsAsync<PostgresException>(() => CardinalityAsync("x\0y"))).SqlState);

        var broken = await Assert.ThrowsAnyAsync<Exception>(() => CardinalityAsync("x"));
        Assert.Contains("unexpected backend message DataRow", broken.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Fewer_than_one_batch_in_flight_is_refused()
    {
        using var dataSource = NpgsqlDataSource.Create(Host.ConnectionString);
        Assert.Throws<ArgumentOutOfRangeException>(() => new TenantBatches(dataSource, 0));
    }

    private async Task<long> WaitingForLocksAsync(string application) =>
        await OwnerSql.ScalarAsync<long>(Host.ConnectionString,
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = @application AND wait_event_type = 'Lock'", new { application });
}
