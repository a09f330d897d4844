using Integrations.Common;
using Integrations.Features.McpServers;
using Integrations.Infrastructure.Mcp;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.McpServers;

/// <summary>mcp_servers.health: ping (server/discover on the sessionless revision, initialize when ping is refused), status and the sweep.</summary>
public sealed class McpHealthTests(FastFailingHostFixture fixture) : IClassFixture<FastFailingHostFixture>
{
    private ServiceHost Host => fixture.Host;

    private static async Task<TestMcpServer> StartAsync(Action<TestMcpServer>? configure = null)
    {
        var server = new TestMcpServer();
        configure?.Invoke(server);
        await server.StartAsync();
        return server;
    }

    private static async Task<Guid> RegisterAsync(ServiceHost host, string tenant, TestMcpServer mcp)
    {
        var registered = await host.SendAsync(new RegisterMcpServer.Command("health", mcp.Endpoint.ToString()), tenant);
        Assert.True(registered.IsSuccess, registered.Error?.Detail);
        return registered.Value.Server.Id;
    }

    [Fact]
    public async Task A_healthy_server_is_active_with_its_latency_recorded_and_audited()
    {
        await using var mcp = await StartAsync();
        var tenant = TestEnvironment.NewTenant();
        var id = await RegisterAsync(Host, tenant, mcp);

        var health = await Host.SendAsync(new CheckMcpServerHealth.Command(id), tenant);

        Assert.True(health.IsSuccess, health.Error?.Detail);
        Assert.Equal(("active", "server/discover"), (health.Value.Status, health.Value.Method));
        Assert.NotNull(health.Value.LatencyMs);
        var server = (await Host.SendAsync(new GetMcpServer.Query(id), tenant)).Value;
        Assert.Equal(health.Value.CheckedAt, server.LastHealthCheckAt);
        Assert.Equal(health.Value.LatencyMs, server.HealthLatencyMs);
        Assert.Equal(1L, await OwnerSql.AuditCountAsync(Host.ConnectionString, tenant, "mcp_servers.health"));
    }

    [Fact]
    public async Task Status_follows_the_server_from_active_to_degraded_to_unreachable()
    {
        var mcp = await StartAsync();
        var tenant = TestEnvironment.NewTenant();
        var id = await RegisterAsync(Host, tenant, mcp);

        mcp.ForcedStatusCode = 500;
        var failing = (await Host.SendAsync(new CheckMcpServerHealth.Command(id), tenant)).Value;
        Assert.Equal(("degraded", "active"), (failing.Status, failing.PreviousStatus));
        Assert.Contains("HTTP 500", failing.Detail);
        Assert.NotNull(failing.IncidentId);

        mcp.ForcedStatusCode = null;
        var recovered = (await Host.SendAsync(new CheckMcpServerHealth.Command(id), tenant)).Value;
        Assert.Equal("active", recovered.Status);
        Assert.Null(recovered.IncidentId);

        await mcp.DisposeAsync();
        var gone = (await Host.SendAsync(new CheckMcpServerHealth.Command(id), tenant)).Value;
        Assert.Equal("unreachable", gone.Status);
        Assert.Equal("upstream_unreachable", gone.ErrorCode);
        Assert.Null(gone.LatencyMs);
        var stored = (await Host.SendAsync(new GetMcpServer.Query(id), tenant)).Value;
        Assert.Equal("unreachable", stored.Status);
        Assert.Contains("could not be reached", stored.HealthDetail);
        Assert.Equal(failing.IncidentId, gone.IncidentId);
        var (occurrences, severity) = (await OwnerSql.QueryAsync<(int, string)>(Host.ConnectionString,
            "SELECT occurrences, severity FROM incidents WHERE tenant_id = @tenant AND kind = 'health_failure'", new { tenant })).Single();
        Assert.Equal((2, "high"), (occurrences, severity)); // degraded opened it at medium; unreachable raised it
    }

    [Fact]
    public async Task A_slow_answer_is_degraded()
    {
        await using var host = await ServiceHost.StartAsync(new Dictionary<string, string?>(FastFailingHostFixture.Settings)
        {
            ["Integrations:Mcp:DegradedLatency"] = "00:00:00.100",
        });
        await using var mcp = await StartAsync();
        var tenant = TestEnvironment.NewTenant();
        var id = await RegisterAsync(host, tenant, mcp);
        mcp.Delay = TimeSpan.FromMilliseconds(300);

        var health = (await host.SendAsync(new CheckMcpServerHealth.Command(id), tenant)).Value;

        Assert.Equal("degraded", health.Status);
        Assert.True(health.LatencyMs >= 250, $"latency {health.LatencyMs} ms");
        Assert.Contains("slower than 100 ms", health.Detail);
    }

    [Fact]
    public async Task A_session_server_is_pinged_and_one_that_refuses_ping_is_probed_with_initialize()
    {
        await using var host = await ServiceHost.StartAsync(new Dictionary<string, string?>(FastFailingHostFixture.Settings)
        {
            ["Integrations:Mcp:ProtocolVersion"] = "2025-11-25",
        });
        await using var mcp = await StartAsync(s => s.IssueSessions = true);
        var tenant = TestEnvironment.NewTenant();
        var id = await RegisterAsync(host, tenant, mcp);

        var pinged = (await host.SendAsync(new CheckMcpServerHealth.Command(id), tenant)).Value;
        Assert.Equal(("active", "ping"), (pinged.Status, pinged.Method));

        mcp.RejectPing = true;
        var initializeBefore = mcp.Count("initialize");
        var fallback = (await host.SendAsync(new CheckMcpServerHealth.Command(id), tenant)).Value;

        Assert.Equal(("active", "initialize"), (fallback.Status, fallback.Method));
        Assert.Equal(initializeBefore + 1, mcp.Count("initialize"));
    }

    [Fact]
    public async Task The_sweep_checks_servers_due_as_a_system_caller_and_skips_recent_ones()
    {
        // Its own database: the sweep reads across tenants.
        var database = await TestEnvironment.CreateMigratedDatabaseAsync("sweep");
        await using var host = await ServiceHost.StartAsync(new Dictionary<string, string?>(FastFailingHostFixture.Settings)
        {
            ["ConnectionStrings:Integrations"] = database,
            ["Integrations:Mcp:HealthSweepInterval"] = "00:01:00",
        });
        await using var mcp = await StartAsync();
        var (a, b) = (TestEnvironment.NewTenant(), TestEnvironment.NewTenant());
        var idA = await RegisterAsync(host, a, mcp);
        var idB = await RegisterAsync(host, b, mcp);
        Assert.True((await host.SendAsync(new DeleteMcpServer.Command(idB), b)).IsSuccess);
        var sweep = host.Services.GetRequiredService<McpHealthSweep>();

        Assert.Equal(1, await sweep.RunOnceAsync(CancellationToken.None));
        Assert.Equal(0, await sweep.RunOnceAsync(CancellationToken.None));

        var server = (await host.SendAsync(new GetMcpServer.Query(idA), a)).Value;
        Assert.NotNull(server.LastHealthCheckAt);
        Assert.Equal(McpHealthSweep.Actor, await OwnerSql.ScalarAsync<string>(database,
            "SELECT actor FROM audit_events WHERE tenant_id = @a AND action = 'mcp_servers.health'", new { a }));
    }

    [Fact]
    public void Tests_turn_the_sweep_off_through_the_service_wide_health_sweep_interval()
    {
        var settings = McpOptions.FromConfiguration(TestEnvironment.Configuration("Host=unused"));

        Assert.Equal(TimeSpan.Zero, settings.HealthSweepInterval);
    }

    [Theory]
    [InlineData("RequestTimeout", "00:00:00")]
    [InlineData("MaxResponseBytes", "10")]
    [InlineData("BreakerMinimumThroughput", "1")]
    [InlineData("BreakerFailureRatio", "1.5")]
    [InlineData("RetryAttempts", "-1")]
    public void Invalid_mcp_settings_stop_start_up_with_the_section_named(string key, string value)
    {
        var configuration = TestEnvironment.Configuration("Host=unused", new Dictionary<string, string?> { [$"Integrations:Mcp:{key}"] = value });

        var error = Assert.Throws<InvalidOperationException>(() => McpOptions.FromConfiguration(configuration));

        Assert.Contains("Integrations:Mcp", error.Message);
    }

    [Fact]
    public async Task Health_of_an_unknown_server_is_not_found_and_writes_nothing()
    {
        var tenant = TestEnvironment.NewTenant();

        var result = await Host.SendAsync(new CheckMcpServerHealth.Command(Guid.NewGuid()), tenant);

        Assert.Equal("not_found", result.Error?.Code);
        Assert.Equal(0L, await OwnerSql.AuditCountAsync(Host.ConnectionString, tenant));
    }

    [Fact]
    public async Task A_read_only_key_cannot_run_a_health_check_but_can_read_the_last_one()
    {
        await using var mcp = await StartAsync();
        var tenant = TestEnvironment.NewTenant();
        var id = await RegisterAsync(Host, tenant, mcp);

        var check = await Host.SendAsync(new CheckMcpServerHealth.Command(id), tenant, Scopes.Read);
        var read = await Host.SendAsync(new GetMcpServer.Query(id), tenant, Scopes.Read);

        Assert.Equal("forbidden", check.Error?.Code);
        Assert.True(read.IsSuccess);
    }
}
