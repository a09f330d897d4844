using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Infrastructure.Database;
using Integrations.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace Integrations.Tests.McpGateway;

/// <summary>REST by name: <c>GET /tools</c> across servers and <c>POST /tools/{name}/invoke</c>, the same governed call.</summary>
[Collection(EverythingServerCollection.Name)]
public sealed class ToolsByNameTests(EverythingServer everything, McpGatewayFixture gateway) : IClassFixture<McpGatewayFixture>
{
    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

    [Fact]
    public async Task Get_tools_pages_through_every_callable_tool_by_name_in_order()
    {
        var (_, rest) = await gateway.TenantAsync();
        var (_, registered) = await McpGatewayFixture.RegisterAsync(rest, "everything", everything.Endpoint);
        var expected = registered.Values.Where(t => t.GetProperty("enabled").GetBoolean())
            .Select(t => "everything__" + t.GetProperty("name").GetString()).Order(StringComparer.Ordinal).ToList();

        var names = new List<string>();
        string? cursor = null;
        do
        {
            var page = await JsonAsync(await rest.GetAsync("/tools?limit=2" + (cursor is null ? "" : "&cursor=" + cursor)));
            var items = page.GetProperty("items").EnumerateArray().ToList();
            Assert.InRange(items.Count, 1, 2);
            names.AddRange(items.Select(i => i.GetProperty("name").GetString()!));
            cursor = page.GetProperty("next_cursor").GetString();
        }
        while (cursor is not null);

        Assert.Equal(expected, names);
        var echo = (await JsonAsync(await rest.GetAsync("/tools?limit=200"))).GetProperty("items").EnumerateArray().Single(t => t.GetProperty("name").GetString() == "everything__echo");
        Assert.Equal(("everything", "echo", registered["echo"].GetProperty("risk_level").GetString()), (echo.GetProperty("server_name").GetString(), echo.GetProperty("tool_name").GetString(), echo.GetProperty("risk_level").GetString()));
        Assert.Equal(registered["echo"].GetProperty("id").GetString(), echo.GetProperty("tool_id").GetString());

        var bad = await rest.GetAsync("/tools?cursor=%%%");
        Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        Assert.Equal("validation_failed", (await JsonAsync(bad)).GetProperty("code").GetString());
    }

    [Fact]
    public async Task Invoke_by_name_is_tools_invoke_and_an_unknown_name_is_404()
    {
        var (_, rest) = await gateway.TenantAsync();
        var (serverId, _) = await McpGatewayFixture.RegisterAsync(rest, "everything", everything.Endpoint);

        var called = await rest.PostAsJsonAsync("/tools/everything__echo/invoke", new { arguments = new { message = "by name" }, run_id = "rest-by-name" });
        Assert.Equal(HttpStatusCode.OK, called.StatusCode);
        var body = await JsonAsync(called);
        Assert.Equal("completed", body.GetProperty("outcome").GetString());
        Assert.Contains("by name", body.GetProperty("content")[0].GetProperty("text").GetString());
        var rows = await JsonAsync(await rest.GetAsync($"/integrations/mcp-servers/{serverId}/invocations?run_id=rest-by-name"));
        Assert.Equal(body.GetProperty("invocation_id").GetString(), Assert.Single(rows.GetProperty("items").EnumerateArray()).GetProperty("id").GetString());

        var disabled = await rest.PostAsJsonAsync("/tools/everything__trigger-long-running-operation/invoke", new { arguments = new { duration = 1, steps = 1 } });
        Assert.Equal(HttpStatusCode.Forbidden, disabled.StatusCode);
        Assert.Equal("tool_disabled", (await JsonAsync(disabled)).GetProperty("rule").GetString());

        var unknown = await rest.PostAsJsonAsync("/tools/everything__nope/invoke", new { arguments = new { } });
        Assert.Equal(HttpStatusCode.NotFound, unknown.StatusCode);
        Assert.Equal("not_found", (await JsonAsync(unknown)).GetProperty("code").GetString());
    }

    [Fact]
    public async Task Two_servers_with_one_name_keep_distinct_names_and_the_first_registered_keeps_the_plain_one()
    {
        var (_, rest) = await gateway.TenantAsync();
        var (_, first) = await McpGatewayFixture.RegisterAsync(rest, "everything", everything.Endpoint);
        var (_, second) = await McpGatewayFixture.RegisterAsync(rest, "everything", new UriBuilder(everything.Endpoint) { Host = "localhost" }.Uri);

        var tools = (await JsonAsync(await rest.GetAsync("/tools?limit=200"))).GetProperty("items").EnumerateArray()
            .ToDictionary(t => t.GetProperty("name").GetString()!, t => t.GetProperty("tool_id").GetString());
        var secondEcho = second["echo"].GetProperty("id").GetGuid();
        Assert.Equal(first["echo"].GetProperty("id").GetString(), tools["everything__echo"]);
        Assert.Equal(secondEcho.ToString(), tools[$"everything__echo-{secondEcho:N}"[..("everything__echo-".Length + 8)]]);

        var called = await rest.PostAsJsonAsync($"/tools/everything__echo-{secondEcho.ToString("N")[..8]}/invoke", new { arguments = new { message = "second" } });
        Assert.Equal(HttpStatusCode.OK, called.StatusCode);
    }

    [Fact]
    public async Task A_change_made_on_one_replica_reaches_the_list_served_by_another()
    {
        await using var other = await ApiFactory.StartAsync();
        var tenant = TestEnvironment.NewTenant();
        var (_, rest) = await gateway.KeyAndClientAsync(tenant);
        var (serverId, tools) = await McpGatewayFixture.RegisterAsync(rest, "everything", everything.Endpoint);
        var otherClient = await other.ClientForAsync(tenant);
        // Only a replica that hears notifications keeps the catalog; one that reads through would pass without them.
        var notifications = other.Services.GetRequiredService<ChangeNotifications>();
        for (var waited = 0; !notifications.IsListening; waited++)
        {
            Assert.True(waited < 500, "the other replica's change listener did not start");
            await Task.Delay(10);
        }
        var listed = async () => (await JsonAsync(await otherClient.GetAsync("/tools?limit=200"))).GetProperty("items").EnumerateArray()
            .Select(t => t.GetProperty("name").GetString()).ToHashSet();
        Assert.Contains("everything__echo", await listed()); // the other replica now holds the tenant's catalog

        var echoId = tools["echo"].GetProperty("id").GetString();
        Assert.True((await rest.PatchAsJsonAsync($"/integrations/mcp-servers/{serverId}/tools/{echoId}", new { enabled = false })).IsSuccessStatusCode);

        var deadline = DateTime.UtcNow.AddSeconds(10);
        while ((await listed()).Contains("everything__echo"))
        {
            Assert.True(DateTime.UtcNow < deadline, "the other replica still lists the disabled tool after 10 s");
            await Task.Delay(50);
        }
    }
}
