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
        var viaProxy = new NpgsqlConnectionStringBuilder(_direct) { Port = _proxy.Port, Timeout = 3 }.ConnectionString;
        _host = await ServiceHost.StartAsync(new Dictionary<string, string?> { ["Integrations:Governance:UnclosedCallAge"] = "00:00:00" },
            services =>
            {
                services.AddSingleton(_effect);
                services.AddSingleton(_targets);
                services.AddGovernedCallKind<FakeCall.Command, FakeCall.Kind>();
                services.AddTransient<IRequestHandler<FakeCall.Command, Result<FakeCall.Response>>, FakeCall.Handler>();
            }, viaProxy);
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

    [Fact]
    public async Task A_call_left_started_without_an_outcome_is_closed_as_unknown_with_an_incident_once()
    {
        var tenant = TestEnvironment.NewTenant();
        _targets.Add(tenant, new FakeCall.Target { Name = "t1" });
        _effect.RunAsync("t1", Arg.Any<string?>(), Arg.Any<CancellationToken>()).Returns(Result<string>.Ok("done"));
        var finished = await _host.SendAsync(new FakeCall.Command("t1", "ok"), tenant);
        var lost = Guid.NewGuid().ToString();
        using (_host.SigningAuditEvents())
        await using (var scope = _host.Services.CreateAsyncScope())
        {
            var caller = TestEnvironment.CallerFor(tenant);
            scope.ServiceProvider.GetRequiredService<CallerContext>().Set(caller);
            var session = scope.ServiceProvider.GetRequiredService<TenantSession>();
            var connection = await session.ConnectionAsync(CancellationToken.None);
            await AuditTrail.WriteAsync(connection, caller, [
                new AuditEvent("fake.call.requested", "fake_target", "t1", new { invocation_id = lost, target = "t1" }),
                new AuditEvent("fake.call.started", "fake_target", "t1", new { invocation_id = lost, target = "t1" })],
                CancellationToken.None, lost);
            await session.CommitAsync(CancellationToken.None);
        }

        Assert.Equal(1, await Recovery.CloseUnclosedCallsAsync(CancellationToken.None));
        Assert.Equal(0, await Recovery.CloseUnclosedCallsAsync(CancellationToken.None));

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
