using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Tests.Support;

namespace Integrations.Tests.McpServers;

/// <summary>tools.invoke over HTTP against a C# test server: the caller's own API key never reaches the MCP server.</summary>
public sealed class InvokeHttpTests(ApiFixture fixture) : IClassFixture<ApiFixture>
{
    private ApiFactory Api => fixture.Factory;

    [Fact]
    public async Task The_callers_api_key_is_never_forwarded_and_a_timeout_is_a_504_with_the_invocation_id()
    {
        await using var mcp = new TestMcpServer();
        await mcp.StartAsync();
        var tenant = TestEnvironment.NewTenant();
        var key = await Api.KeyForAsync(tenant);
        var client = Api.CreateClient();
        client.DefaultRequestHeaders.Authorization = new("Bearer", key.Key);

        var registered = JsonDocument.Parse(await (await client.PostAsJsonAsync("/integrations/mcp-servers",
            new { name = "test", url = mcp.Endpoint.ToString() })).Content.ReadAsStringAsync()).RootElement;
        var serverId = registered.GetProperty("server").GetProperty("id").GetString();
        var tools = registered.GetProperty("tools").EnumerateArray().ToDictionary(t => t.GetProperty("name").GetString()!, t => t.GetProperty("id").GetString());

        var ok = await client.PostAsJsonAsync($"/integrations/mcp-servers/{serverId}/tools/{tools["echo"]}/invoke", new { arguments = new { message = "x" } });
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        var slow = await client.PostAsJsonAsync($"/integrations/mcp-servers/{serverId}/tools/{tools["slow"]}/invoke",
            new { arguments = new { ms = 5000 }, timeout_ms = 200 });
        Assert.Equal(HttpStatusCode.GatewayTimeout, slow.StatusCode);
        var problem = JsonDocument.Parse(await slow.Content.ReadAsStringAsync()).RootElement;
        Assert.Equal("upstream_timeout", problem.GetProperty("code").GetString());
        Assert.True(Guid.TryParse(problem.GetProperty("invocation_id").GetString(), out _));

        Assert.All(mcp.ReceivedRequests, r => Assert.DoesNotContain(r.Headers.Values, v => v.Contains(key.Key) || v.Contains(key.Id.ToString("N"))));
        Assert.Contains(mcp.ReceivedRequests, r => r.JsonRpcMethod == "tools/call");
    }

    [Fact]
    public async Task A_timeout_above_the_configured_bound_or_non_object_arguments_are_400()
    {
        var client = await Api.ClientForAsync(TestEnvironment.NewTenant());
        var url = $"/integrations/mcp-servers/{Guid.NewGuid()}/tools/{Guid.NewGuid()}/invoke";

        var tooLong = await client.PostAsJsonAsync(url, new { arguments = new { }, timeout_ms = 10_000_000 });
        var notObject = await client.PostAsJsonAsync(url, new { arguments = new[] { 1, 2 } });

        Assert.Equal(HttpStatusCode.BadRequest, tooLong.StatusCode);
        Assert.Equal(HttpStatusCode.BadRequest, notObject.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, (await client.PostAsJsonAsync(url, new { arguments = new { } })).StatusCode);
    }
}
