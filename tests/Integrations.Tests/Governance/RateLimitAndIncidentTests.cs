using Integrations.Features.Incidents;
using Integrations.Infrastructure.Database;
using Integrations.Pipeline.Governance;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;
using Npgsql;

namespace Integrations.Tests.Governance;

public sealed class RateLimitAndIncidentTests(ServiceFixture fixture) : IClassFixture<ServiceFixture>
{
    private ServiceHost Host => fixture.Host;

    [Fact]
    public async Task The_call_after_the_limit_is_refused_with_the_time_left_even_across_replicas()
    {
        await using var other = await ServiceHost.StartAsync();
        var tenant = TestEnvironment.NewTenant();
        var limiter = Host.Services.GetRequiredService<RateLimiter>();

        async Task<RateLimitDecision> Acquire(ServiceHost host)
        {
            await using var connection = await host.OpenTenantConnectionAsync(tenant);
            return await limiter.AcquireAsync(connection, tenant, "tool:echo", 3, CancellationToken.None);
        }

        // A minute boundary between calls would reset the window: start early in one.
        while (DateTime.UtcNow.Second > 50) await Task.Delay(500);
        Assert.True((await Acquire(Host)).Allowed);
        Assert.True((await Acquire(other)).Allowed);
        Assert.True((await Acquire(Host)).Allowed);
        var refused = await Acquire(other);

        Assert.False(refused.Allowed);
        Assert.Equal(4, refused.Count);
        Assert.InRange(refused.RetryAfter.TotalSeconds, 1, 60);
    }

    [Fact]
    public async Task Pruning_drops_every_tenants_windows_older_than_an_hour_and_keeps_the_current_ones()
    {
        var (a, b) = (TestEnvironment.NewTenant(), TestEnvironment.NewTenant());
        await OwnerSql.ExecuteAsync(Host.ConnectionString, """
            INSERT INTO rate_limit_counters (tenant_id, key, window_start, count) VALUES
                (@a, 'tool:old', date_trunc('minute', now()) - interval '2 hours', 5),
                (@b, 'tool:old', date_trunc('minute', now()) - interval '61 minutes', 5),
                (@a, 'tool:now', date_trunc('minute', now()), 1),
                (@b, 'tool:recent', date_trunc('minute', now()) - interval '30 minutes', 1)
            """, new { a, b });

        var pruned = (await Host.Services.GetRequiredService<ExpiredRowsPruning>().PruneOnceAsync(CancellationToken.None)).RateLimitWindows;

        Assert.True(pruned >= 2);
        var left = await OwnerSql.QueryAsync<(string, string)>(Host.ConnectionString,
            "SELECT tenant_id, key FROM rate_limit_counters WHERE tenant_id IN (@a, @b) ORDER BY key", new { a, b });
        Assert.Equal([(a, "tool:now"), (b, "tool:recent")], left);
    }

    private async Task<RecordedIncident> RecordAsync(string tenant, string dedupKey, string message = "boom", string severity = "high")
    {
        await using var connection = await Host.OpenTenantConnectionAsync(tenant);
        return await Host.Services.GetRequiredService<IncidentRecorder>().OpenOrBumpAsync(connection, tenant,
            new IncidentReport("tool_failure", severity, "mcp_tool", "tool-1", dedupKey, message), CancellationToken.None);
    }

    [Fact]
    public async Task A_bump_raises_the_severity_to_the_worst_seen_and_never_lowers_it()
    {
        var tenant = TestEnvironment.NewTenant();
        var opened = await RecordAsync(tenant, "server-1/echo", severity: "medium");
        Assert.Equal("medium", Assert.Single((await Host.SendAsync(new ListIncidents.Query(), tenant)).Value.Items).Severity);

        await RecordAsync(tenant, "server-1/echo", severity: "critical");
        await RecordAsync(tenant, "server-1/echo", severity: "low");

        var listed = Assert.Single((await Host.SendAsync(new ListIncidents.Query(), tenant)).Value.Items);
        Assert.Equal((opened.Id, 3, "critical"), (listed.Id, listed.Occurrences, listed.Severity));
    }

    [Fact]
    public async Task A_repeat_failure_bumps_the_open_incident_and_after_resolution_opens_a_new_one()
    {
        var tenant = TestEnvironment.NewTenant();
        var first = await RecordAsync(tenant, "server-1/echo");
        var second = await RecordAsync(tenant, "server-1/echo", "boom again");
        Assert.Equal((first.Id, 2), (second.Id, second.Occurrences));

        var listed = Assert.Single((await Host.SendAsync(new ListIncidents.Query(), tenant)).Value.Items);
        Assert.Equal(("open", 2, "boom again"), (listed.Status, listed.Occurrences, listed.Message));

        Assert.Equal("acknowledged", (await Host.SendAsync(new AcknowledgeIncident.Command(first.Id), tenant)).Value.Status);
        Assert.Equal(first.Id, (await RecordAsync(tenant, "server-1/echo")).Id);
        var resolved = (await Host.SendAsync(new ResolveIncident.Command(first.Id), tenant)).Value;
        Assert.Equal(("resolved", $"test:{tenant}"), (resolved.Status, resolved.ResolvedBy));

        var reopened = await RecordAsync(tenant, "server-1/echo");
        Assert.NotEqual(first.Id, reopened.Id);
        Assert.Equal(1, reopened.Occurrences);
        Assert.Equal(2, await OwnerSql.AuditCountAsync(Host.ConnectionString, tenant));
    }

    [Fact]
    public async Task Incident_transitions_are_checked_and_list_filters_apply()
    {
        var tenant = TestEnvironment.NewTenant();
        var a = await RecordAsync(tenant, "a");
        await RecordAsync(tenant, "b");
        await Host.SendAsync(new ResolveIncident.Command(a.Id), tenant);

        Assert.Equal("invalid_transition", (await Host.SendAsync(new AcknowledgeIncident.Command(a.Id), tenant)).Error?.Code);
        Assert.Equal("invalid_transition", (await Host.SendAsync(new ResolveIncident.Command(a.Id), tenant)).Error?.Code);
        Assert.Single((await Host.SendAsync(new ListIncidents.Query(Status: "open"), tenant)).Value.Items);
        Assert.Equal(2, (await Host.SendAsync(new ListIncidents.Query(Kind: "tool_failure"), tenant)).Value.Items.Count);
        Assert.Empty((await Host.SendAsync(new ListIncidents.Query(Kind: "health_failure"), tenant)).Value.Items);
        var firstPage = (await Host.SendAsync(new ListIncidents.Query(Limit: 1), tenant)).Value;
        var secondPage = (await Host.SendAsync(new ListIncidents.Query(Limit: 1, Cursor: firstPage.NextCursor), tenant)).Value;
        Assert.Equal(a.Id, Assert.Single(secondPage.Items).Id);
        Assert.Equal("validation_failed", (await Host.SendAsync(new ListIncidents.Query(Status: "closed"), tenant)).Error?.Code);
    }

    [Fact]
    public async Task Another_tenant_cannot_see_or_change_an_incident()
    {
        var owner = TestEnvironment.NewTenant();
        var intruder = TestEnvironment.NewTenant();
        var incident = await RecordAsync(owner, "x");

        Assert.Empty((await Host.SendAsync(new ListIncidents.Query(), intruder)).Value.Items);
        Assert.Equal("not_found", (await Host.SendAsync(new AcknowledgeIncident.Command(incident.Id), intruder)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new ResolveIncident.Command(incident.Id), intruder)).Error?.Code);
        Assert.Equal("open", Assert.Single((await Host.SendAsync(new ListIncidents.Query(), owner)).Value.Items).Status);
    }
}
