using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Tests.Support;

namespace Integrations.Tests.Http;

/// <summary>RateLimit-Limit / -Remaining / -Reset on tools.invoke, from the counts its admission made anyway.</summary>
public sealed class RateLimitHeaderTests(ApiFixture fixture) : IClassFixture<ApiFixture>
{
    [Fact]
    public async Task A_rate_limited_tool_answers_the_limit_the_calls_left_and_the_reset_and_its_429_carries_them_beside_Retry_After()
    {
        await using var mcp = new TestMcpServer();
        await mcp.StartAsync();
        var client = await fixture.Factory.ClientForAsync(TestEnvironment.NewTenant());
        var registered = JsonDocument.Parse(await (await client.PostAsJsonAsync("/integrations/mcp-servers",
            new { name = "limited", url = mcp.Endpoint.ToString() })).Content.ReadAsStringAsync()).RootElement;
        var serverId = registered.GetProperty("server").GetProperty("id").GetString();
        var tools = registered.GetProperty("tools").EnumerateArray().ToDictionary(t => t.GetProperty("name").GetString()!, t => t.GetProperty("id").GetString());
        Task<HttpResponseMessage> Invoke(string tool) =>
            client.PostAsJsonAsync($"/integrations/mcp-servers/{serverId}/tools/{tools[tool]}/invoke", new { arguments = new { message = "x" } });

        // A tool without a limit counts nothing, so its answer says nothing about limits.
        var unlimited = await Invoke("echo");
        Assert.Equal(HttpStatusCode.OK, unlimited.StatusCode);
        Assert.False(unlimited.Headers.Contains("RateLimit-Limit"));

        Assert.Equal(HttpStatusCode.OK, (await client.PatchAsJsonAsync($"/integrations/mcp-servers/{serverId}/tools/{tools["echo"]}",
            new { rate_limit_per_minute = 2 })).StatusCode);
        while (DateTime.UtcNow.Second > 50) await Task.Delay(500); // the three calls in one window

        var first = await Invoke("echo");
        var second = await Invoke("echo");
        var refused = await Invoke("echo");

        Assert.Equal((HttpStatusCode.OK, "2", "1"), (first.StatusCode, Header(first, "RateLimit-Limit"), Header(first, "RateLimit-Remaining")));
        Assert.Equal((HttpStatusCode.OK, "2", "0"), (second.StatusCode, Header(second, "RateLimit-Limit"), Header(second, "RateLimit-Remaining")));
        Assert.Equal(((HttpStatusCode)429, "2", "0"), (refused.StatusCode, Header(refused, "RateLimit-Limit"), Header(refused, "RateLimit-Remaining")));
        Assert.Equal("rate_limited", JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.GetProperty("code").GetString());
        var reset = int.Parse(Header(refused, "RateLimit-Reset"));
        Assert.InRange(reset, 1, 60);
        Assert.Equal(reset.ToString(), refused.Headers.RetryAfter?.Delta?.TotalSeconds.ToString());
        Assert.InRange(int.Parse(Header(first, "RateLimit-Reset")), reset, 60);
    }

    [Fact]
    public async Task The_tenant_wide_limit_is_the_one_answered_when_it_has_fewer_calls_left_than_the_tools()
    {
        await using var mcp = new TestMcpServer();
        await mcp.StartAsync();
        var client = await fixture.Factory.ClientForAsync(TestEnvironment.NewTenant());
        var registered = JsonDocument.Parse(await (await client.PostAsJsonAsync("/integrations/mcp-servers",
            new { name = "limited", url = mcp.Endpoint.ToString() })).Content.ReadAsStringAsync()).RootElement;
        var serverId = registered.GetProperty("server").GetProperty("id").GetString();
        var echo = registered.GetProperty("tools").EnumerateArray().Single(t => t.GetProperty("name").GetString() == "echo").GetProperty("id").GetString();
        Assert.Equal(HttpStatusCode.OK, (await client.PatchAsJsonAsync($"/integrations/mcp-servers/{serverId}/tools/{echo}",
            new { rate_limit_per_minute = 10 })).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await client.PutAsJsonAsync("/policies/tools", new { tenant_rate_limit_per_minute = 1 })).StatusCode);
        while (DateTime.UtcNow.Second > 50) await Task.Delay(500);

        var allowed = await client.PostAsJsonAsync($"/integrations/mcp-servers/{serverId}/tools/{echo}/invoke", new { arguments = new { message = "x" } });
        var refused = await client.PostAsJsonAsync($"/integrations/mcp-servers/{serverId}/tools/{echo}/invoke", new { arguments = new { message = "x" } });

        Assert.Equal((HttpStatusCode.OK, "1", "0"), (allowed.StatusCode, Header(allowed, "RateLimit-Limit"), Header(allowed, "RateLimit-Remaining")));
        Assert.Equal(((HttpStatusCode)429, "1", "0"), (refused.StatusCode, Header(refused, "RateLimit-Limit"), Header(refused, "RateLimit-Remaining")));
        Assert.Equal("tenant_rate_limit", JsonDocument.Parse(await refused.Content.ReadAsStringAsync()).RootElement.GetProperty("rule").GetString());
    }

    private static string Header(HttpResponseMessage response, string name) =>
        response.Headers.TryGetValues(name, out var values) ? values.Single() : "(absent)";
}
