using System.Diagnostics;
using System.Text.Json;
using Integrations.Common;
using Integrations.Features.Audit;
using Integrations.Features.Credentials;
using Integrations.Features.Incidents;
using Integrations.Features.McpServers;
using Integrations.Features.Policies;
using Integrations.Tests.Support;
using ModelContextProtocol.Protocol;
using Npgsql;

namespace Integrations.Tests.McpServers;

/// <summary>tools.invoke, the governed call, through the real pipeline against C# MCP servers the test hosts.</summary>
public sealed class InvokeToolTests(ServiceFixture fixture) : IClassFixture<ServiceFixture>, IAsyncLifetime
{
    private ServiceHost Host => fixture.Host;
    private TestMcpServer _mcp = null!;

    public async Task InitializeAsync()
    {
        _mcp = new TestMcpServer();
        _mcp.SetTool(new TestTool("run_script", "Runs a script", TestTool.Schema("""{"type":"object","properties":{}}"""),
            (_, _) => ValueTask.FromResult(TestTool.Text("ran"))));
        await _mcp.StartAsync();
    }

    public async Task DisposeAsync() => await _mcp.DisposeAsync();

    private static JsonElement Args(string json) => JsonDocument.Parse(json).RootElement.Clone();

    private async Task<(Guid ServerId, Dictionary<string, McpTool.Response> Tools)> RegisterAsync(string tenant, string? credentialRef = null)
    {
        var registered = await Host.SendAsync(new RegisterMcpServer.Command("test", _mcp.Endpoint.ToString(), credentialRef), tenant);
        Assert.True(registered.IsSuccess, registered.Error?.Detail);
        return (registered.Value.Server.Id, registered.Value.Tools.ToDictionary(t => t.Name));
    }

    private Task<Result<InvokeMcpTool.Response>> InvokeAsync(string tenant, Guid server, McpTool.Response tool, string args = "{}", int? timeoutMs = null, string? runId = null) =>
        Host.SendAsync(new InvokeMcpTool.Command(server, tool.Id, Args(args), runId, timeoutMs), tenant);

    private async Task<List<ToolInvocation.Response>> InvocationsAsync(string tenant, Guid server, string? outcome = null) =>
        [.. (await Host.SendAsync(new ListToolInvocations.Query(server, Outcome: outcome), tenant)).Value.Items];

    private async Task<List<ListAuditEvents.Event>> CallEventsAsync(string tenant, Guid invocationId) =>
        [.. (await Host.SendAsync(new ListAuditEvents.Query(Limit: 200), tenant)).Value.Items
            .Where(e => e.CorrelationId == invocationId.ToString()).OrderBy(e => e.Seq)];

    [Fact]
    public async Task A_call_returns_the_tool_result_and_leaves_its_row_and_four_ordered_audit_events()
    {
        var tenant = TestEnvironment.NewTenant();
        var (server, tools) = await RegisterAsync(tenant);

        var result = await InvokeAsync(tenant, server, tools["echo"], """{"message":"hello"}""", runId: "run-42");

        Assert.True(result.IsSuccess, result.Error?.Detail);
        Assert.Equal(("completed", false), (result.Value.Outcome, result.Value.IsError));
        Assert.Equal("Echo: hello", result.Value.Content[0].GetProperty("text").GetString());

        var row = Assert.Single(await InvocationsAsync(tenant, server));
        Assert.Equal((result.Value.InvocationId, "completed", "run-42", "echo"), (row.Id, row.Outcome, row.RunId, row.ToolName));
        Assert.Equal(CanonicalJson.Sha256(Args("""{"message":"hello"}""")), row.InputHash);
        Assert.Matches("^[0-9a-f]{64}$", row.OutputHash!);
        Assert.Equal($"test:{tenant}", row.Caller);

        var events = await CallEventsAsync(tenant, result.Value.InvocationId);
        Assert.Equal(["tool.invocation.requested", "tool.invocation.allowed", "tool.invocation.started", "tool.invocation.completed"],
            events.Select(e => e.Action));
        Assert.True((await Host.SendAsync(new VerifyAuditChain.Query(), tenant)).Value.Valid);
    }

    [Fact]
    public async Task One_tool_one_invocation_with_its_events_and_the_tenants_invocations_across_servers_are_read_by_id_and_filter()
    {
        var tenant = TestEnvironment.NewTenant();
        var (first, tools) = await RegisterAsync(tenant);
        await using var other = new TestMcpServer();
        await other.StartAsync();
        var second = await Host.SendAsync(new RegisterMcpServer.Command("second", other.Endpoint.ToString()), tenant);
        var secondEcho = second.Value.Tools.Single(t => t.Name == "echo");

        var a = await InvokeAsync(tenant, first, tools["echo"], """{"message":"a"}""", runId: "run-x");
        var b = await InvokeAsync(tenant, second.Value.Server.Id, secondEcho, """{"message":"b"}""", runId: "run-x");
        var c = await InvokeAsync(tenant, second.Value.Server.Id, secondEcho, """{"message":"c"}""", runId: "run-y");

        var tool = await Host.SendAsync(new GetMcpTool.Query(first, tools["echo"].Id), tenant);
        Assert.Equal((tools["echo"].Id, "echo", tools["echo"].DefinitionHash), (tool.Value.Id, tool.Value.Name, tool.Value.DefinitionHash));
        Assert.Equal("not_found", (await Host.SendAsync(new GetMcpTool.Query(second.Value.Server.Id, tools["echo"].Id), tenant)).Error?.Code);

        var all = await Host.SendAsync(new ListToolInvocations.Query(null, Limit: 2), tenant);
        Assert.Equal([c.Value.InvocationId, b.Value.InvocationId], all.Value.Items.Select(i => i.Id));
        var next = await Host.SendAsync(new ListToolInvocations.Query(null, Limit: 2, Cursor: all.Value.NextCursor), tenant);
        Assert.Equal([a.Value.InvocationId], next.Value.Items.Select(i => i.Id));
        var runX = await Host.SendAsync(new ListToolInvocations.Query(null, RunId: "run-x"), tenant);
        Assert.Equal([b.Value.InvocationId, a.Value.InvocationId], runX.Value.Items.Select(i => i.Id));

        var one = await Host.SendAsync(new GetInvocation.Query(b.Value.InvocationId), tenant);
        Assert.Equal((second.Value.Server.Id, "echo", "run-x"), (one.Value.Invocation.ServerId, one.Value.Invocation.ToolName, one.Value.Invocation.RunId));
        Assert.Equal(["tool.invocation.requested", "tool.invocation.allowed", "tool.invocation.started", "tool.invocation.completed"],
            one.Value.Events.Select(e => e.Action));
        Assert.True(one.Value.Events.Zip(one.Value.Events.Skip(1)).All(p => p.First.Seq < p.Second.Seq));

        // Another tenant sees none of it, by id or in lists.
        var intruder = TestEnvironment.NewTenant();
        Assert.Equal("not_found", (await Host.SendAsync(new GetInvocation.Query(b.Value.InvocationId), intruder)).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new GetMcpTool.Query(first, tools["echo"].Id), intruder)).Error?.Code);
        Assert.Empty((await Host.SendAsync(new ListToolInvocations.Query(null), intruder)).Value.Items);
        Assert.Equal("not_found", (await Host.SendAsync(new ListToolInvocations.Query(first), intruder)).Error?.Code);
    }

    [Fact]
    public async Task An_isError_result_is_a_tool_error_outcome_not_a_failure()
    {
        var tenant = TestEnvironment.NewTenant();
        var (server, tools) = await RegisterAsync(tenant);

        var result = await InvokeAsync(tenant, server, tools["tool-error"]);

        Assert.Equal(("tool_error", true), (result.Value.Outcome, result.Value.IsError));
        Assert.Equal("tool_error", Assert.Single(await InvocationsAsync(tenant, server)).Outcome);
        Assert.Empty((await Host.SendAsync(new ListIncidents.Query(), tenant)).Value.Items);
    }

    [Fact]
    public async Task A_tool_past_its_deadline_times_out_opens_an_incident_and_a_second_timeout_bumps_it()
    {
        var tenant = TestEnvironment.NewTenant();
        var (server, tools) = await RegisterAsync(tenant);

        var watch = Stopwatch.StartNew();
        var first = await InvokeAsync(tenant, server, tools["slow"], """{"ms": 10000}""", timeoutMs: 300);
        watch.Stop();
        var second = await InvokeAsync(tenant, server, tools["slow"], """{"ms": 10000}""", timeoutMs: 300);

        Assert.Equal(("upstream_timeout", 504), (first.Error?.Code, first.Error?.Status));
        Assert.True(watch.Elapsed < TimeSpan.FromSeconds(3), $"took {watch.Elapsed}");
        Assert.NotNull(first.Error!.Extensions!["invocation_id"]);
        Assert.Equal("upstream_timeout", second.Error?.Code);
        var incident = Assert.Single((await Host.SendAsync(new ListIncidents.Query(), tenant)).Value.Items);
        Assert.Equal(("tool_failure", 2, "open"), (incident.Kind, incident.Occurrences, incident.Status));
        var rows = await InvocationsAsync(tenant, server, "timeout");
        Assert.Equal(2, rows.Count);
        Assert.All(rows, r => Assert.Equal(incident.Id, r.IncidentId));
    }

    [Fact]
    public async Task A_server_dying_mid_call_is_failed_and_the_call_is_not_retried()
    {
        var tenant = TestEnvironment.NewTenant();
        var (server, tools) = await RegisterAsync(tenant);
        _mcp.ClearReceived();

        var result = await InvokeAsync(tenant, server, tools["crash"], """{"ms": 50}""");

        Assert.Equal("upstream_error", result.Error?.Code);
        Assert.Equal(1, _mcp.Count("tools/call"));
        var row = Assert.Single(await InvocationsAsync(tenant, server));
        Assert.Equal("failed", row.Outcome);
        Assert.NotNull(row.IncidentId);
        var events = await CallEventsAsync(tenant, row.Id);
        Assert.Equal("tool.invocation.failed", events[^1].Action);
    }

    [Fact]
    public async Task A_disabled_tool_is_denied_with_its_rule_a_denied_row_and_audit()
    {
        var tenant = TestEnvironment.NewTenant();
        var (server, tools) = await RegisterAsync(tenant);
        await Host.SendAsync(new UpdateMcpTool.Command(server, tools["echo"].Id, new UpdateMcpTool.Body(Enabled: false)), tenant);
        _mcp.ClearReceived();

        var result = await InvokeAsync(tenant, server, tools["echo"], """{"message":"x"}""");

        Assert.Equal(("policy_denied", 403, "tool_disabled"), (result.Error?.Code, result.Error?.Status, result.Error?.Extensions?["rule"]));
        var row = Assert.Single(await InvocationsAsync(tenant, server));
        Assert.Equal(("denied", "tool_disabled"), (row.Outcome, row.DecisionReason));
        Assert.Equal(["tool.invocation.requested", "tool.invocation.denied"], (await CallEventsAsync(tenant, row.Id)).Select(e => e.Action));
        Assert.Equal(0, _mcp.Count("tools/call"));
    }

    [Fact]
    public async Task A_drifted_tool_is_denied_until_approved_again()
    {
        var tenant = TestEnvironment.NewTenant();
        var (server, tools) = await RegisterAsync(tenant);
        _mcp.SetTool(_mcp.Tools.Single(t => t.Name == "echo") with { Description = "Echoes, and also forwards elsewhere" });
        try
        {
            var discovered = await Host.SendAsync(new DiscoverMcpServer.Command(server), tenant);
            Assert.Single(discovered.Value.Drifted);

            var denied = await InvokeAsync(tenant, server, tools["echo"], """{"message":"x"}""");
            Assert.Equal("tool_drifted", denied.Error?.Extensions?["rule"]);

            var drift = discovered.Value.Drifted[0].Tool;
            await Host.SendAsync(new UpdateMcpTool.Command(server, drift.Id, new UpdateMcpTool.Body(ApproveHash: drift.DefinitionHash)), tenant);
            Assert.True((await InvokeAsync(tenant, server, tools["echo"], """{"message":"x"}""")).IsSuccess);
        }
        finally
        {
            _mcp.SetTool(TestMcpServer.DefaultTools().Single(t => t.Name == "echo"));
        }
    }

    [Fact]
    public async Task A_tool_above_the_ceiling_is_denied_unless_allow_listed_and_the_deny_list_wins()
    {
        var tenant = TestEnvironment.NewTenant();
        var (server, tools) = await RegisterAsync(tenant);
        var script = tools["run_script"];
        Assert.Equal("high", script.RiskLevel);
        await Host.SendAsync(new UpdateMcpTool.Command(server, script.Id, new UpdateMcpTool.Body(Enabled: true)), tenant);

        Assert.Equal("risk_ceiling", (await InvokeAsync(tenant, server, script)).Error?.Extensions?["rule"]);

        await Host.SendAsync(new UpdateToolPolicy.Command(AllowList: ["test/run_script"]), tenant);
        var allowed = await InvokeAsync(tenant, server, script);
        Assert.True(allowed.IsSuccess, allowed.Error?.Detail);

        await Host.SendAsync(new UpdateToolPolicy.Command(AllowList: ["test/run_script"], DenyList: ["run_*"]), tenant);
        Assert.Equal("deny_list", (await InvokeAsync(tenant, server, script)).Error?.Extensions?["rule"]);
        Assert.Equal("risk_ceiling", (await InvocationsAsync(tenant, server, "denied")).Last().DecisionReason);
    }

    [Fact]
    public async Task Arguments_that_violate_the_pinned_schema_are_400_and_recorded_as_denied()
    {
        var tenant = TestEnvironment.NewTenant();
        var (server, tools) = await RegisterAsync(tenant);
        _mcp.ClearReceived();

        var result = await InvokeAsync(tenant, server, tools["echo"], """{"message": 5}""");

        Assert.Equal(("validation_failed", 400), (result.Error?.Code, result.Error?.Status));
        Assert.Contains("arguments.message", result.Error!.FieldErrors!.Keys);
        Assert.Equal("input_schema", Assert.Single(await InvocationsAsync(tenant, server)).DecisionReason);
        Assert.Equal(0, _mcp.Count("tools/call"));
        Assert.Equal("validation_failed",
            (await Host.SendAsync(new InvokeMcpTool.Command(server, tools["echo"].Id, Args("[1]")), tenant)).Error?.Code);
    }

    [Fact]
    public async Task The_call_after_the_tool_limit_is_429_across_two_service_instances()
    {
        await using var other = await ServiceHost.StartAsync();
        var tenant = TestEnvironment.NewTenant();
        var (server, tools) = await RegisterAsync(tenant);
        await Host.SendAsync(new UpdateMcpTool.Command(server, tools["echo"].Id, new UpdateMcpTool.Body(RateLimitPerMinute: 2)), tenant);
        while (DateTime.UtcNow.Second > 50) await Task.Delay(500);

        var command = new InvokeMcpTool.Command(server, tools["echo"].Id, Args("""{"message":"x"}"""));
        Assert.True((await Host.SendAsync(command, tenant)).IsSuccess);
        Assert.True((await other.SendAsync(command, tenant)).IsSuccess);
        var limited = await other.SendAsync(command, tenant);

        Assert.Equal(("rate_limited", 429, "tool_rate_limit"), (limited.Error?.Code, limited.Error?.Status, limited.Error?.Extensions?["rule"]));
        Assert.InRange((int)limited.Error!.Extensions!["retry_after_seconds"]!, 1, 60);
    }

    [Fact]
    public async Task The_tenant_wide_limit_counts_every_tool()
    {
        var tenant = TestEnvironment.NewTenant();
        var (server, tools) = await RegisterAsync(tenant);
        await Host.SendAsync(new UpdateToolPolicy.Command(TenantRateLimitPerMinute: 2), tenant);
        while (DateTime.UtcNow.Second > 50) await Task.Delay(500);

        Assert.True((await InvokeAsync(tenant, server, tools["echo"], """{"message":"x"}""")).IsSuccess);
        Assert.True((await InvokeAsync(tenant, server, tools["tool-error"])).IsSuccess);
        Assert.Equal("tenant_rate_limit", (await InvokeAsync(tenant, server, tools["big"], """{"size": 1}""")).Error?.Extensions?["rule"]);
    }

    [Fact]
    public async Task When_the_audit_trail_cannot_be_written_the_server_is_not_called_and_the_caller_gets_503()
    {
        var connectionString = await TestEnvironment.CreateMigratedDatabaseAsync("failclosed");
        await using var host = await ServiceHost.StartAsync(connectionString: connectionString);
        var tenant = TestEnvironment.NewTenant();
        var registered = await host.SendAsync(new RegisterMcpServer.Command("test", _mcp.Endpoint.ToString()), tenant);
        var echo = registered.Value.Tools.Single(t => t.Name == "echo");
        await OwnerSql.ExecuteAsync(connectionString, "REVOKE INSERT ON audit_events FROM integrations_app");
        _mcp.ClearReceived();

        var result = await host.SendAsync(new InvokeMcpTool.Command(registered.Value.Server.Id, echo.Id, Args("""{"message":"x"}""")), tenant);

        Assert.Equal(("unavailable", 503), (result.Error?.Code, result.Error?.Status));
        Assert.Equal(0, _mcp.Count("tools/call"));
        Assert.Equal(0L, await OwnerSql.ScalarAsync<long>(connectionString, "SELECT count(*) FROM mcp_tool_invocations"));
    }

    [Theory]
    [InlineData("UPDATE mcp_tool_invocations SET outcome = 'completed'")]
    [InlineData("DELETE FROM mcp_tool_invocations")]
    [InlineData("TRUNCATE mcp_tool_invocations")]
    public async Task Invocation_rows_cannot_be_changed_or_deleted(string sql)
    {
        var tenant = TestEnvironment.NewTenant();
        var (server, tools) = await RegisterAsync(tenant);
        await InvokeAsync(tenant, server, tools["echo"], """{"message":"x"}""");

        var error = await Assert.ThrowsAsync<PostgresException>(() => OwnerSql.ExecuteAsync(Host.ConnectionString, sql));
        Assert.Contains("append-only", error.MessageText);
    }

    [Fact]
    public async Task Another_tenant_cannot_invoke_the_tools_or_read_the_invocations()
    {
        var owner = TestEnvironment.NewTenant();
        var intruder = TestEnvironment.NewTenant();
        var (server, tools) = await RegisterAsync(owner);
        await InvokeAsync(owner, server, tools["echo"], """{"message":"x"}""");
        _mcp.ClearReceived();

        Assert.Equal("not_found", (await InvokeAsync(intruder, server, tools["echo"], """{"message":"x"}""")).Error?.Code);
        Assert.Equal("not_found", (await Host.SendAsync(new ListToolInvocations.Query(server), intruder)).Error?.Code);
        Assert.Equal(0, _mcp.Count("tools/call"));
        Assert.Single(await InvocationsAsync(owner, server));
    }

    [Fact]
    public async Task The_servers_vault_credential_is_sent_and_resolution_is_logged()
    {
        await using var secured = new TestMcpServer { RequiredBearerToken = "server-token-123" };
        await secured.StartAsync();
        var tenant = TestEnvironment.NewTenant();
        var credential = (await Host.SendAsync(new StoreCredential.Command("mcp", "bearer_token", Secret: "server-token-123"), tenant)).Value;
        var registered = await Host.SendAsync(new RegisterMcpServer.Command("secured", secured.Endpoint.ToString(), credential.Reference), tenant);
        Assert.True(registered.IsSuccess, registered.Error?.Detail);
        var echo = registered.Value.Tools.Single(t => t.Name == "echo");
        secured.ClearReceived();

        var result = await Host.SendAsync(new InvokeMcpTool.Command(registered.Value.Server.Id, echo.Id, Args("""{"message":"x"}""")), tenant);

        Assert.True(result.IsSuccess, result.Error?.Detail);
        Assert.All(secured.ReceivedAuthorizationHeaders, h => Assert.Equal("Bearer server-token-123", h));
        var actions = (await CallEventsAsync(tenant, result.Value.InvocationId)).Select(e => e.Action).ToList();
        Assert.DoesNotContain(actions, a => a.StartsWith("credential."));
        var accessed = (await Host.SendAsync(new ListAuditEvents.Query(Action: "credential.accessed"), tenant)).Value.Items;
        Assert.Contains(accessed, e => e.Details.ToString().Contains("tools.invoke"));
        var allEvents = (await Host.SendAsync(new ListAuditEvents.Query(Limit: 200), tenant)).Value.Items;
        Assert.DoesNotContain(allEvents, e => e.Details.ToString().Contains("server-token-123"));
    }

    [Fact]
    public async Task Invocations_filter_by_outcome_tool_and_run_and_page()
    {
        var tenant = TestEnvironment.NewTenant();
        var (server, tools) = await RegisterAsync(tenant);
        await InvokeAsync(tenant, server, tools["echo"], """{"message":"a"}""", runId: "r1");
        await InvokeAsync(tenant, server, tools["tool-error"], runId: "r1");
        await InvokeAsync(tenant, server, tools["echo"], """{"message":"b"}""", runId: "r2");

        Assert.Equal(2, (await Host.SendAsync(new ListToolInvocations.Query(server, RunId: "r1"), tenant)).Value.Items.Count);
        Assert.Equal(2, (await Host.SendAsync(new ListToolInvocations.Query(server, Tool: "echo"), tenant)).Value.Items.Count);
        Assert.Single((await Host.SendAsync(new ListToolInvocations.Query(server, Outcome: "tool_error"), tenant)).Value.Items);
        var first = (await Host.SendAsync(new ListToolInvocations.Query(server, Limit: 2), tenant)).Value;
        var second = (await Host.SendAsync(new ListToolInvocations.Query(server, Limit: 2, Cursor: first.NextCursor), tenant)).Value;
        Assert.Equal(3, first.Items.Concat(second.Items).Select(i => i.Id).Distinct().Count());
        Assert.Empty((await Host.SendAsync(new ListToolInvocations.Query(server, From: DateTimeOffset.UtcNow.AddMinutes(5)), tenant)).Value.Items);
        Assert.Equal("validation_failed", (await Host.SendAsync(new ListToolInvocations.Query(server, Outcome: "weird"), tenant)).Error?.Code);
    }
}
