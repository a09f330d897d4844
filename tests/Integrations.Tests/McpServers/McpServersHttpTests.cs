using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Common;
using Integrations.Tests.Support;

namespace Integrations.Tests.McpServers;

/// <summary>The /integrations/mcp-servers routes through the real host, as a console or curl uses them.</summary>
[Collection(EverythingServerCollection.Name)]
public sealed class McpServersHttpTests(EverythingServer everything, ApiFixture fixture) : IClassFixture<ApiFixture>
{
    private ApiFactory Api => fixture.Factory;

    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

    private static async Task<string> CodeAsync(HttpResponseMessage response)
    {
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        return (await JsonAsync(response)).GetProperty("code").GetString()!;
    }

    [Fact]
    public async Task Register_the_reference_server_list_its_tools_with_risk_levels_govern_discover_check_and_delete()
    {
        var tenant = TestEnvironment.NewTenant();
        var client = await Api.ClientForAsync(tenant);

        var registered = await client.PostAsJsonAsync("/integrations/mcp-servers", new { name = "everything", url = everything.Endpoint.ToString() });
        Assert.Equal(HttpStatusCode.Created, registered.StatusCode);
        var body = await JsonAsync(registered);
        var id = body.GetProperty("server").GetProperty("id").GetString();
        Assert.Equal($"/integrations/mcp-servers/{id}", registered.Headers.Location?.ToString());
        Assert.Equal("active", body.GetProperty("server").GetProperty("status").GetString());

        var list = await JsonAsync(await client.GetAsync("/integrations/mcp-servers?limit=10"));
        Assert.Equal(id, list.GetProperty("items")[0].GetProperty("id").GetString());
        Assert.Equal(JsonValueKind.Null, list.GetProperty("next_cursor").ValueKind);

        var tools = await JsonAsync(await client.GetAsync($"/integrations/mcp-servers/{id}/tools?limit=200"));
        var byName = tools.GetProperty("items").EnumerateArray().ToDictionary(t => t.GetProperty("name").GetString()!);
        Assert.Equal("low", byName["get-sum"].GetProperty("risk_level").GetString());
        Assert.Equal("low", byName["echo"].GetProperty("risk_level").GetString());
        Assert.Equal("object", byName["echo"].GetProperty("input_schema").GetProperty("type").GetString());
        Assert.True(byName["echo"].GetProperty("annotations").TryGetProperty("readOnlyHint", out _), "protocol JSON keeps its own names");
        var longRunning = byName["trigger-long-running-operation"];
        Assert.False(longRunning.GetProperty("enabled").GetBoolean());

        var enabled = await client.PatchAsJsonAsync($"/integrations/mcp-servers/{id}/tools/{longRunning.GetProperty("id").GetString()}", new { enabled = true });
        Assert.Equal(HttpStatusCode.OK, enabled.StatusCode);
        Assert.True((await JsonAsync(enabled)).GetProperty("enabled").GetBoolean());

        var discovered = await client.PostAsync($"/integrations/mcp-servers/{id}/discover", null);
        Assert.Equal(HttpStatusCode.OK, discovered.StatusCode);
        Assert.Equal(0, (await JsonAsync(discovered)).GetProperty("drifted").GetArrayLength());

        var renamed = await client.PatchAsJsonAsync($"/integrations/mcp-servers/{id}", new { name = "reference" });
        Assert.Equal(HttpStatusCode.OK, renamed.StatusCode);
        var renamedBody = await JsonAsync(renamed);
        Assert.Equal(("reference", 0), (renamedBody.GetProperty("server").GetProperty("name").GetString(), renamedBody.GetProperty("drifted").GetArrayLength()));
        var badPatch = await client.PatchAsJsonAsync($"/integrations/mcp-servers/{id}", new { url = "http://169.254.169.254/mcp" });
        Assert.Equal((HttpStatusCode.UnprocessableEntity, "ssrf_blocked"), (badPatch.StatusCode, await CodeAsync(badPatch)));

        var auditBefore = await OwnerSql.AuditCountAsync(Api.ConnectionString, tenant);
        var recorded = await JsonAsync(await client.GetAsync($"/integrations/mcp-servers/{id}/health"));
        Assert.Equal((JsonValueKind.Null, auditBefore), (recorded.GetProperty("checked_at").ValueKind, await OwnerSql.AuditCountAsync(Api.ConnectionString, tenant)));
        var health = await JsonAsync(await client.PostAsync($"/integrations/mcp-servers/{id}/health", null));
        Assert.Equal("active", health.GetProperty("status").GetString());
        var afterProbe = await JsonAsync(await client.GetAsync($"/integrations/mcp-servers/{id}/health"));
        Assert.Equal(("active", health.GetProperty("checked_at").GetDateTimeOffset()),
            (afterProbe.GetProperty("status").GetString(), afterProbe.GetProperty("checked_at").GetDateTimeOffset()));

        Assert.Equal(HttpStatusCode.NoContent, (await client.DeleteAsync($"/integrations/mcp-servers/{id}")).StatusCode);
        var gone = await client.GetAsync($"/integrations/mcp-servers/{id}");
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
        Assert.Equal("not_found", await CodeAsync(gone));

        var audit = await JsonAsync(await client.GetAsync("/audit"));
        Assert.Equal(
            ["mcp_servers.delete", "mcp_servers.health", "mcp_servers.update", "mcp_servers.discover", "tools.update", "mcp_servers.register"],
            audit.GetProperty("items").EnumerateArray().Select(e => e.GetProperty("action").GetString()));
    }

    [Fact]
    public async Task The_callers_api_key_is_never_forwarded_to_the_mcp_server()
    {
        await using var mcp = new TestMcpServer();
        await mcp.StartAsync();
        var tenant = TestEnvironment.NewTenant();
        var key = await Api.KeyForAsync(tenant, Scopes.All.ToArray());
        var client = Api.CreateClient();
        client.DefaultRequestHeaders.Authorization = new("Bearer", key.Key);

        var registered = await client.PostAsJsonAsync("/integrations/mcp-servers", new { name = "c#", url = mcp.Endpoint.ToString() });
        Assert.Equal(HttpStatusCode.Created, registered.StatusCode);
        var id = (await JsonAsync(registered)).GetProperty("server").GetProperty("id").GetString();
        await client.PostAsync($"/integrations/mcp-servers/{id}/discover", null);

        Assert.NotEmpty(mcp.ReceivedRequests);
        Assert.All(mcp.ReceivedRequests, r =>
        {
            Assert.Null(r.Authorization);
            Assert.DoesNotContain(r.Headers.Values, v => v.Contains(key.Key) || v.Contains("ik_"));
        });
    }

    [Fact]
    public async Task Failures_are_problem_details_with_stable_codes()
    {
        var tenant = TestEnvironment.NewTenant();
        var client = await Api.ClientForAsync(tenant);
        var readOnly = await Api.ClientForAsync(tenant, Scopes.Read);

        var blocked = await client.PostAsJsonAsync("/integrations/mcp-servers", new { name = "meta", url = "https://169.254.169.254/latest" });
        Assert.Equal(HttpStatusCode.UnprocessableEntity, blocked.StatusCode);
        Assert.Equal("ssrf_blocked", await CodeAsync(blocked));

        var invalid = await client.PostAsJsonAsync("/integrations/mcp-servers", new { name = "", url = "not a url", credential_ref = "sk-raw-secret", auth_header = "Host" });
        Assert.Equal(HttpStatusCode.BadRequest, invalid.StatusCode);
        var errors = (await JsonAsync(invalid)).GetProperty("errors");
        Assert.Equal(["auth_header", "credential_ref", "name", "url"], errors.EnumerateObject().Select(e => e.Name).Order());

        var forbidden = await readOnly.PostAsJsonAsync("/integrations/mcp-servers", new { name = "x", url = everything.Endpoint.ToString() });
        Assert.Equal(HttpStatusCode.Forbidden, forbidden.StatusCode);

        var registered = await client.PostAsJsonAsync("/integrations/mcp-servers", new { name = "one", url = everything.Endpoint.ToString() });
        var again = await client.PostAsJsonAsync("/integrations/mcp-servers", new { name = "two", url = everything.Endpoint.ToString() });
        Assert.Equal(HttpStatusCode.Conflict, again.StatusCode);
        Assert.Equal("conflict", await CodeAsync(again));

        var id = (await JsonAsync(registered)).GetProperty("server").GetProperty("id").GetString();
        var stranger = await Api.ClientForAsync(TestEnvironment.NewTenant());
        foreach (var request in new[]
        {
            new HttpRequestMessage(HttpMethod.Get, $"/integrations/mcp-servers/{id}"),
            new HttpRequestMessage(HttpMethod.Get, $"/integrations/mcp-servers/{id}/tools"),
            new HttpRequestMessage(HttpMethod.Get, $"/integrations/mcp-servers/{id}/health"),
            new HttpRequestMessage(HttpMethod.Post, $"/integrations/mcp-servers/{id}/health"),
            new HttpRequestMessage(HttpMethod.Post, $"/integrations/mcp-servers/{id}/discover"),
            new HttpRequestMessage(HttpMethod.Patch, $"/integrations/mcp-servers/{id}/tools/{Guid.NewGuid()}") { Content = JsonContent.Create(new { enabled = false }) },
            new HttpRequestMessage(HttpMethod.Post, $"/integrations/mcp-servers/{id}/disable"),
            new HttpRequestMessage(HttpMethod.Post, $"/integrations/mcp-servers/{id}/enable"),
            new HttpRequestMessage(HttpMethod.Delete, $"/integrations/mcp-servers/{id}"),
        })
        {
            var response = await stranger.SendAsync(request);
            Assert.Equal(HttpStatusCode.NotFound, response.StatusCode);
            Assert.Equal("not_found", await CodeAsync(response));
        }

        var badCursor = await client.GetAsync("/integrations/mcp-servers?cursor=!!!");
        Assert.Equal("validation_failed", await CodeAsync(badCursor));
    }

    [Fact]
    public async Task Disable_with_a_reason_refuses_invocations_enable_restores_them_and_invalid_moves_are_409_problems()
    {
        await using var mcp = new TestMcpServer();
        await mcp.StartAsync();
        var client = await Api.ClientForAsync(TestEnvironment.NewTenant());
        var registered = await JsonAsync(await client.PostAsJsonAsync("/integrations/mcp-servers", new { name = "c#", url = mcp.Endpoint.ToString() }));
        var id = registered.GetProperty("server").GetProperty("id").GetString();
        var echo = registered.GetProperty("tools").EnumerateArray().Single(t => t.GetProperty("name").GetString() == "echo").GetProperty("id").GetString();
        var invoke = $"/integrations/mcp-servers/{id}/tools/{echo}/invoke";

        var tooLong = await client.PostAsJsonAsync($"/integrations/mcp-servers/{id}/disable", new { reason = new string('r', 501) });
        Assert.Equal(HttpStatusCode.BadRequest, tooLong.StatusCode);
        Assert.True((await JsonAsync(tooLong)).GetProperty("errors").TryGetProperty("reason", out _));

        var disabled = await client.PostAsJsonAsync($"/integrations/mcp-servers/{id}/disable", new { reason = "rotating the vendor's keys" });
        Assert.Equal(HttpStatusCode.OK, disabled.StatusCode);
        Assert.Equal("disabled", (await JsonAsync(disabled)).GetProperty("status").GetString());
        var denied = await client.PostAsJsonAsync(invoke, new { arguments = new { message = "hi" } });
        Assert.Equal(HttpStatusCode.Forbidden, denied.StatusCode);
        var problem = await JsonAsync(denied);
        Assert.Equal(("policy_denied", "server_disabled"), (problem.GetProperty("code").GetString(), problem.GetProperty("rule").GetString()));

        var again = await client.PostAsync($"/integrations/mcp-servers/{id}/disable", null);
        Assert.Equal(HttpStatusCode.Conflict, again.StatusCode);
        Assert.Equal("invalid_transition", await CodeAsync(again));

        var enabled = await client.PostAsync($"/integrations/mcp-servers/{id}/enable", null);
        Assert.Equal(HttpStatusCode.OK, enabled.StatusCode);
        Assert.Equal("pending", (await JsonAsync(enabled)).GetProperty("status").GetString());
        Assert.Equal(HttpStatusCode.OK, (await client.PostAsJsonAsync(invoke, new { arguments = new { message = "hi" } })).StatusCode);
        var enabledAgain = await client.PostAsJsonAsync($"/integrations/mcp-servers/{id}/enable", new { reason = "twice" });
        Assert.Equal(HttpStatusCode.Conflict, enabledAgain.StatusCode);
        Assert.Equal("invalid_transition", await CodeAsync(enabledAgain));

        var audit = await JsonAsync(await client.GetAsync($"/audit?subject_type=mcp_server&subject_id={id}"));
        var events = audit.GetProperty("items").EnumerateArray().ToList();
        Assert.Equal(["mcp_servers.enable", "mcp_servers.disable", "mcp_servers.register"], events.Select(e => e.GetProperty("action").GetString()));
        Assert.Equal("rotating the vendor's keys", events[1].GetProperty("details").GetProperty("reason").GetString());
    }

    [Fact]
    public async Task Server_lists_page_with_cursors_and_do_not_clash_with_integration_routes()
    {
        var client = await Api.ClientForAsync(TestEnvironment.NewTenant());
        var mcps = new List<TestMcpServer>();
        try
        {
            for (var i = 0; i < 3; i++)
            {
                var mcp = new TestMcpServer();
                await mcp.StartAsync();
                mcps.Add(mcp);
                Assert.Equal(HttpStatusCode.Created,
                    (await client.PostAsJsonAsync("/integrations/mcp-servers", new { name = $"s{i}", url = mcp.Endpoint.ToString() })).StatusCode);
            }

            var first = await JsonAsync(await client.GetAsync("/integrations/mcp-servers?limit=2"));
            var second = await JsonAsync(await client.GetAsync($"/integrations/mcp-servers?limit=2&cursor={first.GetProperty("next_cursor").GetString()}"));

            Assert.Equal(["s2", "s1"], first.GetProperty("items").EnumerateArray().Select(s => s.GetProperty("name").GetString()));
            Assert.Equal(["s0"], second.GetProperty("items").EnumerateArray().Select(s => s.GetProperty("name").GetString()));
            Assert.Equal(JsonValueKind.Null, second.GetProperty("next_cursor").ValueKind);
            Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/integrations")).StatusCode);
            Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync($"/integrations/{Guid.NewGuid()}")).StatusCode);
        }
        finally
        {
            foreach (var mcp in mcps) await mcp.DisposeAsync();
        }
    }
}
