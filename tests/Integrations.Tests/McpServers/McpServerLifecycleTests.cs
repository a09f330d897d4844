using System.Text.Json;
using Integrations.Common;
using Integrations.Features.Audit;
using Integrations.Features.McpServers;
using Integrations.Features.Policies;
using Integrations.Infrastructure.Mcp;
using Integrations.Pipeline.Governance;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.McpServers;

/// <summary>
/// mcp_servers.disable and mcp_servers.enable: a disabled server's tools are refused on the very next call (warm
/// replicas included), probes and discovery leave it disabled and keep no session open, enabling makes it pending
/// until it is checked again, and every move is checked, tenant-scoped and audited.
/// </summary>
public sealed class McpServerLifecycleTests(ServiceFixture fixture) : IClassFixture<ServiceFixture>, IAsyncLifetime
{
    private ServiceHost Host => fixture.Host;
    private TestMcpServer _mcp = null!;

    public async Task InitializeAsync()
    {
        _mcp = new TestMcpServer();
        await _mcp.StartAsync();
    }

    public async Task DisposeAsync() => await _mcp.DisposeAsync();

    private static async Task<(Guid Server, McpTool.Response Echo)> RegisterAsync(ServiceHost host, string tenant, TestMcpServer mcp)
    {
        var registered = await host.SendAsync(new RegisterMcpServer.Command("lifecycle", mcp.Endpoint.ToString()), tenant);
        Assert.True(registered.IsSuccess, registered.Error?.Detail);
        return (registered.Value.Server.Id, registered.Value.Tools.Single(t => t.Name == "echo"));
    }

    private static Task<Result<InvokeMcpTool.Response>> InvokeAsync(ServiceHost host, string tenant, Guid server, McpTool.Response tool) =>
        host.SendAsync(new InvokeMcpTool.Command(server, tool.Id, JsonDocument.Parse("""{"message":"hi"}""").RootElement.Clone()), tenant);

    /// <summary>Whether <paramref name="host"/> would decide the next call of the tool on its own copies of the rows and the policy.</summary>
    private static bool DecidesOnCachedRows(ServiceHost host, string tenant, Guid server, McpTool.Response tool) =>
        host.Services.GetRequiredService<GovernedTargetCache>().TryGet<ToolCall.Target>(tenant, new ToolCall.Key(server, tool.Id), out _)
        && host.Services.GetRequiredService<ToolPolicyStore>().TryGetCached(tenant, out _);

    private async Task<ListAuditEvents.Event> SingleEventAsync(string tenant, string action) =>
        Assert.Single((await Host.SendAsync(new ListAuditEvents.Query(Action: action), tenant)).Value.Items);

    [Fact]
    public async Task Disable_refuses_the_very_next_call_decided_on_cached_rows_and_enable_lets_calls_through_again()
    {
        await Host.WaitUntilListeningAsync();
        var tenant = TestEnvironment.NewTenant();
        var (server, echo) = await RegisterAsync(Host, tenant, _mcp);
        Assert.True((await InvokeAsync(Host, tenant, server, echo)).IsSuccess);
        Assert.True((await InvokeAsync(Host, tenant, server, echo)).IsSuccess);
        Assert.True(DecidesOnCachedRows(Host, tenant, server, echo), "the next call would be decided on the cached rows");
        var calls = _mcp.ToolCalls;

        var disabled = await Host.SendAsync(new DisableMcpServer.Command(server, "vendor incident 42"), tenant);
        var denied = await InvokeAsync(Host, tenant, server, echo);

        Assert.Equal("disabled", disabled.Value.Status);
        Assert.Equal(("policy_denied", 403, "server_disabled"), (denied.Error?.Code, denied.Error?.Status, denied.Error?.Extensions?["rule"]));
        Assert.Equal(calls, _mcp.ToolCalls);
        var row = Assert.Single((await Host.SendAsync(new ListToolInvocations.Query(server, Outcome: "denied"), tenant)).Value.Items);
        Assert.Equal("server_disabled", row.DecisionReason);
        Assert.Equal("disabled", (await Host.SendAsync(new GetMcpServer.Query(server), tenant)).Value.Status);

        var enabled = await Host.SendAsync(new EnableMcpServer.Command(server), tenant);
        Assert.Equal("pending", enabled.Value.Status);
        var allowed = await InvokeAsync(Host, tenant, server, echo);
        Assert.True(allowed.IsSuccess, allowed.Error?.Detail);
        Assert.Equal("Echo: hi", allowed.Value.Content[0].GetProperty("text").GetString());
        Assert.Equal(calls + 1, _mcp.ToolCalls);

        var disableEvent = await SingleEventAsync(tenant, DisableMcpServer.Command.Operation);
        Assert.Equal((McpServer.SubjectType, server.ToString()), (disableEvent.SubjectType, disableEvent.SubjectId));
        Assert.Equal("vendor incident 42", disableEvent.Details.GetProperty("reason").GetString());
        Assert.Equal(("active", "disabled"),
            (disableEvent.Details.GetProperty("previous_status").GetString(), disableEvent.Details.GetProperty("status").GetString()));
        var enableEvent = await SingleEventAsync(tenant, EnableMcpServer.Command.Operation);
        Assert.Equal(("disabled", "pending"),
            (enableEvent.Details.GetProperty("previous_status").GetString(), enableEvent.Details.GetProperty("status").GetString()));
        Assert.True((await Host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value.Valid);
    }

    [Fact]
    public async Task A_server_disabled_through_another_replica_is_refused_on_the_warm_replicas_next_call()
    {
        await using var other = await ServiceHost.StartAsync();
        await other.WaitUntilListeningAsync();
        var tenant = TestEnvironment.NewTenant();
        var (server, echo) = await RegisterAsync(Host, tenant, _mcp);
        Assert.True((await InvokeAsync(other, tenant, server, echo)).IsSuccess);
        Assert.True(DecidesOnCachedRows(other, tenant, server, echo));
        var calls = _mcp.ToolCalls;

        Assert.True((await Host.SendAsync(new DisableMcpServer.Command(server), tenant)).IsSuccess);
        var denied = await InvokeAsync(other, tenant, server, echo);

        Assert.Equal("server_disabled", denied.Error?.Extensions?["rule"]);
        Assert.Equal(calls, _mcp.ToolCalls);
    }

    [Fact]
    public async Task Disable_closes_the_pooled_session_and_health_checks_and_discovery_leave_the_server_disabled_without_one()
    {
        var tenant = TestEnvironment.NewTenant();
        var (server, echo) = await RegisterAsync(Host, tenant, _mcp);
        var sessions = Host.Services.GetRequiredService<McpSessions>();
        Assert.True((await InvokeAsync(Host, tenant, server, echo)).IsSuccess);
        Assert.True(sessions.HasSession(tenant, server));

        Assert.True((await Host.SendAsync(new DisableMcpServer.Command(server), tenant)).IsSuccess);
        Assert.False(sessions.HasSession(tenant, server));

        var health = await Host.SendAsync(new CheckMcpServerHealth.Command(server), tenant);
        Assert.True(health.IsSuccess, health.Error?.Detail);
        Assert.Equal(("disabled", "disabled"), (health.Value.Status, health.Value.PreviousStatus));
        Assert.NotNull(health.Value.LatencyMs);
        Assert.False(sessions.HasSession(tenant, server));

        var discovered = await Host.SendAsync(new DiscoverMcpServer.Command(server), tenant);
        Assert.True(discovered.IsSuccess, discovered.Error?.Detail);
        Assert.Equal("disabled", discovered.Value.Server.Status);
        Assert.NotNull(discovered.Value.Server.DiscoveredAt);
        Assert.False(sessions.HasSession(tenant, server));

        Assert.Equal("disabled", (await Host.SendAsync(new GetMcpServer.Query(server), tenant)).Value.Status);
        Assert.Equal("server_disabled", (await InvokeAsync(Host, tenant, server, echo)).Error?.Extensions?["rule"]);
    }

    [Fact]
    public async Task The_sweep_skips_a_disabled_server_and_checks_an_enabled_one_on_its_next_pass()
    {
        // Its own database: the sweep reads across tenants.
        var database = await TestEnvironment.CreateMigratedDatabaseAsync("lifecycle");
        await using var host = await ServiceHost.StartAsync(new Dictionary<string, string?>
        {
            ["ConnectionStrings:Integrations"] = database,
            ["Integrations:Mcp:HealthSweepInterval"] = "00:01:00",
        });
        var tenant = TestEnvironment.NewTenant();
        var (server, _) = await RegisterAsync(host, tenant, _mcp);
        var sweep = host.Services.GetRequiredService<McpHealthSweep>();
        await sweep.RunOnceAsync(CancellationToken.None);
        Assert.Equal(0, await sweep.RunOnceAsync(CancellationToken.None));

        Assert.True((await host.SendAsync(new DisableMcpServer.Command(server), tenant)).IsSuccess);
        Assert.Equal(0, await sweep.RunOnceAsync(CancellationToken.None));

        Assert.Equal("pending", (await host.SendAsync(new EnableMcpServer.Command(server), tenant)).Value.Status);
        Assert.Equal(1, await sweep.RunOnceAsync(CancellationToken.None));
        Assert.Equal("active", (await host.SendAsync(new GetMcpServer.Query(server), tenant)).Value.Status);
        Assert.Equal(0, await sweep.RunOnceAsync(CancellationToken.None));
    }

    [Fact]
    public async Task Disabling_a_disabled_server_or_enabling_one_that_is_not_disabled_is_409_invalid_transition()
    {
        var tenant = TestEnvironment.NewTenant();
        var (server, _) = await RegisterAsync(Host, tenant, _mcp);

        var enableActive = await Host.SendAsync(new EnableMcpServer.Command(server), tenant);
        Assert.Equal(("invalid_transition", 409, "active"),
            (enableActive.Error?.Code, enableActive.Error?.Status, enableActive.Error?.Extensions?["current_status"]));

        Assert.True((await Host.SendAsync(new DisableMcpServer.Command(server), tenant)).IsSuccess);
        var disableDisabled = await Host.SendAsync(new DisableMcpServer.Command(server, "again"), tenant);
        Assert.Equal(("invalid_transition", 409, "disabled"),
            (disableDisabled.Error?.Code, disableDisabled.Error?.Status, disableDisabled.Error?.Extensions?["current_status"]));

        Assert.True((await Host.SendAsync(new EnableMcpServer.Command(server), tenant)).IsSuccess);
        var enablePending = await Host.SendAsync(new EnableMcpServer.Command(server), tenant);
        Assert.Equal(("invalid_transition", "pending"), (enablePending.Error?.Code, enablePending.Error?.Extensions?["current_status"]));

        Assert.Equal(1L, await OwnerSql.AuditCountAsync(Host.ConnectionString, tenant, DisableMcpServer.Command.Operation));
        Assert.Equal(1L, await OwnerSql.AuditCountAsync(Host.ConnectionString, tenant, EnableMcpServer.Command.Operation));
    }

    [Fact]
    public async Task Another_tenants_deleted_or_unknown_servers_are_not_found_and_nothing_changes()
    {
        var (a, b) = (TestEnvironment.NewTenant(), TestEnvironment.NewTenant());
        var (server, _) = await RegisterAsync(Host, a, _mcp);
        var (deleted, _) = await RegisterAsync(Host, b, _mcp);
        Assert.True((await Host.SendAsync(new DisableMcpServer.Command(deleted), b)).IsSuccess);
        Assert.True((await Host.SendAsync(new DeleteMcpServer.Command(deleted), b)).IsSuccess);
        var auditBefore = await OwnerSql.AuditCountAsync(Host.ConnectionString, b);

        foreach (var id in new[] { server, deleted, Guid.NewGuid() })
        {
            Assert.Equal("not_found", (await Host.SendAsync(new DisableMcpServer.Command(id), b)).Error?.Code);
            Assert.Equal("not_found", (await Host.SendAsync(new EnableMcpServer.Command(id), b)).Error?.Code);
        }

        Assert.Equal("active", (await Host.SendAsync(new GetMcpServer.Query(server), a)).Value.Status);
        Assert.Equal(auditBefore, await OwnerSql.AuditCountAsync(Host.ConnectionString, b));
        Assert.Equal(1L, await OwnerSql.AuditCountAsync(Host.ConnectionString, a));
    }

    [Fact]
    public async Task A_reason_over_500_characters_is_refused_and_a_read_only_key_cannot_change_the_status()
    {
        var tenant = TestEnvironment.NewTenant();
        var (server, _) = await RegisterAsync(Host, tenant, _mcp);

        var tooLong = await Host.SendAsync(new DisableMcpServer.Command(server, new string('x', 501)), tenant);
        var readOnly = await Host.SendAsync(new DisableMcpServer.Command(server), tenant, Scopes.Read);

        Assert.Equal("validation_failed", tooLong.Error?.Code);
        Assert.True(tooLong.Error!.FieldErrors!.ContainsKey("reason"), string.Join(", ", tooLong.Error.FieldErrors.Keys));
        Assert.Equal("forbidden", readOnly.Error?.Code);
        Assert.Equal("active", (await Host.SendAsync(new GetMcpServer.Query(server), tenant)).Value.Status);
        Assert.True((await Host.SendAsync(new DisableMcpServer.Command(server, new string('x', 500)), tenant)).IsSuccess);
    }
}
