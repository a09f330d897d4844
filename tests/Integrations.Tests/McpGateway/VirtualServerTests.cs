using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Tests.Support;
using ModelContextProtocol;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;

namespace Integrations.Tests.McpGateway;

/// <summary>Virtual servers: named subsets of the tenant's tools at <c>/mcp/{name}</c>, narrowing only.</summary>
[Collection(EverythingServerCollection.Name)]
public sealed class VirtualServerTests(EverythingServer everything, McpGatewayFixture gateway) : IClassFixture<McpGatewayFixture>
{
    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

    private Task<McpClient> ClientAtAsync(string key, string virtualServer) =>
        McpClient.CreateAsync(new HttpClientTransport(new HttpClientTransportOptions
        {
            Endpoint = new Uri(gateway.Address, $"/mcp/{virtualServer}"),
            TransportMode = HttpTransportMode.StreamableHttp,
            AdditionalHeaders = new Dictionary<string, string> { ["Authorization"] = $"Bearer {key}" },
        }));

    [Fact]
    public async Task Create_list_get_update_and_delete_are_audited_and_checked()
    {
        var (_, rest) = await gateway.TenantAsync();
        var (serverId, tools) = await McpGatewayFixture.RegisterAsync(rest, "everything", everything.Endpoint);
        var (_, other) = await gateway.TenantAsync();
        var (_, otherTools) = await McpGatewayFixture.RegisterAsync(other, "everything", everything.Endpoint);

        var created = await rest.PostAsJsonAsync("/virtual-servers", new { name = "support-bot", description = "what support may use", tool_ids = new[] { tools["echo"].GetProperty("id").GetGuid() } });
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var body = await JsonAsync(created);
        var id = body.GetProperty("id").GetString();
        Assert.Equal($"/virtual-servers/{id}", created.Headers.Location?.ToString());

        Assert.Equal(HttpStatusCode.Conflict, (await rest.PostAsJsonAsync("/virtual-servers", new { name = "support-bot" })).StatusCode);
        var badName = await JsonAsync(await rest.PostAsJsonAsync("/virtual-servers", new { name = "Support Bot" }));
        Assert.True(badName.GetProperty("errors").TryGetProperty("name", out _));
        var foreignTool = await rest.PostAsJsonAsync("/virtual-servers", new { name = "stolen", tool_ids = new[] { otherTools["echo"].GetProperty("id").GetGuid() } });
        Assert.Equal(HttpStatusCode.BadRequest, foreignTool.StatusCode);
        Assert.True((await JsonAsync(foreignTool)).GetProperty("errors").TryGetProperty("tool_ids", out _));
        Assert.Equal(HttpStatusCode.BadRequest, (await rest.PostAsJsonAsync("/virtual-servers", new { name = "x", risk_ceiling = "extreme" })).StatusCode);

        var updated = await JsonAsync(await rest.PatchAsJsonAsync($"/virtual-servers/{id}", new { server_ids = new[] { serverId }, risk_ceiling = "low" }));
        Assert.Equal(("low", "what support may use"), (updated.GetProperty("risk_ceiling").GetString(), updated.GetProperty("description").GetString()));
        Assert.Equal(serverId, updated.GetProperty("server_ids")[0].GetString());
        Assert.Equal(id, (await JsonAsync(await rest.GetAsync($"/virtual-servers/{id}"))).GetProperty("id").GetString());
        Assert.Equal(id, Assert.Single((await JsonAsync(await rest.GetAsync("/virtual-servers"))).GetProperty("items").EnumerateArray()).GetProperty("id").GetString());

        Assert.Equal(HttpStatusCode.NotFound, (await other.GetAsync($"/virtual-servers/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await other.DeleteAsync($"/virtual-servers/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NoContent, (await rest.DeleteAsync($"/virtual-servers/{id}")).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await rest.GetAsync($"/virtual-servers/{id}")).StatusCode);

        var audit = await JsonAsync(await rest.GetAsync("/audit?subject_type=virtual_server"));
        Assert.Equal(["virtual_servers.delete", "virtual_servers.update", "virtual_servers.create"],
            audit.GetProperty("items").EnumerateArray().Select(e => e.GetProperty("action").GetString()));
    }

    [Fact]
    public async Task A_virtual_server_serves_only_its_tools_and_never_more_than_the_tenant_may_call()
    {
        var (key, rest) = await gateway.TenantAsync();
        var (serverId, tools) = await McpGatewayFixture.RegisterAsync(rest, "everything", everything.Endpoint);
        foreach (var (tool, risk) in new[] { ("echo", "medium"), ("get-sum", "low") })
        {
            var toolId = tools[tool].GetProperty("id").GetString();
            Assert.True((await rest.PatchAsJsonAsync($"/integrations/mcp-servers/{serverId}/tools/{toolId}", new { risk_level = risk, reason = "test" })).IsSuccessStatusCode);
        }
        var all = (await JsonAsync(await rest.GetAsync("/tools?limit=200"))).GetProperty("items").EnumerateArray().ToList();
        var low = all.Where(t => t.GetProperty("risk_level").GetString() == "low").Select(t => t.GetProperty("name").GetString()!).ToHashSet();
        Assert.Contains("everything__get-sum", low);
        Assert.DoesNotContain("everything__echo", low);
        // By pattern and ceiling; the ceiling holds for a tool chosen by id too.
        var longRunning = tools["trigger-long-running-operation"].GetProperty("id").GetGuid();
        Assert.Equal(HttpStatusCode.Created, (await rest.PostAsJsonAsync("/virtual-servers",
            new { name = "readers", name_patterns = new[] { "everything/*" }, risk_ceiling = "low", tool_ids = new[] { longRunning } })).StatusCode);
        // A disabled high-risk tool by id alone: the virtual server cannot widen what the tenant may call.
        Assert.Equal(HttpStatusCode.Created, (await rest.PostAsJsonAsync("/virtual-servers", new { name = "by-id", tool_ids = new[] { longRunning } })).StatusCode);

        await using var client = await ClientAtAsync(key, "readers");
        var listed = (await client.ListToolsAsync()).Select(t => t.Name).ToHashSet();
        Assert.Equal(low, listed);
        Assert.Equal(low, (await JsonAsync(await rest.GetAsync("/tools?virtual_server=readers&limit=200"))).GetProperty("items").EnumerateArray()
            .Select(t => t.GetProperty("name").GetString()!).ToHashSet());

        var sum = await client.CallToolAsync("everything__get-sum", new Dictionary<string, object?> { ["a"] = 40, ["b"] = 2 });
        Assert.Contains("42", string.Concat(sum.Content.OfType<TextContentBlock>().Select(t => t.Text)));
        var outside = await Assert.ThrowsAsync<McpProtocolException>(() =>
            client.CallToolAsync("everything__echo", new Dictionary<string, object?> { ["message"] = "x" }).AsTask());
        Assert.Equal(McpErrorCode.InvalidParams, outside.ErrorCode);
        var aboveCeiling = await Assert.ThrowsAsync<McpProtocolException>(() => client.CallToolAsync("everything__trigger-long-running-operation",
            new Dictionary<string, object?> { ["duration"] = 1, ["steps"] = 1 }).AsTask());
        Assert.Equal(McpErrorCode.InvalidParams, aboveCeiling.ErrorCode);

        await using var byId = await ClientAtAsync(key, "by-id");
        Assert.Empty(await byId.ListToolsAsync());
        var notWidened = await byId.CallToolAsync("everything__trigger-long-running-operation", new Dictionary<string, object?> { ["duration"] = 1, ["steps"] = 1 });
        Assert.True(notWidened.IsError);
        Assert.Contains("Rule: tool_disabled.", string.Concat(notWidened.Content.OfType<TextContentBlock>().Select(t => t.Text)));

        // The whole tenant's endpoint still serves echo.
        await using var whole = await gateway.McpClientAsync(key);
        Assert.Contains("everything__echo", (await whole.ListToolsAsync()).Select(t => t.Name));
    }

    [Fact]
    public async Task An_unknown_or_another_tenants_virtual_server_serves_nothing()
    {
        var (_, owner) = await gateway.TenantAsync();
        await McpGatewayFixture.RegisterAsync(owner, "everything", everything.Endpoint);
        Assert.Equal(HttpStatusCode.Created, (await owner.PostAsJsonAsync("/virtual-servers", new { name = "private-set" })).StatusCode);
        var (intruderKey, intruder) = await gateway.TenantAsync();

        await using var client = await ClientAtAsync(intruderKey, "private-set");
        var listing = await Assert.ThrowsAsync<McpProtocolException>(() => client.ListToolsAsync().AsTask());
        Assert.Equal(McpErrorCode.InvalidParams, listing.ErrorCode);
        var calling = await Assert.ThrowsAsync<McpProtocolException>(() =>
            client.CallToolAsync("everything__echo", new Dictionary<string, object?> { ["message"] = "x" }).AsTask());
        Assert.Equal(McpErrorCode.InvalidParams, calling.ErrorCode);
        Assert.Equal(HttpStatusCode.NotFound, (await intruder.GetAsync("/tools?virtual_server=private-set")).StatusCode);
    }
}
