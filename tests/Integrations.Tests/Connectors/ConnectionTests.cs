using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using Integrations.Features.Connectors;
using Integrations.Tests.McpGateway;
using Integrations.Tests.Support;
using ModelContextProtocol.Client;
using ModelContextProtocol.Protocol;
using static Integrations.Tests.Connectors.ConnectorTestKit;

namespace Integrations.Tests.Connectors;

/// <summary>
/// Connections of the http connector against a real local REST service: the contract (create, test, invoke, delete,
/// list, get), the governed call's refusals, what reaches the wire (encoded values, the credential's header), the SSRF
/// guard, and a connection's action called as a tool through /mcp with the C# SDK client.
/// </summary>
public sealed class ConnectionTests(McpGatewayFixture service) : IClassFixture<McpGatewayFixture>
{
    private async Task<(string Tenant, HttpClient Client, string Key)> TenantWithCrmAsync()
    {
        var tenant = TestEnvironment.NewTenant();
        var (key, rest) = await service.KeyAndClientAsync(tenant, McpGatewayFixture.AllScopes);
        await JsonAsync(await rest.PostAsJsonAsync("/connectors", new { manifest = CrmManifest("crm") }), 201);
        return (tenant, rest, key);
    }

    [Fact]
    public async Task Invoke_fills_the_template_with_every_value_encoded_in_its_place_and_sends_the_vault_credential()
    {
        var (tenant, rest, _) = await TenantWithCrmAsync();
        await using var upstream = await FakeRestService.StartAsync();
        var token = await StoreCredentialAsync(rest, new { name = "crm-token", type = "bearer_token", secret = "tok-Secret-1" });
        var connection = await CreateConnectionAsync(rest, new { name = "crm", connector = "crm", configuration = new { base_url = upstream.BaseUrl + "/api" }, credential_ref = token });
        Assert.StartsWith("cus-vault://", connection.GetProperty("credential_ref").GetString());

        var read = await JsonAsync(await InvokeAsync(rest, connection, "get_item",
            new { id = "../../admin?x=1#frag", fields = "a&b=c", trace = "t 1" }), 200);
        var seen = upstream.Requests.Last();
        Assert.Equal("GET", seen.Method);
        Assert.Equal("/api/items/..%2F..%2Fadmin%3Fx%3D1%23frag?q=id%3A..%2F..%2Fadmin%3Fx%3D1%23frag&fields=a%26b%3Dc", seen.RawTarget);
        Assert.Equal("Bearer tok-Secret-1", seen.Headers["Authorization"]);
        Assert.Equal("t 1", seen.Headers["X-Trace"]);
        Assert.Equal(200, read.GetProperty("output").GetProperty("status").GetInt32());
        Assert.True(read.GetProperty("output").GetProperty("body").GetProperty("ok").GetBoolean());
        Assert.Equal("read", read.GetProperty("access").GetString());

        await JsonAsync(await InvokeAsync(rest, connection, "create_item", new { title = "He said \"hi\"\n", count = 3, tags = new[] { "x", "y" } }), 200);
        var write = upstream.Requests.Last();
        Assert.Equal("POST", write.Method);
        var body = JsonDocument.Parse(write.Body).RootElement;
        Assert.Equal("He said \"hi\"\n", body.GetProperty("title").GetString());
        Assert.Equal(3, body.GetProperty("count").GetInt32());
        Assert.Equal(JsonValueKind.Array, body.GetProperty("tags").ValueKind);
        Assert.Equal("made by He said \"hi\"\n", body.GetProperty("note").GetString());

        // A path value cannot walk out of its segment.
        var dots = await JsonAsync(await InvokeAsync(rest, connection, "get_item", new { id = ".." }), 400);
        Assert.Equal("validation_failed", dots.GetProperty("code").GetString());

        var records = await OwnerSql.QueryAsync<(string Action, string Outcome, string Access)>(service.Api.ConnectionString,
            "SELECT action, outcome, access FROM connection_invocations WHERE tenant_id = @tenant ORDER BY id", new { tenant });
        Assert.Equal([("get_item", "completed", "read"), ("create_item", "completed", "write"), ("get_item", "denied", "read")], records);
        Assert.Equal("input_template", dots.GetProperty("rule").GetString());
        foreach (var (step, count) in new[] { ("requested", 3), ("allowed", 2), ("started", 2), ("completed", 2), ("denied", 1) })
        {
            Assert.Equal(count, await OwnerSql.AuditCountAsync(service.Api.ConnectionString, tenant, $"connection.invocation.{step}"));
        }
        var details = await OwnerSql.QueryAsync<string>(service.Api.ConnectionString,
            "SELECT details::text FROM audit_events WHERE tenant_id = @tenant", new { tenant });
        Assert.DoesNotContain(details, d => d.Contains("tok-Secret-1", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("basic_auth")]
    [InlineData("api_key")]
    public async Task Basic_and_api_key_credentials_go_in_their_headers(string type)
    {
        var (_, rest, _) = await TenantWithCrmAsync();
        await using var upstream = await FakeRestService.StartAsync();
        var reference = type == "basic_auth"
            ? await StoreCredentialAsync(rest, new { name = "basic", type, username = "svc", password = "p:w" })
            : await StoreCredentialAsync(rest, new { name = "key", type, secret = "k-123" });
        var connection = await CreateConnectionAsync(rest, new
        {
            name = "crm",
            connector = "crm",
            configuration = new { base_url = upstream.BaseUrl, api_key_header = "X-Crm-Key" },
            credential_ref = reference,
        });
        await JsonAsync(await InvokeAsync(rest, connection, "get_item", new { id = "1" }), 200);
        var headers = upstream.Requests.Last().Headers;
        if (type == "basic_auth") Assert.Equal("Basic " + Convert.ToBase64String(Encoding.UTF8.GetBytes("svc:p:w")), headers["Authorization"]);
        else
        {
            Assert.Equal("k-123", headers["X-Crm-Key"]);
            Assert.False(headers.ContainsKey("Authorization"));
        }
    }

    [Fact]
    public async Task An_oauth2_client_credentials_connection_sends_the_access_token_the_vault_obtained()
    {
        var (_, rest, _) = await TenantWithCrmAsync();
        await using var upstream = await FakeRestService.StartAsync();
        await using var oauth = await OAuthServer.StartAsync("crm-client", "crm-secret");
        var reference = await StoreCredentialAsync(rest, new
        {
            name = "crm-oauth",
            type = "oauth2_client_credentials",
            fields = new Dictionary<string, string> { ["token_url"] = oauth.TokenUrl, ["client_id"] = "crm-client", ["client_secret"] = "crm-secret" },
        });
        var connection = await CreateConnectionAsync(rest, new { name = "crm", connector = "crm", configuration = new { base_url = upstream.BaseUrl }, credential_ref = reference });
        await JsonAsync(await InvokeAsync(rest, connection, "get_item", new { id = "1" }), 200);
        var authorization = upstream.Requests.Last().Headers["Authorization"];
        Assert.StartsWith("Bearer ", authorization);
        Assert.DoesNotContain("crm-secret", authorization);
        Assert.Single(oauth.Requests);

        // The service refuses the token once (revoked before its expiry): the vault exchanges a new one and the action runs once more.
        upstream.RefuseNext(1);
        await JsonAsync(await InvokeAsync(rest, connection, "get_item", new { id = "2" }), 200);
        Assert.Equal(2, (await oauth.RequestsAsync(2)).Count);
        Assert.Equal(3, upstream.Requests.Count);

        // Refused again after the renewal: one renewal per call, answered as the refusal it is.
        upstream.RefuseNext(2);
        var refused = await JsonAsync(await InvokeAsync(rest, connection, "get_item", new { id = "3" }), 502);
        Assert.Equal(401, refused.GetProperty("upstream_status").GetInt32());
        Assert.Equal(5, upstream.Requests.Count);
    }

    [Fact]
    public async Task Governance_refuses_by_input_schema_risk_ceiling_disabled_action_and_rate_limit_and_a_failure_opens_an_incident()
    {
        var (tenant, rest, _) = await TenantWithCrmAsync();
        await using var upstream = await FakeRestService.StartAsync();
        var token = await StoreCredentialAsync(rest, new { name = "t", type = "bearer_token", secret = "s" });
        var connection = await CreateConnectionAsync(rest, new
        {
            name = "crm",
            connector = "crm",
            configuration = new { base_url = upstream.BaseUrl },
            credential_ref = token,
            disabled_actions = new[] { "create_item" },
            rate_limit_per_minute = 4,
        });

        var schema = await JsonAsync(await InvokeAsync(rest, connection, "get_item", new { nope = 1 }), 400);
        Assert.Equal("input_schema", schema.GetProperty("rule").GetString());
        var critical = await JsonAsync(await InvokeAsync(rest, connection, "purge_items", new { }), 403);
        Assert.Equal("policy_denied", critical.GetProperty("code").GetString());
        var disabled = await JsonAsync(await InvokeAsync(rest, connection, "create_item", new { title = "x", count = 1 }), 403);
        Assert.Equal("action_disabled", disabled.GetProperty("rule").GetString());
        await JsonAsync(await InvokeAsync(rest, connection, "nope", new { }), 404);
        Assert.Empty(upstream.Requests);

        var failed = await JsonAsync(await InvokeAsync(rest, connection, "fail", new { }), 502);
        Assert.Equal("upstream_error", failed.GetProperty("code").GetString());
        var incidents = await OwnerSql.QueryAsync<(string Kind, string SubjectType)>(service.Api.ConnectionString,
            "SELECT kind, subject_type FROM incidents WHERE tenant_id = @tenant", new { tenant });
        Assert.Equal([("connector_failure", ConnectionCall.ActionSubjectType)], incidents);

        HttpResponseMessage last;
        var calls = 0;
        do
        {
            last = await InvokeAsync(rest, connection, "get_item", new { id = "1" });
            calls++;
        }
        while (last.IsSuccessStatusCode && calls < 10);
        var limited = await JsonAsync(last, 429);
        Assert.Equal("connection_rate_limit", limited.GetProperty("rule").GetString());

        var denied = await OwnerSql.ScalarAsync<long>(service.Api.ConnectionString,
            "SELECT count(*) FROM connection_invocations WHERE tenant_id = @tenant AND outcome = 'denied'", new { tenant });
        Assert.True(denied >= 4);
    }

    [Fact]
    public async Task Create_refuses_a_base_url_the_ssrf_guard_blocks_a_bad_configuration_and_a_missing_credential()
    {
        var (_, rest, _) = await TenantWithCrmAsync();
        var token = await StoreCredentialAsync(rest, new { name = "t", type = "bearer_token", secret = "s" });
        var metadata = await JsonAsync(await rest.PostAsJsonAsync("/connections",
            new { name = "meta", connector = "http", configuration = new { base_url = "http://169.254.169.254/latest" }, credential_ref = token }), 422);
        Assert.Equal("ssrf_blocked", metadata.GetProperty("code").GetString());
        var config = await JsonAsync(await rest.PostAsJsonAsync("/connections",
            new { name = "bad", connector = "http", configuration = new { url = "x" }, credential_ref = token }), 400);
        Assert.Equal("validation_failed", config.GetProperty("code").GetString());
        await JsonAsync(await rest.PostAsJsonAsync("/connections", new { name = "nocred", connector = "crm", configuration = new { base_url = "http://127.0.0.1:1" } }), 400);
        await JsonAsync(await rest.PostAsJsonAsync("/connections", new { name = "unknown", connector = "nope" }), 400);
    }

    [Fact]
    public async Task Test_makes_a_round_trip_and_delete_revokes_the_grant_and_the_actions()
    {
        var (tenant, rest, key) = await TenantWithCrmAsync();
        await using var upstream = await FakeRestService.StartAsync();
        upstream.RequiredAuthorization = "Bearer right";
        var right = await StoreCredentialAsync(rest, new { name = "right", type = "bearer_token", secret = "right" });
        var wrong = await StoreCredentialAsync(rest, new { name = "wrong", type = "bearer_token", secret = "wrong" });
        var good = await CreateConnectionAsync(rest, new { name = "good", connector = "crm", configuration = new { base_url = upstream.BaseUrl }, credential_ref = right });
        var bad = await CreateConnectionAsync(rest, new { name = "bad", connector = "crm", configuration = new { base_url = upstream.BaseUrl }, credential_ref = wrong });
        var down = await CreateConnectionAsync(rest, new { name = "down", connector = "crm", configuration = new { base_url = "http://127.0.0.1:1" }, credential_ref = right });

        var ok = await JsonAsync(await rest.PostAsync($"/connections/{good.GetProperty("id")}/test", null), 200);
        Assert.True(ok.GetProperty("ok").GetBoolean());
        Assert.Equal(200, ok.GetProperty("status").GetInt32());
        var unauthorized = await JsonAsync(await rest.PostAsync($"/connections/{bad.GetProperty("id")}/test", null), 200);
        Assert.False(unauthorized.GetProperty("ok").GetBoolean());
        Assert.Equal(401, unauthorized.GetProperty("status").GetInt32());
        var unreachable = await JsonAsync(await rest.PostAsync($"/connections/{down.GetProperty("id")}/test", null), 200);
        Assert.False(unreachable.GetProperty("ok").GetBoolean());
        Assert.Contains("upstream_unreachable", unreachable.GetProperty("detail").GetString());
        Assert.Equal(3, await OwnerSql.AuditCountAsync(service.Api.ConnectionString, tenant, TestConnection.TestedAction));

        var list = await JsonAsync(await rest.GetAsync("/connections?limit=2"), 200);
        Assert.Equal(2, list.GetProperty("items").GetArrayLength());
        Assert.NotNull(list.GetProperty("next_cursor").GetString());
        var (_, other) = await service.TenantAsync();
        await JsonAsync(await other.GetAsync($"/connections/{good.GetProperty("id")}"), 404);
        await JsonAsync(await other.DeleteAsync($"/connections/{good.GetProperty("id")}"), 404);

        await using (var client = await service.McpClientAsync(key))
        {
            Assert.Contains("good__get_item", (await client.ListToolsAsync()).Select(t => t.Name));
        }
        var id = good.GetProperty("id").GetString();
        Assert.Equal(1, await OwnerSql.ScalarAsync<long>(service.Api.ConnectionString,
            "SELECT count(*) FROM credential_grants WHERE tenant_id = @tenant AND accessor_type = 'connection' AND accessor_id = @id::uuid", new { tenant, id }));
        await JsonAsync(await rest.DeleteAsync($"/connections/{id}"), 204);
        Assert.Equal(0, await OwnerSql.ScalarAsync<long>(service.Api.ConnectionString,
            "SELECT count(*) FROM credential_grants WHERE tenant_id = @tenant AND accessor_type = 'connection' AND accessor_id = @id::uuid", new { tenant, id }));
        await JsonAsync(await InvokeAsync(rest, good, "get_item", new { id = "1" }), 404);
        await JsonAsync(await rest.GetAsync($"/connections/{id}"), 404);
        // Every replica's tool list follows the change when its notification arrives (the deletion itself is already in
        // force: the call above was refused), which under load can take a moment.
        await using (var client = await service.McpClientAsync(key))
        {
            var deadline = DateTime.UtcNow.AddSeconds(10);
            while ((await client.ListToolsAsync()).Any(t => t.Name == "good__get_item"))
            {
                Assert.True(DateTime.UtcNow < deadline, "the deleted connection's action was still listed after 10 s");
                await Task.Delay(50);
            }
        }
    }

    [Fact]
    public async Task A_connection_action_is_a_tool_on_the_mcp_gateway_called_through_the_same_governed_call()
    {
        var (tenant, rest, key) = await TenantWithCrmAsync();
        await using var upstream = await FakeRestService.StartAsync();
        var token = await StoreCredentialAsync(rest, new { name = "t", type = "bearer_token", secret = "mcp-secret" });
        await CreateConnectionAsync(rest, new { name = "crm", connector = "crm", configuration = new { base_url = upstream.BaseUrl }, credential_ref = token });
        await using var client = await service.McpClientAsync(key);

        var tools = await client.ListToolsAsync();
        var getItem = tools.Single(t => t.Name == "crm__get_item").ProtocolTool;
        Assert.Equal("Read one item.", getItem.Description);
        Assert.True(getItem.Annotations?.ReadOnlyHint);
        Assert.DoesNotContain("crm__purge_items", tools.Select(t => t.Name)); // critical: over the default ceiling

        var result = await client.CallToolAsync("crm__get_item", new Dictionary<string, object?> { ["id"] = "7" });
        Assert.NotEqual(true, result.IsError);
        Assert.Equal("/items/7", result.StructuredContent!.Value.GetProperty("body").GetProperty("path").GetString());
        Assert.Equal("Bearer mcp-secret", upstream.Requests.Last().Headers["Authorization"]);

        var refused = await client.CallToolAsync("crm__get_item", new Dictionary<string, object?> { ["wrong"] = 1 });
        Assert.True(refused.IsError);
        Assert.Contains("input_schema", string.Concat(refused.Content.OfType<TextContentBlock>().Select(t => t.Text)));

        var rest2 = await JsonAsync(await rest.PostAsJsonAsync("/tools/crm__get_item/invoke", new { arguments = new { id = "8" } }), 200);
        Assert.Equal("get_item", rest2.GetProperty("action").GetString());
        var listed = await JsonAsync(await rest.GetAsync("/tools"), 200);
        Assert.Contains(listed.GetProperty("items").EnumerateArray(), t => t.GetProperty("name").GetString() == "crm__get_item" && t.GetProperty("source").GetString() == "connection");
        Assert.Equal(3, await OwnerSql.ScalarAsync<long>(service.Api.ConnectionString,
            "SELECT count(*) FROM connection_invocations WHERE tenant_id = @tenant", new { tenant }));
    }
}
