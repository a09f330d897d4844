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

    /// <summary>Starts a write whose commands are only added once <paramref name="gate"/> opens, keeping the tenant's lane busy.</summary>
    private Task Blocking(string tenant, ManualResetEventSlim gate) =>
        Task.Run(() => Batches.WriteAsync(tenant, batch =>
        {
            gate.Wait(TimeSpan.FromSeconds(10));
            Append(tenant, "test.first")(batch);
        }));

    private async Task<List<(long Seq, string Action, DateTime OccurredAt)>> EventsAsync(string tenant) =>
        await Db.QueryAsync<(long, string, DateTime)>(Host.ConnectionString,
            "SELECT seq, action, occurred_at FROM audit_events WHERE tenant_id = @tenant ORDER BY seq", new { tenant });

    private static async Task UntilQueuedAsync(Task first)
    {
        await Task.Delay(100);
        Assert.False(first.IsCompleted);
    }

    [Fact]
    public async Task Writes_that_arrive_during_a_batch_commit_together_in_the_next_in_arrival_order()
    {
        var tenant = TestEnvironment.NewTenant();
        using var gate = new ManualResetEventSlim();
        var first = Blocking(tenant, gate);
        await UntilQueuedAsync(first);
        var queued = new List<Task>();
        for (var i = 0; i < 5; i++) queued.Add(Batches.WriteAsync(tenant, Append(tenant, $"test.queued.{i}")));

        gate.Set();
        await first;
        await Task.WhenAll(queued);

        var events = await EventsAsync(tenant);
        Assert.Equal(["test.first", "test.queued.0", "test.queued.1", "test.queued.2", "test.queued.3", "test.queued.4"], events.Select(e => e.Action));
        Assert.Single(events.Skip(1).Select(e => e.OccurredAt).Distinct()); // one transaction: now() is its start
        Assert.NotEqual(events[0].OccurredAt, events[1].OccurredAt);
        Assert.True((await Host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value.Valid);
    }

    [Fact]
    public async Task A_write_that_fails_in_a_shared_batch_fails_alone()
    {
        var tenant = TestEnvironment.NewTenant();
        using var gate = new ManualResetEventSlim();
        var first = Blocking(tenant, gate);
        await UntilQueuedAsync(first);
        var before = Batches.WriteAsync(tenant, Append(tenant, "test.before"));
        var failing = Batches.WriteAsync(tenant, batch =>
        {
            Append(tenant, "test.failing")(batch);
            batch.BatchCommands.Add(new NpgsqlBatchCommand("SELECT 1 / 0"));
        });
        var after = Batches.WriteAsync(tenant, Append(tenant, "test.after"));

        gate.Set();
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
        var busy = TestEnvironment.NewTenant();
        var other = TestEnvironment.NewTenant();
        using var gate = new ManualResetEventSlim();
        var first = Blocking(busy, gate);
        await UntilQueuedAsync(first);

        await Batches.WriteAsync(other, Append(other, "test.other")).WaitAsync(TimeSpan.FromSeconds(5));

        gate.Set();
        await first;
        Assert.Single(await EventsAsync(other));
    }
}
