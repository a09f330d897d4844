using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Integrations.Common;
using Integrations.Tests.Support;

namespace Integrations.Tests.Http;

/// <summary>The /evidence routes as curl or the console uses them: a policy in snake_case, a call, its evidence for admin only.</summary>
public sealed class EvidenceHttpTests(ApiFixture fixture) : IClassFixture<ApiFixture>, IAsyncLifetime
{
    private readonly TestMcpServer _mcp = new();

    public Task InitializeAsync() => _mcp.StartAsync();

    public async Task DisposeAsync() => await _mcp.DisposeAsync();

    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

    [Fact]
    public async Task A_policy_set_over_http_keeps_a_calls_output_which_only_an_admin_key_reads()
    {
        var tenant = TestEnvironment.NewTenant();
        var admin = await fixture.Factory.ClientForAsync(tenant, Scopes.Admin);
        var registered = await JsonAsync(await admin.PostAsJsonAsync("/integrations/mcp-servers", new { name = "echo", url = _mcp.Endpoint.ToString() }));
        var server = registered.GetProperty("server").GetProperty("id").GetString();
        var echo = registered.GetProperty("tools").EnumerateArray().Single(t => t.GetProperty("name").GetString() == "echo").GetProperty("id").GetString();

        var put = await admin.PutAsJsonAsync($"/evidence/policies/mcp-servers/{server}",
            new { enabled = true, redact_patterns = new[] { "regex:secret-\\d+" }, max_bytes = 4096, retention_days = 7 });
        Assert.Equal(HttpStatusCode.OK, put.StatusCode);
        var policy = (await JsonAsync(await admin.GetAsync($"/evidence/policies/mcp-servers/{server}"))).GetProperty("policy");
        Assert.Equal((true, 4096, 7), (policy.GetProperty("enabled").GetBoolean(), policy.GetProperty("max_bytes").GetInt32(), policy.GetProperty("retention_days").GetInt32()));

        var call = await JsonAsync(await admin.PostAsJsonAsync($"/integrations/mcp-servers/{server}/tools/{echo}/invoke",
            new { arguments = new { message = "code secret-42" } }));
        var invocation = call.GetProperty("invocation_id").GetString();

        var evidence = await admin.GetAsync($"/evidence/{invocation}");
        Assert.Equal(HttpStatusCode.OK, evidence.StatusCode);
        var body = await JsonAsync(evidence);
        Assert.Contains("code [redacted]", body.GetProperty("content").GetString());
        Assert.Equal(1, body.GetProperty("redactions").GetInt32());
        var viaInvocation = await JsonAsync(await admin.GetAsync($"/invocations/{invocation}"));
        Assert.Equal(body.GetProperty("content_hash").GetString(), viaInvocation.GetProperty("evidence").GetProperty("content_hash").GetString());

        var reader = await fixture.Factory.ClientForAsync(tenant, Scopes.Read);
        var refused = await reader.GetAsync($"/evidence/{invocation}");
        Assert.Equal(HttpStatusCode.Forbidden, refused.StatusCode);
        Assert.Equal("application/problem+json", refused.Content.Headers.ContentType?.MediaType);
        Assert.Equal(JsonValueKind.Null, (await JsonAsync(await reader.GetAsync($"/invocations/{invocation}"))).GetProperty("evidence").ValueKind);
        var badPut = await admin.PutAsJsonAsync($"/evidence/policies/mcp-servers/{server}", new { enabled = true, max_bytes = 0 });
        Assert.Equal(HttpStatusCode.BadRequest, badPut.StatusCode);
    }
}
