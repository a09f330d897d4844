using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Integrations.Common;
using Integrations.Tests.Support;
using ModelContextProtocol;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;

namespace Integrations.Tests.McpGateway;

/// <summary>
/// <c>/mcp</c> through the official C# SDK client (<see cref="McpClient"/>) against the real service on a port, with the
/// real reference server (@modelcontextprotocol/server-everything) registered as the tenant's upstream.
/// </summary>
[Collection(EverythingServerCollection.Name)]
public sealed class McpGatewayTests(EverythingServer everything, McpGatewayFixture gateway) : IClassFixture<McpGatewayFixture>
{
    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

    private static string TextOf(CallToolResult result) => string.Concat(result.Content.OfType<TextContentBlock>().Select(t => t.Text));

    [Fact]
    public async Task Tools_list_offers_the_tenants_callable_tools_under_gateway_names_with_their_pinned_definitions()
    {
        var (key, rest) = await gateway.TenantAsync();
        var (_, registered) = await McpGatewayFixture.RegisterAsync(rest, "everything", everything.Endpoint);
        await using var client = await gateway.McpClientAsync(key);

        var tools = await client.ListToolsAsync();

        var names = tools.Select(t => t.Name).ToHashSet();
        var offered = registered.Values.Where(t => t.GetProperty("enabled").GetBoolean()).Select(t => "everything__" + t.GetProperty("name").GetString());
        Assert.Equal(offered.ToHashSet(), names);
        Assert.DoesNotContain("everything__trigger-long-running-operation", names); // high risk: disabled at registration
        var echo = tools.Single(t => t.Name == "everything__echo").ProtocolTool;
        Assert.Equal(registered["echo"].GetProperty("input_schema").ToString(), echo.InputSchema.ToString());
        Assert.Equal(registered["echo"].GetProperty("description").GetString(), echo.Description);
        Assert.False(client.ServerCapabilities.Tools?.ListChanged ?? false); // the sessionless revision has no stream for it
    }

    [Theory]
    [InlineData("2025-06-18")]
    [InlineData("2025-11-25")]
    [InlineData(null)] // the SDK's own choice: the sessionless 2026-07-28 revision
    public async Task Each_protocol_revision_the_sdk_speaks_lists_and_calls(string? revision)
    {
        var (key, rest) = await gateway.TenantAsync();
        await McpGatewayFixture.RegisterAsync(rest, "everything", everything.Endpoint);
        await using var client = await gateway.McpClientAsync(key, protocolVersion: revision);

        Assert.Equal(revision ?? "2026-07-28", client.NegotiatedProtocolVersion);
        Assert.Contains("everything__echo", (await client.ListToolsAsync()).Select(t => t.Name));
        var result = await client.CallToolAsync("everything__echo", new Dictionary<string, object?> { ["message"] = "rev " + revision });
        Assert.Contains("rev " + revision, TextOf(result));
    }

    [Fact]
    public async Task Tools_call_is_the_governed_call_with_its_run_id_invocation_row_and_audit_events()
    {
        var (key, rest) = await gateway.TenantAsync();
        var (serverId, _) = await McpGatewayFixture.RegisterAsync(rest, "everything", everything.Endpoint);
        await using var client = await gateway.McpClientAsync(key);

        var result = await client.CallToolAsync(new CallToolRequestParams
        {
            Name = "everything__echo",
            Arguments = new Dictionary<string, JsonElement> { ["message"] = JsonSerializer.SerializeToElement("hello gateway") },
            Meta = new System.Text.Json.Nodes.JsonObject { ["integrations/run_id"] = "run-mcp-1" },
        });

        Assert.NotEqual(true, result.IsError);
        Assert.Contains("hello gateway", TextOf(result));
        var invocations = await JsonAsync(await rest.GetAsync($"/integrations/mcp-servers/{serverId}/invocations?run_id=run-mcp-1"));
        var row = Assert.Single(invocations.GetProperty("items").EnumerateArray());
        Assert.Equal(("echo", "completed"), (row.GetProperty("tool_name").GetString(), row.GetProperty("outcome").GetString()));
        var audit = await JsonAsync(await rest.GetAsync("/audit?limit=200"));
        var actions = audit.GetProperty("items").EnumerateArray()
            .Where(e => e.GetProperty("correlation_id").GetString() == row.GetProperty("id").GetString())
            .Select(e => e.GetProperty("action").GetString()).Reverse();
        Assert.Equal(["tool.invocation.requested", "tool.invocation.allowed", "tool.invocation.started", "tool.invocation.completed"], actions);
    }

    [Fact]
    public async Task The_run_id_may_come_as_the_X_Run_Id_header()
    {
        var (key, rest) = await gateway.TenantAsync();
        var (serverId, _) = await McpGatewayFixture.RegisterAsync(rest, "everything", everything.Endpoint);
        await using var client = await gateway.McpClientAsync(key, new Dictionary<string, string> { ["X-Run-Id"] = "run-from-header" });

        await client.CallToolAsync("everything__get-sum", new Dictionary<string, object?> { ["a"] = 2, ["b"] = 40 });

        var invocations = await JsonAsync(await rest.GetAsync($"/integrations/mcp-servers/{serverId}/invocations?run_id=run-from-header"));
        Assert.Equal("get-sum", Assert.Single(invocations.GetProperty("items").EnumerateArray()).GetProperty("tool_name").GetString());
    }

    [Fact]
    public async Task Denials_rate_limits_and_bad_arguments_come_back_as_isError_results_the_model_can_act_on()
    {
        var (key, rest) = await gateway.TenantAsync();
        var (serverId, tools) = await McpGatewayFixture.RegisterAsync(rest, "everything", everything.Endpoint);
        await using var client = await gateway.McpClientAsync(key);

        // Disabled: not listed, yet its name still reaches the governed call, which refuses it with the rule.
        var disabled = await client.CallToolAsync("everything__trigger-long-running-operation", new Dictionary<string, object?> { ["duration"] = 1, ["steps"] = 1 });
        Assert.True(disabled.IsError);
        Assert.Contains("Rule: tool_disabled.", TextOf(disabled));
        Assert.Contains("Code: policy_denied.", TextOf(disabled));

        var invalid = await client.CallToolAsync("everything__get-sum", new Dictionary<string, object?> { ["a"] = "two" });
        Assert.True(invalid.IsError);
        Assert.Contains("Fix the arguments:", TextOf(invalid));

        var echoId = tools["echo"].GetProperty("id").GetString();
        Assert.True((await rest.PatchAsJsonAsync($"/integrations/mcp-servers/{serverId}/tools/{echoId}", new { rate_limit_per_minute = 1 })).IsSuccessStatusCode);
        while (DateTime.UtcNow.Second > 50) await Task.Delay(500);
        var first = await client.CallToolAsync("everything__echo", new Dictionary<string, object?> { ["message"] = "1" });
        Assert.NotEqual(true, first.IsError);
        var limited = await client.CallToolAsync("everything__echo", new Dictionary<string, object?> { ["message"] = "2" });
        Assert.True(limited.IsError);
        Assert.Contains("Rule: tool_rate_limit.", TextOf(limited));
        Assert.Matches(@"Retry after \d+ s\.", TextOf(limited));
        var facts = limited.Meta!["integrations/error"]!;
        Assert.Equal("rate_limited", facts["code"]!.GetValue<string>());
        Assert.True(int.Parse(facts["retry_after_seconds"]!.ToString()) > 0);

        // The deny list takes the tool off the list and refuses a call by name.
        Assert.True((await rest.PutAsJsonAsync("/policies/tools", new { risk_ceiling = "medium", deny_list = new[] { "everything/get-sum" } })).IsSuccessStatusCode);
        Assert.DoesNotContain("everything__get-sum", (await client.ListToolsAsync()).Select(t => t.Name));
        var denied = await client.CallToolAsync("everything__get-sum", new Dictionary<string, object?> { ["a"] = 1, ["b"] = 2 });
        Assert.True(denied.IsError);
        Assert.Contains("Rule: deny_list.", TextOf(denied));

        var outcomes = await JsonAsync(await rest.GetAsync($"/integrations/mcp-servers/{serverId}/invocations?limit=50"));
        Assert.Equal(4, outcomes.GetProperty("items").EnumerateArray().Count(r => r.GetProperty("outcome").GetString() == "denied"));
    }

    [Fact]
    public async Task The_upstreams_progress_notifications_reach_the_client_under_its_own_token()
    {
        var (key, rest) = await gateway.TenantAsync();
        var (serverId, tools) = await McpGatewayFixture.RegisterAsync(rest, "everything", everything.Endpoint);
        Assert.True((await rest.PutAsJsonAsync("/policies/tools", new { risk_ceiling = "critical" })).IsSuccessStatusCode);
        var longRunning = tools["trigger-long-running-operation"].GetProperty("id").GetString();
        Assert.True((await rest.PatchAsJsonAsync($"/integrations/mcp-servers/{serverId}/tools/{longRunning}", new { enabled = true })).IsSuccessStatusCode);
        await using var client = await gateway.McpClientAsync(key);

        var seen = new System.Collections.Concurrent.ConcurrentQueue<ProgressNotificationValue>();
        var result = await client.CallToolAsync("everything__trigger-long-running-operation",
            new Dictionary<string, object?> { ["duration"] = 1, ["steps"] = 3 }, new Relay(seen.Enqueue));

        Assert.NotEqual(true, result.IsError);
        // The upstream's SDK hands its notifications over concurrently with the result, so the last may miss the response.
        var deadline = DateTime.UtcNow.AddSeconds(2);
        while (seen.Count < 2 && DateTime.UtcNow < deadline) await Task.Delay(20);
        Assert.InRange(seen.Count, 2, 3);
        Assert.All(seen, p => Assert.InRange(p.Progress, 1f, 3f));
        Assert.All(seen, p => Assert.Equal(3f, p.Total));
    }

    [Fact]
    public async Task A_client_that_cancels_ends_the_upstream_call_and_the_call_is_recorded_as_failed()
    {
        var (key, rest) = await gateway.TenantAsync();
        var (serverId, tools) = await McpGatewayFixture.RegisterAsync(rest, "everything", everything.Endpoint);
        Assert.True((await rest.PutAsJsonAsync("/policies/tools", new { risk_ceiling = "critical" })).IsSuccessStatusCode);
        var longRunning = tools["trigger-long-running-operation"].GetProperty("id").GetString();
        Assert.True((await rest.PatchAsJsonAsync($"/integrations/mcp-servers/{serverId}/tools/{longRunning}", new { enabled = true })).IsSuccessStatusCode);
        await using var client = await gateway.McpClientAsync(key);

        using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(1));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.CallToolAsync("everything__trigger-long-running-operation",
            new Dictionary<string, object?> { ["duration"] = 30, ["steps"] = 3 }, cancellationToken: cancel.Token).AsTask());

        // Stateless: the client's notifications/cancelled reaches no session, but its request ends, and with it the call.
        var deadline = DateTime.UtcNow.AddSeconds(10);
        JsonElement row;
        while (true)
        {
            var rows = (await JsonAsync(await rest.GetAsync($"/integrations/mcp-servers/{serverId}/invocations"))).GetProperty("items");
            if (rows.GetArrayLength() == 1)
            {
                row = rows[0];
                break;
            }
            Assert.True(DateTime.UtcNow < deadline, "the cancelled call was not recorded within 10 s");
            await Task.Delay(100);
        }
        Assert.Equal(("failed", "cancelled"), (row.GetProperty("outcome").GetString(), row.GetProperty("decision_reason").GetString()));
        Assert.True(row.GetProperty("duration_ms").GetDouble() < 10_000);
    }

    private sealed class Relay(Action<ProgressNotificationValue> report) : IProgress<ProgressNotificationValue>
    {
        public void Report(ProgressNotificationValue value) => report(value);
    }

    [Fact]
    public async Task An_upstream_failure_is_an_isError_result_and_the_tools_own_error_passes_through()
    {
        await using var upstream = new TestMcpServer();
        await upstream.StartAsync();
        var (key, rest) = await gateway.TenantAsync();
        Assert.True((await rest.PutAsJsonAsync("/policies/tools", new { risk_ceiling = "critical" })).IsSuccessStatusCode);
        var (serverId, tools) = await McpGatewayFixture.RegisterAsync(rest, "faulty", upstream.Endpoint);
        foreach (var name in new[] { "protocol-error", "tool-error" })
        {
            var toolId = tools[name].GetProperty("id").GetString();
            Assert.True((await rest.PatchAsJsonAsync($"/integrations/mcp-servers/{serverId}/tools/{toolId}", new { enabled = true })).IsSuccessStatusCode);
        }
        await using var client = await gateway.McpClientAsync(key);

        var failed = await client.CallToolAsync("faulty__protocol-error", new Dictionary<string, object?>());
        Assert.True(failed.IsError);
        Assert.Contains("bad params on purpose", TextOf(failed));
        Assert.Contains("Code: upstream_error.", TextOf(failed));
        Assert.Equal("upstream_error", failed.Meta!["integrations/error"]!["code"]!.GetValue<string>());

        var toolError = await client.CallToolAsync("faulty__tool-error", new Dictionary<string, object?>());
        Assert.True(toolError.IsError);
        Assert.Equal("the tool failed on purpose", TextOf(toolError));

        var rows = await JsonAsync(await rest.GetAsync($"/integrations/mcp-servers/{serverId}/invocations"));
        Assert.Equal(["tool_error", "failed"], rows.GetProperty("items").EnumerateArray().Select(r => r.GetProperty("outcome").GetString()));
    }

    [Fact]
    public async Task An_unknown_tool_is_a_json_rpc_invalid_params_error()
    {
        var (key, rest) = await gateway.TenantAsync();
        await McpGatewayFixture.RegisterAsync(rest, "everything", everything.Endpoint);
        await using var client = await gateway.McpClientAsync(key);

        var error = await Assert.ThrowsAsync<McpProtocolException>(() =>
            client.CallToolAsync("everything__no-such-tool", new Dictionary<string, object?>()).AsTask());
        Assert.Equal(McpErrorCode.InvalidParams, error.ErrorCode);
    }

    [Fact]
    public async Task Another_tenant_never_sees_or_calls_the_tools_even_by_their_names()
    {
        var (ownerKey, ownerRest) = await gateway.TenantAsync();
        var (serverId, _) = await McpGatewayFixture.RegisterAsync(ownerRest, "everything", everything.Endpoint);
        var (intruderKey, intruderRest) = await gateway.TenantAsync();
        await using var intruder = await gateway.McpClientAsync(intruderKey);

        Assert.Empty(await intruder.ListToolsAsync());
        foreach (var guess in new[] { "everything__echo", "everything__get-sum", $"{serverId}__echo" })
        {
            var error = await Assert.ThrowsAsync<McpProtocolException>(() =>
                intruder.CallToolAsync(guess, new Dictionary<string, object?> { ["message"] = "x", ["a"] = 1, ["b"] = 2 }).AsTask());
            Assert.Equal(McpErrorCode.InvalidParams, error.ErrorCode);
        }
        Assert.Equal(HttpStatusCode.NotFound, (await intruderRest.PostAsJsonAsync("/tools/everything__echo/invoke", new { arguments = new { message = "x" } })).StatusCode);
        Assert.Empty((await JsonAsync(await intruderRest.GetAsync("/tools"))).GetProperty("items").EnumerateArray());

        var ownerCalls = await JsonAsync(await ownerRest.GetAsync($"/integrations/mcp-servers/{serverId}/invocations"));
        Assert.Empty(ownerCalls.GetProperty("items").EnumerateArray());
        await using var owner = await gateway.McpClientAsync(ownerKey);
        Assert.Contains("everything__echo", (await owner.ListToolsAsync()).Select(t => t.Name));
    }

    [Fact]
    public async Task Without_a_valid_key_mcp_is_401_with_WWW_Authenticate()
    {
        using var http = new HttpClient();
        var initialize = """{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}""";
        foreach (var authorization in new string?[] { null, "Bearer ik_00000000000000000000000000000000_nope" })
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, gateway.McpEndpoint) { Content = new StringContent(initialize, Encoding.UTF8, "application/json") };
            request.Headers.Accept.ParseAdd("application/json, text/event-stream");
            if (authorization is not null) request.Headers.TryAddWithoutValidation("Authorization", authorization);
            var response = await http.SendAsync(request);
            Assert.Equal(HttpStatusCode.Unauthorized, response.StatusCode);
            Assert.StartsWith("Bearer", response.Headers.WwwAuthenticate.ToString());
            Assert.Equal("unauthenticated", (await JsonAsync(response)).GetProperty("code").GetString());
        }
        await Assert.ThrowsAnyAsync<Exception>(() => gateway.McpClientAsync("ik_wrong"));
    }

    [Fact]
    public async Task Listing_needs_the_read_scope_and_calling_needs_tools_invoke()
    {
        var tenant = TestEnvironment.NewTenant();
        var (_, rest) = await gateway.KeyAndClientAsync(tenant);
        await McpGatewayFixture.RegisterAsync(rest, "everything", everything.Endpoint);
        var (readKey, _) = await gateway.KeyAndClientAsync(tenant, Scopes.Read);
        var (invokeKey, _) = await gateway.KeyAndClientAsync(tenant, Scopes.Invoke);

        await using var reader = await gateway.McpClientAsync(readKey);
        Assert.NotEmpty(await reader.ListToolsAsync());
        var refused = await Assert.ThrowsAsync<McpProtocolException>(() =>
            reader.CallToolAsync("everything__echo", new Dictionary<string, object?> { ["message"] = "x" }).AsTask());
        Assert.Contains("tools:invoke", refused.Message);

        await using var invoker = await gateway.McpClientAsync(invokeKey);
        var listRefused = await Assert.ThrowsAsync<McpProtocolException>(() => invoker.ListToolsAsync().AsTask());
        Assert.Contains("integrations:read", listRefused.Message);
        var called = await invoker.CallToolAsync("everything__echo", new Dictionary<string, object?> { ["message"] = "only invoke" });
        Assert.Contains("only invoke", TextOf(called));
    }
}
