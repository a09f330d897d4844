using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Common;
using Integrations.Tests.Support;
using ModelContextProtocol;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;

namespace Integrations.Tests.McpGateway;

/// <summary>
/// Resources and prompts of the real reference server passed through <c>/mcp</c> when the server's
/// <c>expose_resources</c> / <c>expose_prompts</c> is on (off by default), each read audited, nothing across tenants.
/// </summary>
[Collection(EverythingServerCollection.Name)]
public sealed class PassthroughTests(EverythingServer everything, McpGatewayFixture gateway) : IClassFixture<McpGatewayFixture>
{
    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

    private static async Task<List<string>> AuditActionsAsync(HttpClient rest) =>
        (await JsonAsync(await rest.GetAsync("/audit?limit=200"))).GetProperty("items").EnumerateArray()
            .Select(e => e.GetProperty("action").GetString()!).ToList();

    [Fact]
    public async Task Resources_and_prompts_pass_through_only_when_the_server_exposes_them_and_each_read_is_audited()
    {
        var (key, rest) = await gateway.TenantAsync();
        var (serverId, _) = await McpGatewayFixture.RegisterAsync(rest, "everything", everything.Endpoint);
        await using var client = await gateway.McpClientAsync(key);
        Assert.NotNull(client.ServerCapabilities.Resources);
        Assert.NotNull(client.ServerCapabilities.Prompts);

        // Off by default: nothing listed, and a gateway URI for the server reads nothing.
        Assert.Empty(await client.ListResourcesAsync());
        Assert.Empty(await client.ListPromptsAsync());
        var guessed = $"mcp-gateway://{Guid.Parse(serverId):N}/{Uri.EscapeDataString("demo://resource/static/document/architecture.md")}";
        var refused = await Assert.ThrowsAsync<McpProtocolException>(() => client.ReadResourceAsync(guessed).AsTask());
        Assert.Equal(McpErrorCode.ResourceNotFound, refused.ErrorCode);
        Assert.Equal(HttpStatusCode.NotFound, (await rest.GetAsync($"/integrations/mcp-servers/{serverId}/resources")).StatusCode);

        var updated = await rest.PatchAsJsonAsync($"/integrations/mcp-servers/{serverId}", new { expose_resources = true, expose_prompts = true });
        var body = await JsonAsync(updated);
        Assert.True(updated.IsSuccessStatusCode, body.ToString());
        var server = body.GetProperty("server");
        Assert.True(server.GetProperty("expose_resources").GetBoolean() && server.GetProperty("expose_prompts").GetBoolean());

        var overRest = await JsonAsync(await rest.GetAsync($"/integrations/mcp-servers/{serverId}/prompts"));
        Assert.Contains("simple-prompt", overRest.GetProperty("prompts").EnumerateArray().Select(p => p.GetProperty("name").GetString()));
        var resources = await client.ListResourcesAsync();
        Assert.NotEmpty(resources);
        Assert.All(resources, r => Assert.StartsWith($"mcp-gateway://{Guid.Parse(serverId):N}/demo%3A%2F%2F", r.Uri));
        var document = resources.First(r => r.Uri.EndsWith(".md", StringComparison.Ordinal));
        var read = await client.ReadResourceAsync(document.Uri);
        var content = Assert.IsType<TextResourceContents>(Assert.Single(read.Contents));
        Assert.Equal(document.Uri, content.Uri);
        Assert.False(string.IsNullOrWhiteSpace(content.Text));

        var prompts = await client.ListPromptsAsync();
        Assert.Contains("everything__simple-prompt", prompts.Select(p => p.Name));
        var prompt = await client.GetPromptAsync("everything__args-prompt", new Dictionary<string, object?> { ["city"] = "Lisbon" });
        Assert.Contains("What's weather in Lisbon?", string.Concat(prompt.Messages.Select(m => (m.Content as TextContentBlock)?.Text)));
        var unknown = await Assert.ThrowsAsync<McpProtocolException>(() => client.GetPromptAsync("everything__no-such-prompt").AsTask());
        Assert.Equal(McpErrorCode.InvalidParams, unknown.ErrorCode);

        var audit = (await JsonAsync(await rest.GetAsync("/audit?limit=200"))).GetProperty("items").EnumerateArray().ToList();
        var readEvent = Assert.Single(audit, e => e.GetProperty("action").GetString() == "mcp_resources.read");
        Assert.Equal(serverId, readEvent.GetProperty("subject_id").GetString());
        Assert.Contains("architecture.md", readEvent.GetProperty("details").ToString());
        var getEvent = Assert.Single(audit, e => e.GetProperty("action").GetString() == "mcp_prompts.get");
        Assert.Contains("city", getEvent.GetProperty("details").ToString());
        Assert.DoesNotContain("Lisbon", getEvent.GetProperty("details").ToString()); // argument names, never values
        Assert.Contains("mcp_servers.update", await AuditActionsAsync(rest));

        // Turned off again: gone from the lists, and reads are refused.
        Assert.True((await rest.PatchAsJsonAsync($"/integrations/mcp-servers/{serverId}", new { expose_resources = false })).IsSuccessStatusCode);
        Assert.Empty(await client.ListResourcesAsync());
        Assert.Equal(McpErrorCode.ResourceNotFound,
            (await Assert.ThrowsAsync<McpProtocolException>(() => client.ReadResourceAsync(document.Uri).AsTask())).ErrorCode);
        Assert.NotEmpty(await client.ListPromptsAsync());
    }

    [Fact]
    public async Task Another_tenant_reads_nothing_and_reading_needs_tools_invoke()
    {
        var tenant = TestEnvironment.NewTenant();
        var (key, rest) = await gateway.KeyAndClientAsync(tenant);
        var response = await rest.PostAsJsonAsync("/integrations/mcp-servers",
            new { name = "everything", url = everything.Endpoint.ToString(), expose_resources = true, expose_prompts = true });
        var registered = await JsonAsync(response);
        Assert.True(registered.GetProperty("server").GetProperty("expose_resources").GetBoolean());
        await using var client = await gateway.McpClientAsync(key);
        var uri = (await client.ListResourcesAsync()).First().Uri;

        var (strangerKey, strangerRest) = await gateway.TenantAsync();
        await McpGatewayFixture.RegisterAsync(strangerRest, "everything", everything.Endpoint);
        await using var stranger = await gateway.McpClientAsync(strangerKey);
        Assert.Empty(await stranger.ListResourcesAsync());
        Assert.Equal(McpErrorCode.ResourceNotFound,
            (await Assert.ThrowsAsync<McpProtocolException>(() => stranger.ReadResourceAsync(uri).AsTask())).ErrorCode);
        await Assert.ThrowsAsync<McpProtocolException>(() => stranger.GetPromptAsync("everything__simple-prompt").AsTask());

        var (readerKey, _) = await gateway.KeyAndClientAsync(tenant, Scopes.Read);
        await using var reader = await gateway.McpClientAsync(readerKey);
        Assert.NotEmpty(await reader.ListResourcesAsync());
        Assert.Contains("tools:invoke", (await Assert.ThrowsAsync<McpProtocolException>(() => reader.ReadResourceAsync(uri).AsTask())).Message);
        Assert.DoesNotContain("mcp_resources.read", await AuditActionsAsync(strangerRest));

        Assert.Equal(HttpStatusCode.BadRequest, (await rest.PatchAsJsonAsync($"/integrations/mcp-servers/{registered.GetProperty("server").GetProperty("id").GetString()}", new { })).StatusCode);
    }
}
