using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using System.Threading.Channels;
using Integrations.Tests.Support;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;

namespace Integrations.Tests.McpGateway;

/// <summary>
/// Sessions of <c>initialize</c> clients across two replicas on one database: <c>notifications/tools/list_changed</c>
/// reaches a client on one replica after a change made through the REST API on the other, and a session opened on one
/// replica is continued by the other (no affinity needed), only for the key that opened it.
/// </summary>
[Collection(EverythingServerCollection.Name)]
public sealed class McpSessionReplicaTests(EverythingServer everything, McpGatewayFixture gateway) : IClassFixture<McpGatewayFixture>
{
    private const string Revision = "2025-11-25";

    private static Channel<string> ListChanges(McpClient client)
    {
        var received = Channel.CreateUnbounded<string>();
        client.RegisterNotificationHandler(NotificationMethods.ToolListChangedNotification, (notification, _) =>
        {
            received.Writer.TryWrite(notification.Method);
            return ValueTask.CompletedTask;
        });
        return received;
    }

    private static async Task<bool> ArrivesWithinAsync(Channel<string> received, TimeSpan wait)
    {
        using var timeout = new CancellationTokenSource(wait);
        try
        {
            await received.Reader.ReadAsync(timeout.Token);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    [Fact]
    public async Task A_client_on_one_replica_hears_list_changed_when_the_list_changes_through_the_other()
    {
        var (otherApi, otherAddress) = await McpGatewayFixture.StartReplicaAsync();
        await using var _ = otherApi;
        var tenant = TestEnvironment.NewTenant();
        var (key, rest) = await gateway.KeyAndClientAsync(tenant);
        var otherRest = new HttpClient { BaseAddress = otherAddress };
        otherRest.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", key);
        var (serverId, tools) = await McpGatewayFixture.RegisterAsync(rest, "everything", everything.Endpoint);
        await using var client = await gateway.McpClientAsync(key, protocolVersion: Revision);
        var changes = ListChanges(client);

        Assert.True(client.ServerCapabilities.Tools?.ListChanged);
        Assert.Contains("everything__echo", (await client.ListToolsAsync()).Select(t => t.Name));
        // Let the session's GET stream open and its first list be read before anything changes; the registration's own
        // change notifications can reach this replica late on a busy machine (seen in a full run), so the quiet check
        // below starts only after a second with nothing arriving.
        await Task.Delay(500);
        for (var settled = 0; settled < 5 && await ArrivesWithinAsync(changes, TimeSpan.FromSeconds(1)); settled++)
        {
        }

        // Through the other replica: a rate limit leaves the list as it was, so nothing is sent ...
        var echoId = tools["echo"].GetProperty("id").GetString();
        Assert.True((await otherRest.PatchAsJsonAsync($"/integrations/mcp-servers/{serverId}/tools/{echoId}", new { rate_limit_per_minute = 30 })).IsSuccessStatusCode);
        Assert.False(await ArrivesWithinAsync(changes, TimeSpan.FromSeconds(1.5)), "list_changed sent for a change that leaves the list as it was");

        // ... disabling a tool takes it off the list,
        Assert.True((await otherRest.PatchAsJsonAsync($"/integrations/mcp-servers/{serverId}/tools/{echoId}", new { enabled = false })).IsSuccessStatusCode);
        Assert.True(await ArrivesWithinAsync(changes, TimeSpan.FromSeconds(10)), "no list_changed after a tool was disabled on the other replica");
        Assert.DoesNotContain("everything__echo", (await client.ListToolsAsync()).Select(t => t.Name));

        // ... and so do a policy change and a disabled server.
        Assert.True((await otherRest.PutAsJsonAsync("/policies/tools", new { risk_ceiling = "medium", deny_list = new[] { "everything/get-sum" } })).IsSuccessStatusCode);
        Assert.True(await ArrivesWithinAsync(changes, TimeSpan.FromSeconds(10)), "no list_changed after a policy change on the other replica");
        Assert.DoesNotContain("everything__get-sum", (await client.ListToolsAsync()).Select(t => t.Name));
        Assert.True((await otherRest.PostAsJsonAsync($"/integrations/mcp-servers/{serverId}/disable", new { reason = "test" })).IsSuccessStatusCode);
        Assert.True(await ArrivesWithinAsync(changes, TimeSpan.FromSeconds(10)), "no list_changed after the server was disabled on the other replica");
        Assert.Empty(await client.ListToolsAsync());
    }

    [Fact]
    public async Task A_session_opened_on_one_replica_is_continued_on_the_other_only_with_the_key_that_opened_it()
    {
        var (otherApi, otherAddress) = await McpGatewayFixture.StartReplicaAsync();
        await using var _ = otherApi;
        var tenant = TestEnvironment.NewTenant();
        var (key, rest) = await gateway.KeyAndClientAsync(tenant);
        var (secondKey, _) = await gateway.KeyAndClientAsync(tenant);
        var (strangerKey, _) = await gateway.TenantAsync();
        await McpGatewayFixture.RegisterAsync(rest, "everything", everything.Endpoint);
        using var http = new HttpClient();

        async Task<HttpResponseMessage> PostAsync(Uri address, string path, string bearer, string? session, object message)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, new Uri(address, path))
            {
                Content = new StringContent(JsonSerializer.Serialize(message), Encoding.UTF8, "application/json"),
            };
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", bearer);
            request.Headers.Accept.ParseAdd("application/json");
            request.Headers.Accept.ParseAdd("text/event-stream");
            request.Headers.Add("MCP-Protocol-Version", Revision);
            if (session is not null) request.Headers.Add("Mcp-Session-Id", session);
            return await http.SendAsync(request);
        }

        var initialized = await PostAsync(gateway.Address, "/mcp", key, null, new
        {
            jsonrpc = "2.0",
            id = 1,
            method = "initialize",
            @params = new { protocolVersion = Revision, capabilities = new { }, clientInfo = new { name = "replica-test", version = "1" } },
        });
        Assert.Equal(HttpStatusCode.OK, initialized.StatusCode);
        var session = initialized.Headers.GetValues("Mcp-Session-Id").Single();
        Assert.Equal(HttpStatusCode.Accepted, (await PostAsync(gateway.Address, "/mcp", key, session, new { jsonrpc = "2.0", method = "notifications/initialized" })).StatusCode);

        var listTools = new { jsonrpc = "2.0", id = 2, method = "tools/list" };
        // Another tenant's key and another key of the same tenant cannot take the session over; the path is part of it too.
        Assert.Equal(HttpStatusCode.NotFound, (await PostAsync(otherAddress, "/mcp", strangerKey, session, listTools)).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await PostAsync(otherAddress, "/mcp", secondKey, session, listTools)).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await PostAsync(otherAddress, "/mcp/some-virtual-server", key, session, listTools)).StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await PostAsync(otherAddress, "/mcp", key, "not-a-session", listTools)).StatusCode);

        var continued = await PostAsync(otherAddress, "/mcp", key, session, listTools);
        var body = await continued.Content.ReadAsStringAsync();
        Assert.Equal(HttpStatusCode.OK, continued.StatusCode);
        Assert.Equal(session, continued.Headers.GetValues("Mcp-Session-Id").Single());
        Assert.Contains("everything__echo", body);
    }
}
