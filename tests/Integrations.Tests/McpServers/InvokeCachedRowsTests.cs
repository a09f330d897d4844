using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json;
using Integrations.Common;
using Integrations.Features.Audit;
using Integrations.Features.Credentials;
using Integrations.Features.McpServers;
using Integrations.Infrastructure.Telemetry;
using Integrations.Pipeline.Governance;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.McpServers;

/// <summary>
/// tools.invoke on a warm replica decides on its copy of the tool and server rows and records the decision in one
/// round trip that first checks the rows are unchanged: the same events in the same order, and any change (another
/// replica, plain SQL) takes effect on the very next call without waiting for a notification.
/// </summary>
public sealed class InvokeCachedRowsTests(ServiceFixture fixture) : IClassFixture<ServiceFixture>, IAsyncLifetime
{
    private ServiceHost Host => fixture.Host;
    private TestMcpServer _mcp = null!;
    private readonly ConcurrentDictionary<string, string?> _admissions = new();
    private ActivityListener? _listener;

    public async Task InitializeAsync()
    {
        _mcp = new TestMcpServer();
        await _mcp.StartAsync();
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == Telemetry.Name,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity =>
            {
                if (activity.GetTagItem("integrations.invocation_id") is string id)
                {
                    _admissions[id] = activity.GetTagItem(CallAdmission.AdmissionTag) as string;
                }
            },
        };
        ActivitySource.AddActivityListener(_listener);
    }

    public async Task DisposeAsync()
    {
        _listener?.Dispose();
        await _mcp.DisposeAsync();
    }

    private static JsonElement Args(string json) => JsonDocument.Parse(json).RootElement.Clone();

    private async Task<(Guid Server, McpTool.Response Echo)> RegisterAsync(string tenant, string? credentialRef = null)
    {
        var registered = await Host.SendAsync(new RegisterMcpServer.Command("test", _mcp.Endpoint.ToString(), credentialRef), tenant);
        Assert.True(registered.IsSuccess, registered.Error?.Detail);
        return (registered.Value.Server.Id, registered.Value.Tools.Single(t => t.Name == "echo"));
    }

    private static Task<Result<InvokeMcpTool.Response>> InvokeAsync(ServiceHost host, string tenant, Guid server, McpTool.Response tool) =>
        host.SendAsync(new InvokeMcpTool.Command(server, tool.Id, Args("""{"message":"hi"}""")), tenant);

    private string? AdmissionOf(Guid invocationId) => _admissions.GetValueOrDefault(invocationId.ToString());

    private string? AdmissionOf<T>(Result<T> result) =>
        AdmissionOf(result.IsSuccess ? ((InvokeMcpTool.Response)(object)result.Value!).InvocationId : (Guid)result.Error!.Extensions!["invocation_id"]!);

    private async Task<List<ListAuditEvents.Event>> EventsAsync(string tenant) =>
        [.. (await Host.SendAsync(new ListAuditEvents.Query(Limit: 200), tenant)).Value.Items.OrderBy(e => e.Seq)];

    [Fact]
    public async Task Calls_after_the_first_are_decided_on_the_cached_rows_and_keep_their_four_ordered_events()
    {
        await Host.WaitUntilListeningAsync();
        var tenant = TestEnvironment.NewTenant();
        var (server, echo) = await RegisterAsync(tenant);

        var results = new List<InvokeMcpTool.Response>();
        for (var i = 0; i < 3; i++)
        {
            var result = await InvokeAsync(Host, tenant, server, echo);
            Assert.True(result.IsSuccess, result.Error?.Detail);
            results.Add(result.Value);
        }

        Assert.Equal(["read", "cached", "cached"], results.Select(r => AdmissionOf(r.InvocationId)));
        var events = await EventsAsync(tenant);
        foreach (var result in results)
        {
            Assert.Equal(["tool.invocation.requested", "tool.invocation.allowed", "tool.invocation.started", "tool.invocation.completed"],
                events.Where(e => e.CorrelationId == result.InvocationId.ToString()).Select(e => e.Action));
        }
        Assert.Equal(3, (await Host.SendAsync(new ListToolInvocations.Query(server), tenant)).Value.Items.Count(i => i.Outcome == "completed"));
        Assert.True((await Host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value.Valid);
    }

    [Fact]
    public async Task A_tool_disabled_through_another_replica_is_denied_on_the_next_call_without_waiting_for_a_notification()
    {
        await using var other = await ServiceHost.StartAsync();
        await other.WaitUntilListeningAsync();
        var tenant = TestEnvironment.NewTenant();
        var (server, echo) = await RegisterAsync(tenant);
        Assert.True((await InvokeAsync(other, tenant, server, echo)).IsSuccess);
        Assert.Equal("cached", AdmissionOf(await InvokeAsync(other, tenant, server, echo)));
        var calls = _mcp.ToolCalls;

        await Host.SendAsync(new UpdateMcpTool.Command(server, echo.Id, new UpdateMcpTool.Body(Enabled: false)), tenant);
        var denied = await InvokeAsync(other, tenant, server, echo);

        Assert.Equal(("policy_denied", "tool_disabled"), (denied.Error?.Code, denied.Error?.Extensions?["rule"]));
        Assert.Equal("read", AdmissionOf(denied));
        Assert.Equal(calls, _mcp.ToolCalls);
        var row = (await Host.SendAsync(new ListToolInvocations.Query(server, Outcome: "denied"), tenant)).Value.Items.Single();
        Assert.Equal("tool_disabled", row.DecisionReason);
    }

    [Fact]
    public async Task A_change_made_with_plain_sql_is_seen_on_the_next_call()
    {
        await Host.WaitUntilListeningAsync();
        var tenant = TestEnvironment.NewTenant();
        var (server, echo) = await RegisterAsync(tenant);
        Assert.True((await InvokeAsync(Host, tenant, server, echo)).IsSuccess);
        Assert.True((await InvokeAsync(Host, tenant, server, echo)).IsSuccess);

        await OwnerSql.ExecuteAsync(Host.ConnectionString, "UPDATE mcp_servers SET status = 'disabled' WHERE id = @server", new { server });

        var denied = await InvokeAsync(Host, tenant, server, echo);
        Assert.Equal("server_disabled", denied.Error?.Extensions?["rule"]);
    }

    [Fact]
    public async Task A_server_deleted_through_another_replica_is_not_found_on_the_next_call()
    {
        await using var other = await ServiceHost.StartAsync();
        await other.WaitUntilListeningAsync();
        var tenant = TestEnvironment.NewTenant();
        var (server, echo) = await RegisterAsync(tenant);
        Assert.True((await InvokeAsync(other, tenant, server, echo)).IsSuccess);
        Assert.True((await InvokeAsync(other, tenant, server, echo)).IsSuccess);

        Assert.True((await Host.SendAsync(new DeleteMcpServer.Command(server), tenant)).IsSuccess);

        Assert.Equal("not_found", (await InvokeAsync(other, tenant, server, echo)).Error?.Code);
    }

    [Fact]
    public async Task On_a_warm_replica_too_the_server_is_not_called_when_the_audit_trail_cannot_be_written()
    {
        var connectionString = await TestEnvironment.CreateMigratedDatabaseAsync("failclosed");
        await using var host = await ServiceHost.StartAsync(connectionString: connectionString);
        await host.WaitUntilListeningAsync();
        var tenant = TestEnvironment.NewTenant();
        var registered = await host.SendAsync(new RegisterMcpServer.Command("test", _mcp.Endpoint.ToString()), tenant);
        var echo = registered.Value.Tools.Single(t => t.Name == "echo");
        Assert.True((await InvokeAsync(host, tenant, registered.Value.Server.Id, echo)).IsSuccess);
        Assert.True((await InvokeAsync(host, tenant, registered.Value.Server.Id, echo)).IsSuccess);
        var calls = _mcp.ToolCalls;
        await OwnerSql.ExecuteAsync(connectionString, "REVOKE INSERT ON audit_events FROM integrations_app");

        var result = await InvokeAsync(host, tenant, registered.Value.Server.Id, echo);

        Assert.Equal(("unavailable", 503), (result.Error?.Code, result.Error?.Status));
        Assert.Equal(calls, _mcp.ToolCalls);
        Assert.Equal(2L, await OwnerSql.ScalarAsync<long>(connectionString, "SELECT count(*) FROM mcp_tool_invocations"));
    }

    [Fact]
    public async Task With_a_credential_started_follows_its_resolution_and_a_failed_resolution_records_no_start()
    {
        await using var secured = new TestMcpServer { RequiredBearerToken = "token-1" };
        await secured.StartAsync();
        await Host.WaitUntilListeningAsync();
        var tenant = TestEnvironment.NewTenant();
        var credential = (await Host.SendAsync(new StoreCredential.Command("mcp", "bearer_token", Secret: "token-1"), tenant)).Value;
        var registered = await Host.SendAsync(new RegisterMcpServer.Command("secured", secured.Endpoint.ToString(), credential.Reference), tenant);
        Assert.True(registered.IsSuccess, registered.Error?.Detail);
        var server = registered.Value.Server.Id;
        var echo = registered.Value.Tools.Single(t => t.Name == "echo");
        Assert.True((await InvokeAsync(Host, tenant, server, echo)).IsSuccess);

        var warm = await InvokeAsync(Host, tenant, server, echo);
        Assert.True(warm.IsSuccess, warm.Error?.Detail);
        Assert.Equal("cached", AdmissionOf(warm.Value.InvocationId));
        var events = await EventsAsync(tenant);
        var mine = events.Where(e => e.CorrelationId == warm.Value.InvocationId.ToString()).ToList();
        Assert.Equal(["tool.invocation.requested", "tool.invocation.allowed", "tool.invocation.started", "tool.invocation.completed"], mine.Select(e => e.Action));
        var accessed = events.Last(e => e.Action == "credential.accessed");
        Assert.InRange(accessed.Seq, mine[1].Seq + 1, mine[2].Seq - 1);
        // The access record and `started` commit together (one commit before the call), after the admission's commit.
        Assert.Equal(2L, await OwnerSql.ScalarAsync<long>(Host.ConnectionString,
            "SELECT count(DISTINCT xmin::text) FROM audit_events WHERE tenant_id = @tenant AND seq = ANY(@seqs)",
            new { tenant, seqs = new[] { mine[1].Seq, accessed.Seq, mine[2].Seq } }));
        Assert.Equal(1L, await OwnerSql.ScalarAsync<long>(Host.ConnectionString,
            "SELECT count(DISTINCT xmin::text) FROM audit_events WHERE tenant_id = @tenant AND seq = ANY(@seqs)",
            new { tenant, seqs = new[] { accessed.Seq, mine[2].Seq } }));

        Assert.True((await Host.SendAsync(new DeleteCredential.Command(credential.Id), tenant)).IsSuccess);
        var failed = await InvokeAsync(Host, tenant, server, echo);
        Assert.False(failed.IsSuccess);
        var failedId = failed.Error!.Extensions!["invocation_id"]!.ToString();
        Assert.Equal(["tool.invocation.requested", "tool.invocation.allowed", "tool.invocation.failed"],
            (await EventsAsync(tenant)).Where(e => e.CorrelationId == failedId).Select(e => e.Action));
    }
}
