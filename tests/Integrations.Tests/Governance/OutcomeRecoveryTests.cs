using System.Net;
using System.Text.Json;
using Integrations.Common;
using Integrations.Features.Audit;
using Integrations.Features.Incidents;
using Integrations.Infrastructure.Audit;
using Integrations.Infrastructure.Database;
using Integrations.Pipeline.Governance;
using Integrations.Tests.Support;
using MediatR;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;
using NSubstitute;

namespace Integrations.Tests.Governance;

/// <summary>
/// Outcomes survive an outage: a database cut mid-call (a TCP proxy between the service and PostgreSQL drops every
/// connection) leaves the outcome in the local journal, written once when the database is back; a call whose process
/// never wrote an outcome is closed as unknown. Each test has a database of its own: recovery reads across tenants.
/// </summary>
public sealed class OutcomeRecoveryTests : IAsyncLifetime
{
    private readonly FakeCall.ISideEffect _effect = Substitute.For<FakeCall.ISideEffect>();
    private readonly FakeCall.Targets _targets = new();
    private readonly Clock _clock = new();
    private string _direct = null!;
    private TcpFaultProxy _proxy = null!;
    private ServiceHost _host = null!;

    public async Task InitializeAsync()
    {
        _direct = await TestEnvironment.CreateMigratedDatabaseAsync("outage");
        await OwnerSql.ExecuteAsync(_direct, """
            DO $$ BEGIN
                IF to_regclass('fake_call_records') IS NULL THEN
                    CREATE TABLE fake_call_records (id uuid PRIMARY KEY, tenant_id text NOT NULL, outcome text NOT NULL, reason text,
                        error text, incident_id uuid, finished_at timestamptz NOT NULL, duration_ms double precision NOT NULL);
                    PERFORM enable_tenant_isolation('fake_call_records', 'SELECT, INSERT');
                END IF;
            END $$;
            """);
        var direct = new NpgsqlConnectionStringBuilder(_direct);
        _proxy = TcpFaultProxy.Start(direct.Host!, direct.Port);
        _host = await StartHostAsync(new NpgsqlConnectionStringBuilder(_direct) { Port = _proxy.Port, Timeout = 3 }.ConnectionString);
    }

    /// <summary>A replica of the service on <paramref name="connectionString"/>; every replica reads the same clock.</summary>
    private Task<ServiceHost> StartHostAsync(string connectionString) =>
        ServiceHost.StartAsync(new Dictionary<string, string?>
        {
            ["Integrations:Governance:UnclosedCallAge"] = "00:00:00",
            ["Integrations:Governance:OutcomeRecoveryInterval"] = "00:00:05",
        },
            services =>
            {
                services.AddSingleton(_effect);
                services.AddSingleton(_targets);
                services.AddSingleton<TimeProvider>(_clock);
                services.AddGovernedCallKind<FakeCall.Command, FakeCall.Kind>();
                services.AddTransient<IRequestHandler<FakeCall.Command, Result<FakeCall.Response>>, FakeCall.Handler>();
            }, connectionString);

    /// <summary>The service's clock, moved ahead to let heartbeats lapse; audit events keep the real time.</summary>
    private sealed class Clock : TimeProvider
    {
        public TimeSpan Ahead { get; set; }

        public override DateTimeOffset GetUtcNow() => System.GetUtcNow() + Ahead;
    }

    public async Task DisposeAsync()
    {
        await _host.DisposeAsync();
        await _proxy.DisposeAsync();
    }

    private OutcomeJournal Journal => _host.Services.GetRequiredService<OutcomeJournal>();

    private OutcomeRecovery Recovery => _host.Services.GetRequiredService<OutcomeRecovery>();

    private Task<List<(string Action, string Correlation, string Details)>> EventsAsync(string tenant) =>
        OwnerSql.QueryAsync<(string, string, string)>(_direct,
            "SELECT action, correlation_id, details::text FROM audit_events WHERE tenant_id = @tenant ORDER BY seq", new { tenant });

    [Fact]
    public async Task An_outcome_the_database_could_not_take_is_journaled_and_written_once_when_it_is_back()
    {
        var tenant = TestEnvironment.NewTenant();
        _targets.Add(tenant, new FakeCall.Target { Name = "t1" });
        _effect.RunAsync("t1", Arg.Any<string?>(), Arg.Any<CancellationToken>()).Returns(_ =>
        {
            _proxy.Cut();
            return Result<string>.Ok("done");
        });

        var result = await _host.SendAsync(new FakeCall.Command("t1", "ok"), tenant);

        Assert.True(result.IsSuccess, result.Error?.Detail);
        var (_, entry) = Assert.Single(Journal.Pending());
        Assert.Equal(["fake.call.requested", "fake.call.allowed", "fake.call.started"], (await EventsAsync(tenant)).Select(e => e.Action));
        Assert.Equal(0, await Recovery.ReplayJournalAsync(CancellationToken.None)); // still cut: it waits
        Assert.Single(Journal.Pending());

        _proxy.Restore();
        Assert.Equal(1, await Recovery.ReplayJournalAsync(CancellationToken.None));

        Assert.Empty(Journal.Pending());
        var events = await EventsAsync(tenant);
        Assert.Equal(["fake.call.requested", "fake.call.allowed", "fake.call.started", "fake.call.completed"], events.Select(e => e.Action));
        Assert.All(events, e => Assert.Equal(result.Value.InvocationId.ToString(), e.Correlation));
        Assert.Equal(result.Value.DurationMs, JsonDocument.Parse(events[3].Details).RootElement.GetProperty("duration_ms").GetDouble());
        var record = Assert.Single(await OwnerSql.QueryAsync<(string, double)>(_direct,
            "SELECT outcome, duration_ms FROM fake_call_records WHERE tenant_id = @tenant", new { tenant }));
        Assert.Equal(("completed", result.Value.DurationMs), record);

        // The same entry again (a replica that crashed after committing, before deleting it) is not appended twice.
        await Journal.AppendAsync(entry);
        await Recovery.ReplayJournalAsync(CancellationToken.None);
        Assert.Equal(4, (await EventsAsync(tenant)).Count);
        Assert.True((await _host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value.Valid);
    }

    [Fact]
    public async Task A_failure_during_an_outage_opens_its_incident_when_written_and_the_event_and_record_name_it()
    {
        var tenant = TestEnvironment.NewTenant();
        _targets.Add(tenant, new FakeCall.Target { Name = "flaky" });
        _effect.RunAsync("flaky", Arg.Any<string?>(), Arg.Any<CancellationToken>()).Returns(_ =>
        {
            _proxy.Cut();
            return Result<string>.Fail(Error.UpstreamError("the upstream broke"));
        });

        var result = await _host.SendAsync(new FakeCall.Command("flaky", "ok"), tenant);

        Assert.Equal("upstream_error", result.Error?.Code);
        Assert.NotNull(Assert.Single(Journal.Pending()).Outcome.Incident);
        _proxy.Restore();
        Assert.Equal(1, await Recovery.ReplayJournalAsync(CancellationToken.None));

        var incident = Assert.Single((await _host.SendAsync(new ListIncidents.Query(), tenant)).Value.Items);
        var failed = (await EventsAsync(tenant))[^1];
        Assert.Equal("fake.call.failed", failed.Action);
        Assert.Equal(incident.Id.ToString(), JsonDocument.Parse(failed.Details).RootElement.GetProperty("incident_id").GetString());
        Assert.Equal([incident.Id], await OwnerSql.QueryAsync<Guid>(_direct, "SELECT incident_id FROM fake_call_records WHERE tenant_id = @tenant", new { tenant }));
    }

    /// <summary>A call that got as far as <c>started</c> and never further (its process is gone); its invocation id.</summary>
    private async Task<string> WriteLostCallAsync(ServiceHost host, string tenant, string target)
    {
        var lost = Guid.NewGuid().ToString();
        using var signing = host.SigningAuditEvents();
        await using var scope = host.Services.CreateAsyncScope();
        var caller = TestEnvironment.CallerFor(tenant);
        scope.ServiceProvider.GetRequiredService<CallerContext>().Set(caller);
        var session = scope.ServiceProvider.GetRequiredService<TenantSession>();
        var connection = await session.ConnectionAsync(CancellationToken.None);
        await AuditTrail.WriteAsync(connection, caller, [
            new AuditEvent("fake.call.requested", "fake_target", target, new { invocation_id = lost, target }),
            new AuditEvent("fake.call.started", "fake_target", target, new { invocation_id = lost, target })],
            CancellationToken.None, lost);
        await session.CommitAsync(CancellationToken.None);
        return lost;
    }

    /// <summary>A process's row as another process would find it (times are SQL relative to the database's now()).</summary>
    private Task<Guid> InstanceAsync(string startedAt, string lastSeen, string sweptAt = "NULL") =>
        OwnerSql.ScalarAsync<Guid>(_direct, $"""
            INSERT INTO service_instances (id, started_at, last_seen, swept_at)
            VALUES (gen_random_uuid(), {startedAt}, {lastSeen}, {sweptAt}) RETURNING id
            """);

    private Task<List<DateTime?>> SweptAtAsync(Guid instance) =>
        OwnerSql.QueryAsync<DateTime?>(_direct, "SELECT swept_at FROM service_instances WHERE id = @instance", new { instance });

    private async Task<int> ClosedAsync(string tenant, string correlation) =>
        (await EventsAsync(tenant)).Count(e => e.Correlation == correlation && e.Action == "fake.call.failed");

    private async Task UntilRegisteredAsync(OutcomeRecovery recovery)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while ((await SweptAtAsync(recovery.InstanceId)).Count == 0)
        {
            Assert.True(DateTime.UtcNow < deadline, "the process did not register within 10 s");
            await Task.Delay(20);
        }
    }

    [Fact]
    public async Task A_call_a_gone_process_left_started_without_an_outcome_is_closed_as_unknown_with_an_incident_once()
    {
        var tenant = TestEnvironment.NewTenant();
        _targets.Add(tenant, new FakeCall.Target { Name = "t1" });
        _effect.RunAsync("t1", Arg.Any<string?>(), Arg.Any<CancellationToken>()).Returns(Result<string>.Ok("done"));
        var finished = await _host.SendAsync(new FakeCall.Command("t1", "ok"), tenant);
        var lost = await WriteLostCallAsync(_host, tenant, "t1");
        var gone = await InstanceAsync("now() - interval '10 minutes'", "now()");
        _clock.Ahead = TimeSpan.FromMinutes(1); // its heartbeat has lapsed

        Assert.Equal(1, await Recovery.CloseUnclosedCallsAsync(CancellationToken.None));
        Assert.Equal(0, await Recovery.CloseUnclosedCallsAsync(CancellationToken.None));

        Assert.NotNull(Assert.Single(await SweptAtAsync(gone)));
        var closed = Assert.Single(await EventsAsync(tenant), e => e.Correlation == lost && e.Action == "fake.call.failed");
        var details = JsonDocument.Parse(closed.Details).RootElement;
        Assert.Equal((OutcomeRecovery.Unknown, "t1"), (details.GetProperty("outcome").GetString(), details.GetProperty("target").GetString()));
        var incident = Assert.Single((await _host.SendAsync(new ListIncidents.Query(), tenant)).Value.Items);
        Assert.Equal(("call_unknown", incident.Id.ToString()), (incident.Kind, details.GetProperty("incident_id").GetString()));
        var byKind = await _host.SendAsync(new ListIncidents.Query(Kind: "call_unknown"), tenant);   // a kind the list filter knows
        Assert.Equal(incident.Id, Assert.Single(byKind.Value.Items).Id);
        Assert.Single(await EventsAsync(tenant), e => e.Correlation == finished.Value.InvocationId.ToString() && e.Action == "fake.call.completed");
        Assert.True((await _host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value.Valid);
    }

    [Fact]
    public async Task A_process_that_lost_its_database_and_stopped_is_swept_once_by_replicas_racing()
    {
        var tenant = TestEnvironment.NewTenant();
        var recovery = Recovery;
        await recovery.StartAsync(CancellationToken.None);
        await UntilRegisteredAsync(recovery);
        var lost = await WriteLostCallAsync(_host, tenant, "t1");
        _proxy.Cut();
        await recovery.StopAsync(CancellationToken.None); // cannot mark itself stopped cleanly: the database is gone
        Assert.Null(Assert.Single(await SweptAtAsync(recovery.InstanceId)));

        await using var second = await StartHostAsync(_direct);
        await using var third = await StartHostAsync(_direct);
        _clock.Ahead = TimeSpan.FromMinutes(1);
        var closed = await Task.WhenAll(
            second.Services.GetRequiredService<OutcomeRecovery>().CloseUnclosedCallsAsync(CancellationToken.None),
            third.Services.GetRequiredService<OutcomeRecovery>().CloseUnclosedCallsAsync(CancellationToken.None),
            third.Services.GetRequiredService<OutcomeRecovery>().CloseUnclosedCallsAsync(CancellationToken.None));

        Assert.Equal(1, closed.Sum());
        Assert.Equal(1, await ClosedAsync(tenant, lost));
        Assert.NotNull(Assert.Single(await SweptAtAsync(recovery.InstanceId)));
        _proxy.Restore();
    }

    [Fact]
    public async Task A_call_of_a_live_process_is_not_touched_though_old_enough_until_its_heartbeat_lapses()
    {
        var tenant = TestEnvironment.NewTenant();
        var lost = await WriteLostCallAsync(_host, tenant, "t1");
        var live = await InstanceAsync("now() - interval '2 days'", "now()");
        await Recovery.HeartbeatAsync(CancellationToken.None);
        _clock.Ahead = TimeSpan.FromSeconds(10); // older than the unclosed-call age, but within three heartbeats

        Assert.Equal(0, await Recovery.CloseUnclosedCallsAsync(CancellationToken.None));
        Assert.Equal(0, await ClosedAsync(tenant, lost));
        Assert.Null(Assert.Single(await SweptAtAsync(live)));

        _clock.Ahead = TimeSpan.FromHours(1); // now it is gone; this process's own heartbeat has lapsed too, but it is alive
        Assert.Equal(1, await Recovery.CloseUnclosedCallsAsync(CancellationToken.None));
        Assert.Equal(1, await ClosedAsync(tenant, lost));
        Assert.NotNull(Assert.Single(await SweptAtAsync(live)));
        Assert.Null(Assert.Single(await SweptAtAsync(Recovery.InstanceId)));
    }

    [Fact]
    public async Task A_process_that_stopped_cleanly_is_never_swept()
    {
        var tenant = TestEnvironment.NewTenant();
        var recovery = Recovery;
        await recovery.StartAsync(CancellationToken.None);
        await UntilRegisteredAsync(recovery);
        var lost = await WriteLostCallAsync(_host, tenant, "t1"); // a start whose outcome it would have written had it been real

        await recovery.StopAsync(CancellationToken.None);

        Assert.NotNull(Assert.Single(await SweptAtAsync(recovery.InstanceId)));
        await using var other = await StartHostAsync(_direct);
        _clock.Ahead = TimeSpan.FromHours(1);
        Assert.Equal(0, await other.Services.GetRequiredService<OutcomeRecovery>().CloseUnclosedCallsAsync(CancellationToken.None));
        Assert.Equal(0, await ClosedAsync(tenant, lost));
    }

    [Fact]
    public async Task A_lost_call_outside_every_gone_process_window_is_left_alone_and_old_rows_are_forgotten_by_the_pruning_job()
    {
        var tenant = TestEnvironment.NewTenant();
        var lost = await WriteLostCallAsync(_host, tenant, "t1"); // as a call from before migration 0039 would be: no window covers it
        var goneBefore = await InstanceAsync("now() - interval '3 hours'", "now() - interval '2 hours'");
        var forgotten = await InstanceAsync("now() - interval '40 days'", "now() - interval '31 days'", "now() - interval '31 days'");
        _clock.Ahead = TimeSpan.FromMinutes(1);

        Assert.Equal(0, await Recovery.CloseUnclosedCallsAsync(CancellationToken.None));

        Assert.Equal(0, await ClosedAsync(tenant, lost));
        Assert.NotNull(Assert.Single(await SweptAtAsync(goneBefore)));
        Assert.NotNull(Assert.Single(await SweptAtAsync(forgotten)));

        var pruned = await _host.Services.GetRequiredService<ExpiredRowsPruning>().PruneOnceAsync(CancellationToken.None);

        Assert.True(pruned.ServiceInstances >= 1);
        Assert.Empty(await SweptAtAsync(forgotten));
        Assert.NotNull(Assert.Single(await SweptAtAsync(goneBefore)));
    }

    /// <summary>
    /// Calls of one busy subject written straight into the trail (its chain is not the point here), one every 100 µs from
    /// an hour ago: each started, its outcome about a hundred events later (as under concurrent calls), except every
    /// <paramref name="lostEvery"/>-th, which has none. A process that was serving them is gone since just after.
    /// </summary>
    private async Task WriteBusySubjectAsync(string tenant, int calls, int lostEvery)
    {
        await OwnerSql.ExecuteAsync(_direct, """
            WITH calls AS (SELECT j, gen_random_uuid()::text AS correlation FROM generate_series(1, @calls) j),
            events AS (
                SELECT c.j * 2 - 1 AS seq, 'fake.call.started' AS action, c.correlation FROM calls c
                UNION ALL
                SELECT c.j * 2 + 100, 'fake.call.completed', c.correlation FROM calls c WHERE c.j % @lostEvery <> 0)
            INSERT INTO audit_events (tenant_id, seq, occurred_at, actor, action, subject_type, subject_id, correlation_id, details, prev_hash, hash)
            SELECT @tenant, e.seq, now() - interval '1 hour' + e.seq * interval '100 microseconds', 'test', e.action, 'fake_target', 'busy',
                   e.correlation, jsonb_build_object('invocation_id', e.correlation, 'target', 'busy'), '\x00'::bytea, '\x00'::bytea
            FROM events e;
            INSERT INTO audit_chain_heads (tenant_id, last_seq) SELECT @tenant, max(seq) FROM audit_events WHERE tenant_id = @tenant;
            """, new { tenant, calls, lostEvery });
        await InstanceAsync("now() - interval '2 hours'", $"now() - interval '1 hour' + {calls * 2 + 100} * interval '100 microseconds'");
    }

    [Fact]
    public async Task A_window_with_more_lost_calls_than_a_page_is_swept_page_by_page_to_the_end()
    {
        var tenant = TestEnvironment.NewTenant();
        await WriteBusySubjectAsync(tenant, OutcomeRecovery.PageSize + 5, lostEvery: 1);

        Assert.Equal(OutcomeRecovery.PageSize + 5, await Recovery.CloseUnclosedCallsAsync(CancellationToken.None));

        Assert.Equal(OutcomeRecovery.PageSize + 5, await OwnerSql.AuditCountAsync(_direct, tenant, "fake.call.failed"));
        Assert.Equal(0, await Recovery.CloseUnclosedCallsAsync(CancellationToken.None));
    }

    [Fact]
    public async Task Twenty_thousand_calls_of_one_subject_in_a_window_are_swept_within_the_command_timeout()
    {
        var tenant = TestEnvironment.NewTenant();
        await WriteBusySubjectAsync(tenant, 20_000, lostEvery: 5_000);

        Assert.Equal(4, await Recovery.CloseUnclosedCallsAsync(CancellationToken.None));

        Assert.Equal(4, await OwnerSql.AuditCountAsync(_direct, tenant, "fake.call.failed"));
    }

    [Fact]
    public async Task While_the_database_is_unreachable_the_api_answers_503_unavailable_with_retry_after()
    {
        var viaProxy = new NpgsqlConnectionStringBuilder(_direct) { Port = _proxy.Port, Timeout = 3 }.ConnectionString;
        await using var api = ApiFactory.StartOn(viaProxy);
        var client = await api.ClientForAsync(TestEnvironment.NewTenant());
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/integrations")).StatusCode);

        _proxy.Cut();
        var response = await client.GetAsync("/integrations");

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("5", response.Headers.GetValues("Retry-After").Single());
        var problem = JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("unavailable", problem.GetProperty("code").GetString());
        Assert.DoesNotContain("Npgsql", problem.GetRawText());
        _proxy.Restore();
    }
}
