using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Common;
using Integrations.Tests.Support;

namespace Integrations.Tests.McpServers;

/// <summary>tools.invoke over HTTP against the real reference server (@modelcontextprotocol/server-everything).</summary>
[Collection(EverythingServerCollection.Name)]
public sealed class InvokeReferenceServerTests(EverythingServer everything, ApiFixture fixture) : IClassFixture<ApiFixture>
{
    private ApiFactory Api => fixture.Factory;

    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

    private async Task<(HttpClient Client, string ServerId, Dictionary<string, JsonElement> Tools)> RegisterAsync()
    {
        var client = await Api.ClientForAsync(TestEnvironment.NewTenant());
        var registered = await JsonAsync(await client.PostAsJsonAsync("/integrations/mcp-servers", new { name = "everything", url = everything.Endpoint.ToString() }));
        var tools = registered.GetProperty("tools").EnumerateArray().ToDictionary(t => t.GetProperty("name").GetString()!);
        return (client, registered.GetProperty("server").GetProperty("id").GetString()!, tools);
    }

    private static string Invoke(string serverId, JsonElement tool) => $"/integrations/mcp-servers/{serverId}/tools/{tool.GetProperty("id").GetString()}/invoke";

    [Fact]
    public async Task Echo_and_get_sum_return_their_results_through_the_gateway_and_show_up_as_invocations()
    {
        var (client, serverId, tools) = await RegisterAsync();

        var echo = await client.PostAsJsonAsync(Invoke(serverId, tools["echo"]), new { arguments = new { message = "hi there" }, run_id = "run-1" });
        Assert.Equal(HttpStatusCode.OK, echo.StatusCode);
        var echoBody = await JsonAsync(echo);
        Assert.Equal("completed", echoBody.GetProperty("outcome").GetString());
        Assert.Contains("hi there", echoBody.GetProperty("content")[0].GetProperty("text").GetString());

        var sum = await JsonAsync(await client.PostAsJsonAsync(Invoke(serverId, tools["get-sum"]), new { arguments = new { a = 2, b = 40 } }));
        Assert.Contains("42", sum.GetProperty("content")[0].GetProperty("text").GetString());

        var invocations = await JsonAsync(await client.GetAsync($"/integrations/mcp-servers/{serverId}/invocations?run_id=run-1"));
        var row = Assert.Single(invocations.GetProperty("items").EnumerateArray());
        Assert.Equal(echoBody.GetProperty("invocation_id").GetString(), row.GetProperty("id").GetString());

        var audit = await JsonAsync(await client.GetAsync("/audit?limit=200"));
        var actions = audit.GetProperty("items").EnumerateArray()
            .Where(e => e.GetProperty("correlation_id").GetString() == echoBody.GetProperty("invocation_id").GetString())
            .Select(e => e.GetProperty("action").GetString()).Reverse();
        Assert.Equal(["tool.invocation.requested", "tool.invocation.allowed", "tool.invocation.started", "tool.invocation.completed"], actions);
    }

    [Fact]
    public async Task Denials_answer_with_their_codes_over_http()
    {
        var (client, serverId, tools) = await RegisterAsync();

        var disabled = await client.PostAsJsonAsync(Invoke(serverId, tools["trigger-long-running-operation"]), new { arguments = new { duration = 1, steps = 1 } });
        Assert.Equal(HttpStatusCode.Forbidden, disabled.StatusCode);
        var problem = await JsonAsync(disabled);
        Assert.Equal(("policy_denied", "tool_disabled"), (problem.GetProperty("code").GetString(), problem.GetProperty("rule").GetString()));

        var invalid = await client.PostAsJsonAsync(Invoke(serverId, tools["get-sum"]), new { arguments = new { a = "two" } });
        Assert.Equal(HttpStatusCode.BadRequest, invalid.StatusCode);
        Assert.Equal("validation_failed", (await JsonAsync(invalid)).GetProperty("code").GetString());

        var reader = await Api.ClientForAsync(TestEnvironment.NewTenant(), Scopes.Read);
        Assert.Equal(HttpStatusCode.Forbidden, (await reader.PostAsJsonAsync(Invoke(serverId, tools["echo"]), new { arguments = new { message = "x" } })).StatusCode);
    }

    [Fact]
    public async Task The_call_over_the_limit_is_429_with_retry_after()
    {
        var (client, serverId, tools) = await RegisterAsync();
        var toolId = tools["echo"].GetProperty("id").GetString();
        await client.PatchAsJsonAsync($"/integrations/mcp-servers/{serverId}/tools/{toolId}", new { rate_limit_per_minute = 1 });
        while (DateTime.UtcNow.Second > 50) await Task.Delay(500);

        Assert.Equal(HttpStatusCode.OK, (await client.PostAsJsonAsync(Invoke(serverId, tools["echo"]), new { arguments = new { message = "1" } })).StatusCode);
        var limited = await client.PostAsJsonAsync(Invoke(serverId, tools["echo"]), new { arguments = new { message = "2" } });

        Assert.Equal(HttpStatusCode.TooManyRequests, limited.StatusCode);
        Assert.True(int.Parse(limited.Headers.GetValues("Retry-After").Single()) is >= 1 and <= 60);
        Assert.Equal("rate_limited", (await JsonAsync(limited)).GetProperty("code").GetString());
    }
}
